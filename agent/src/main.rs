//! `holdfast-agent`: flag parsing and wiring only; the work is in the library.

use anyhow::Context;
use clap::Subcommand;
use holdfast_agent::config::{default_home, Config};
use holdfast_agent::identity::Identity;
use holdfast_agent::spool::Spool;
use holdfast_io::process::{runtime, shutdown_on_signal, Program};
use holdfast_shared::event::Action;
use holdfast_shared::policy::{PolicySet, Subject};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PROGRAM: Program = Program {
    name: "holdfast-agent",
    about: "Holdfast endpoint agent: watches where customer files land, classifies them on the \
        device, and reports counts and hashes (never content) to the collector over QUIC.",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(Subcommand)]
enum Command {
    /// Enroll this device with a collector, using a one-time token (non-interactive).
    Enroll {
        /// Collector address, HOST:PORT.
        #[arg(long)]
        collector: String,
        /// File holding the token from `holdfast-collector token create` (`-` reads it from
        /// standard input). Preferred: a token on the command line is visible to every
        /// local user in the process list. Without it or --token, the token is taken from
        /// the environment variable HOLDFAST_ENROLL_TOKEN (for device-management scripts).
        /// Enrolling again with the same collector keeps the identity and succeeds.
        #[arg(long, value_name = "PATH", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The token itself (visible in the process list; prefer --token-file).
        #[arg(long)]
        token: Option<String>,
        /// Agent config file (its data_dir receives the identity); default
        /// /etc/holdfast/agent.toml where it exists.
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// Data directory for the identity, when no config file is used.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: watch, classify, spool and report until stopped (SIGINT/SIGTERM).
    Run {
        /// Agent config file; defaults watch ~/Downloads, ~/Desktop and ~/Documents.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Classify files offline (no collector needed). Directories are walked.
    Scan {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Policy directory; the built-in pack when absent.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// One JSON object per line per file.
        #[arg(long)]
        json: bool,
        /// Also say which columns, counts and rules drove each verdict.
        #[arg(long)]
        explain: bool,
        /// Count real customers with this fingerprint set (written by
        /// `holdfast-collector edm import --out FILE`).
        #[arg(long)]
        edm: Option<PathBuf>,
    },
    /// (Started by the agent, as a phone mount's owner.) Watch the phone at --mount and pass
    /// each file written there to the agent over standard input.
    #[command(hide = true)]
    PhoneWatch {
        #[arg(long)]
        mount: PathBuf,
        /// Files changed at or after this time (realtime nanoseconds) are passed at start.
        #[arg(long, allow_hyphen_values = true)]
        since_ns: i64,
        /// The mount is gvfs's own: only its phones' folders are watched.
        #[arg(long)]
        gvfs: bool,
    },
    /// Tell the collector this agent is being removed or disabled for good, with what is
    /// still spooled: the device shows `agent_removed` (not offline) and, for a departing
    /// user, a critical alert. The package's removal runs it; stop the service first.
    Farewell {
        /// Agent config file (default /etc/holdfast/agent.toml where it exists).
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// What is happening, for the collector (`package removed`, `service disabled`).
        #[arg(long, default_value = "removed by an administrator")]
        reason: String,
        /// Only if systemd says UNIT is disabled or masked (the unit's ExecStopPost: a
        /// `systemctl disable --now` is a removal, a stop or a shutdown is not).
        #[arg(long, value_name = "UNIT")]
        if_disabled: Option<String>,
    },
    /// Check what the agent needs here, one line each: capabilities, the inotify watch
    /// limit, fanotify, the collector's reachability and clock, the certificate's expiry,
    /// the spool. Exits 1 when a check fails (a warning is not a failure).
    #[cfg(target_os = "linux")]
    Doctor {
        /// Agent config file (default /etc/holdfast/agent.toml where it exists).
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One JSON object per check.
        #[arg(long)]
        json: bool,
    },
    /// Show enrollment, spool backlog and the last uplink error.
    Status {
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// The config from `config`, else from the system's file (a package's
/// /etc/holdfast/agent.toml) where it exists, else the defaults; `data_dir` overrides.
fn config_for(config: Option<&Path>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let system = Path::new(holdfast_agent::config::SYSTEM_CONFIG);
    let mut c = match config {
        Some(p) => Config::load(p)?,
        None if data_dir.is_none() && system.exists() => Config::load(system)?,
        None => Config::defaults(),
    };
    if let Some(d) = data_dir {
        c.data_dir = d;
    }
    Ok(c)
}

fn main() -> ExitCode {
    PROGRAM.main(real_main)
}

/// How long `farewell` waits for the collector.
const FAREWELL_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// What `systemctl is-enabled UNIT` says of the unit (`enabled`, `disabled`, `masked`, …).
fn unit_state(unit: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("systemctl")
        .args(["is-enabled", unit])
        .stdin(std::process::Stdio::null())
        .output()
        .context("--if-disabled: running systemctl is-enabled")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `farewell`: spools the removal notice and delivers it with everything still unsent.
fn farewell(c: &Config, reason: &str) -> anyhow::Result<ExitCode> {
    let identity = holdfast_agent::identity::Identity::load(&c.data_dir)?;
    let spool_path = c.data_dir.join(holdfast_agent::spool::SPOOL_FILE);
    let spool = holdfast_agent::spool::Spool::open(&spool_path)?;
    spool.append(
        holdfast_agent::clock::now_ms(),
        &holdfast_agent::gap::removal_notice(reason),
    )?;
    let collector = identity.enrollment.collector.clone();
    let left = runtime()?.block_on(async {
        tokio::time::timeout(
            FAREWELL_WITHIN,
            holdfast_agent::uplink::deliver_spooled(&identity, &spool_path),
        )
        .await
    });
    match left {
        Ok(Ok(0)) => {
            println!(
                "the collector at {collector} was told: device {} is removed ({reason})",
                identity.enrollment.device_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(n)) => anyhow::bail!("{n} events are still spooled for the collector at {collector}"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!(
            "the collector at {collector} did not take the notice within {}s",
            FAREWELL_WITHIN.as_secs()
        ),
    }
}

/// Where a device-management script may put the enrollment token instead of a file.
const TOKEN_VARIABLE: &str = "HOLDFAST_ENROLL_TOKEN";

/// The enrollment token from a file, or from standard input for `-`: its first line,
/// trimmed, at most 4 KiB read.
fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let limit = 4096;
    let read = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_string(&mut text))
    };
    read.with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        anyhow::bail!("--token-file {}: no token in it", path.display());
    }
    Ok(token)
}

fn real_main(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Enroll {
            collector,
            token_file,
            token,
            config,
            data_dir,
            force,
        } => {
            let token = match (token_file, token) {
                (Some(path), _) => read_token(&path)?,
                (None, Some(t)) => {
                    eprintln!("warning: --token is visible to other local users in the process list; prefer --token-file");
                    t
                }
                (None, None) => match std::env::var(TOKEN_VARIABLE) {
                    Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                    _ => anyhow::bail!(
                        "--token-file: required (or --token, or the token in {TOKEN_VARIABLE})"
                    ),
                },
            };
            let c = config_for(config.as_deref(), data_dir)?;
            let done = runtime()?.block_on(holdfast_agent::enroll::enroll(
                &collector,
                &token,
                &c.data_dir,
                force,
            ))?;
            let how = match done.when {
                holdfast_agent::enroll::When::Now => "enrolled",
                holdfast_agent::enroll::When::Earlier => "already enrolled",
            };
            println!(
                "{how} as device {} for user {} (identity in {})",
                done.device_id,
                done.user,
                c.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let c = config_for(config.as_deref(), None)?;
            let rt = runtime()?;
            rt.block_on(async move { holdfast_agent::daemon::run(c, shutdown_on_signal()).await })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan {
            paths,
            policies,
            json,
            explain,
            edm,
        } => {
            let matcher = match edm {
                None => None,
                Some(p) => Some(
                    holdfast_agent::updates::read_held_file(&p)
                        .with_context(|| format!("--edm {}", p.display()))?
                        .matcher,
                ),
            };
            scan(&paths, policies.as_deref(), json, explain, matcher)
        }
        Command::Status {
            config,
            data_dir,
            json,
        } => status(&config_for(config.as_deref(), data_dir)?, json),
        #[cfg(target_os = "linux")]
        Command::Doctor {
            config,
            data_dir,
            json,
        } => {
            let c = config_for(config.as_deref(), data_dir)?;
            let checks = runtime()?.block_on(holdfast_agent::doctor::run(
                &c,
                holdfast_agent::clock::now_ms(),
            ));
            if json {
                for check in &checks {
                    println!("{}", serde_json::to_string(check)?);
                }
            } else {
                print!("{}", holdfast_agent::doctor::render(&checks));
            }
            let failed = checks
                .iter()
                .any(|c| c.verdict == holdfast_agent::doctor::Verdict::Fail);
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Farewell {
            config,
            data_dir,
            reason,
            if_disabled,
        } => {
            if let Some(unit) = if_disabled {
                let state = unit_state(&unit)?;
                if !holdfast_agent::gap::is_disabled(&state) {
                    println!("{unit} is {state}: a stop, not a removal; nothing sent");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            farewell(&config_for(config.as_deref(), data_dir)?, &reason)
        }
        #[cfg(target_os = "linux")]
        Command::PhoneWatch {
            mount,
            since_ns,
            gvfs,
        } => {
            let layout = match gvfs {
                true => holdfast_agent::phones::Layout::Gvfs,
                false => holdfast_agent::phones::Layout::Phone,
            };
            holdfast_agent::phones::watch_as_owner(&mount, since_ns, layout)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(target_os = "linux"))]
        Command::PhoneWatch { .. } => anyhow::bail!("phone-watch: only on Linux"),
    }
}

/// The files to scan under `path`: everything but folders (FIFOs, sockets and devices are
/// listed so that their line says they were skipped), walked by descriptor without
/// following a link.
fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let limits = holdfast_agent::tree::Limits {
        max_files: 10_000_000,
        max_depth: 64,
    };
    let before = out.len();
    holdfast_agent::tree::visit_all(&abs, Path::new(""), limits, |p, _| out.push(p));
    if out.len() == before && !is_dir(&abs) {
        // Missing or refused: its line says why.
        out.push(abs);
    }
}

fn is_dir(p: &Path) -> bool {
    holdfast_agent::safe_fs::stat_path(p)
        .is_ok_and(|s| s.kind == holdfast_agent::safe_fs::Kind::Directory)
}

/// Why a matched rule matched, in words.
fn why(
    rule: &holdfast_shared::policy::Rule,
    r: &holdfast_agent::scan::FileReport,
    file_name: &str,
) -> String {
    let mut parts = Vec::new();
    if let Some(rc) = &rule.recognise {
        if let Some(how) = rc.matched(file_name, &r.headers) {
            parts.push(format!("recognised by {how}"));
        }
    }
    if let Some(min) = rule.min_records {
        parts.push(format!("{} records >= {min}", r.summary.records));
    }
    for (k, min) in &rule.min_findings {
        parts.push(format!(
            "{k} {} >= {min}",
            r.summary.findings.get(k).copied().unwrap_or(0)
        ));
    }
    if rule.customer_table == Some(true) {
        parts.push("a customer table".into());
    }
    if !rule.file_types.is_empty() {
        parts.push(format!("type {}", r.summary.file_type));
    }
    let mut severity = rule.severity.as_str().to_string();
    let subject = holdfast_shared::policy::Subject {
        action: holdfast_shared::event::Action::Created,
        path: file_name,
        summary: Some(&r.summary),
        headers: &r.headers,
        destination: None,
        origin_records: 0,
    };
    if let Some(e) = rule.escalation(&subject) {
        let mut reached = Vec::new();
        if let Some(min) = e.min_records {
            reached.push(format!("{} records >= {min}", r.summary.records));
        }
        for (k, min) in &e.min_findings {
            let n = r.summary.findings.get(k).copied().unwrap_or(0);
            reached.push(format!("{k} {n} >= {min}"));
        }
        severity = format!(
            "{}, raised from {} because {}",
            e.severity.as_str(),
            rule.severity.as_str(),
            reached.join(" and ")
        );
    }
    format!("{} ({severity}): {}", rule.id, parts.join("; "))
}

fn scan(
    paths: &[PathBuf],
    policies: Option<&Path>,
    json: bool,
    explain: bool,
    edm: Option<std::sync::Arc<holdfast_shared::edm::Matcher>>,
) -> anyhow::Result<ExitCode> {
    let set: PolicySet = holdfast_io::policy_files::load(policies, &default_home())?;
    let mut files = Vec::new();
    for p in paths {
        walk(p, &mut files);
    }
    let mut all_read = true;
    let mounts = holdfast_agent::mounts::MountTable::start();
    for file in files {
        let shown = file.display().to_string();
        let abs = std::path::absolute(&file).unwrap_or(file.clone());
        // Offline, on the admin's word: the whole file, whatever its size (the daemon's
        // byte and CPU limits are for files nobody asked about).
        let whole = holdfast_agent::scan::ScanLimits {
            max_bytes: u64::MAX,
            ..Default::default()
        };
        let (line, ok) = match holdfast_agent::scan::scan_file_with(&abs, edm.clone(), whole) {
            Ok(r) => {
                let shown_abs = abs.to_string_lossy().into_owned();
                let dest =
                    holdfast_agent::pipeline::destination_of(&abs, &shown_abs, &set, &mounts);
                let subject = Subject {
                    action: Action::Created,
                    path: &shown_abs,
                    summary: Some(&r.summary),
                    headers: &r.headers,
                    destination: dest.as_ref().map(|d| d.kind.as_str()),
                    origin_records: 0,
                };
                let rules = set.evaluate(&subject);
                let file_name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let explained: Vec<String> = if explain {
                    let mut v = r.reasons.clone();
                    if !r.headers.is_empty() {
                        v.push(format!("headers: {}", r.headers.join(", ")));
                    }
                    for m in &rules {
                        if let Some(rule) = set.rule(&m.id) {
                            v.push(format!("rule {}", why(rule, &r, &file_name)));
                        }
                    }
                    // The thresholds the rules made for this file missed.
                    for rule in &set.rules {
                        if let Some(w) = rule.missed(&subject) {
                            v.push(format!("rule {} not raised: {w}", rule.id));
                        }
                    }
                    v
                } else {
                    Vec::new()
                };
                let rules_json: Vec<_> = rules
                    .iter()
                    .map(|m| serde_json::json!({"id": m.id, "severity": m.severity.as_str()}))
                    .collect();
                if json {
                    let mut v = serde_json::json!({
                        "path": shown, "sha256": r.complete.then_some(&r.sha256), "size": r.size,
                        "file_type": r.summary.file_type, "records": r.summary.records,
                        "findings": r.summary.findings, "truncated": r.summary.truncated,
                        "customer_table": r.summary.customer_table,
                        "columns": r.summary.columns, "encoding": r.summary.encoding,
                        "disguised": r.summary.disguised,
                        "rules": rules_json,
                    });
                    if explain {
                        v["explain"] = serde_json::json!(explained);
                    }
                    (v.to_string(), true)
                } else {
                    let findings: Vec<String> = r
                        .summary
                        .findings
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let rules: Vec<String> = rules
                        .iter()
                        .map(|m| format!("{}({})", m.id, m.severity.as_str()))
                        .collect();
                    let tail: String = explained.iter().map(|l| format!("\n    {l}")).collect();
                    (
                        format!(
                            "{shown}\t{}\t{} bytes\trecords={}\t{}\trules: {}{tail}",
                            r.summary.file_type,
                            r.size,
                            r.summary.records,
                            if findings.is_empty() {
                                "-".into()
                            } else {
                                findings.join(" ")
                            },
                            if rules.is_empty() {
                                "none".into()
                            } else {
                                rules.join(", ")
                            }
                        ),
                        true,
                    )
                }
            }
            Err(e) => {
                if json {
                    (
                        serde_json::json!({"path": shown, "error": e.to_string()}).to_string(),
                        false,
                    )
                } else {
                    (format!("{shown}\terror: {e}"), false)
                }
            }
        };
        all_read &= ok;
        println!("{line}");
    }
    Ok(if all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(c: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let identity = Identity::load(&c.data_dir)?;
    let spool_file = holdfast_agent::daemon::spool_path(c);
    let spool =
        Spool::open(&spool_file).with_context(|| format!("opening {}", spool_file.display()))?;
    let meta = |k: &str| spool.meta(k).ok().flatten().unwrap_or_default();
    let e = &identity.enrollment;
    let v = serde_json::json!({
        "device_id": e.device_id,
        "user": e.user,
        "collector": e.collector,
        "data_dir": c.data_dir.display().to_string(),
        "spool_backlog": spool.backlog()?,
        "last_seq": spool.last_seq()?,
        "last_connected_ms": meta("last_connected_ms").parse::<i64>().ok(),
        "last_ack_ms": meta("last_ack_ms").parse::<i64>().ok(),
        "last_error": Some(meta("last_error")).filter(|s| !s.is_empty()),
        "watching": meta("watching").lines().collect::<Vec<_>>(),
        "spool_bytes": spool.bytes()?,
        "spool_max_bytes": meta("max_bytes").parse::<u64>().ok(),
        "spool_dropped_unreported": spool.dropped()?,
        "policy_version": Some(meta("policy_version")).filter(|s| !s.is_empty()),
        "policy_source": Some(meta("policy_source")).filter(|s| !s.is_empty()),
        "edm_version": Some(meta("edm_version")).filter(|s| !s.is_empty()),
        "edm_fetching": Some(meta("edm_fetching")).filter(|s| !s.is_empty()),
        "last_update_error": Some(meta("last_update_error")).filter(|s| !s.is_empty()),
        "last_order": Some(meta("last_order")).filter(|s| !s.is_empty()),
        "last_order_error": Some(meta("last_order_error")).filter(|s| !s.is_empty()),
        "coverage": serde_json::from_str::<serde_json::Value>(&meta("coverage")).ok(),
        "reads": Some(meta("reads")).filter(|s| !s.is_empty()),
        "health": meta("health").lines().collect::<Vec<_>>(),
    });
    if json {
        println!("{v}");
    } else {
        println!("device      {} (user {})", e.device_id, e.user);
        println!("collector   {}", e.collector);
        println!(
            "spool       {} event(s) waiting, last seq {}",
            v["spool_backlog"], v["last_seq"]
        );
        println!(
            "spool size  {} bytes of {}",
            v["spool_bytes"], v["spool_max_bytes"]
        );
        println!(
            "policy      {} ({})",
            v["policy_version"].as_str().unwrap_or("unknown"),
            v["policy_source"].as_str().unwrap_or("unknown")
        );
        println!(
            "customers   {}{}",
            v["edm_version"].as_str().unwrap_or("no customer set"),
            v["edm_fetching"]
                .as_str()
                .map(|f| format!(" (fetching {f})"))
                .unwrap_or_default()
        );
        if let Some(e) = v["last_update_error"].as_str() {
            println!("update error {e}");
        }
        println!("last error  {}", v["last_error"].as_str().unwrap_or("none"));
        let health = meta("health");
        if health.is_empty() {
            println!("health      ok (as of the last heartbeat)");
        } else {
            println!("health      degraded: {}", health.replace('\n', "; "));
        }
        if let Some(o) = v["last_order"].as_str() {
            println!("last order  {o}");
        }
        if let Some(e) = v["last_order_error"].as_str() {
            println!("order error {e}");
        }
        println!("watching    {}", meta("watching").replace('\n', ", "));
        println!("reads       {}", v["reads"].as_str().unwrap_or("unknown"));
        let c = &v["coverage"];
        if c.is_object() {
            println!(
                "coverage    {} root(s) watched, {} polled, {} failed; {} folders, {} files indexed{}",
                c["watched_roots"],
                c["polled_roots"],
                c["failed_roots"],
                c["dirs"],
                c["files"],
                if c["limit_reached"] == true {
                    "; the kernel's watch limit was reached: some places are scanned, not watched"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
