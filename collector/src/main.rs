//! `holdfast-collector`: flag parsing and wiring only; the work is in the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use holdfast_collector::config::{default_data_dir, Config};
use holdfast_collector::fmt_ms;
use holdfast_collector::store::Store;
use holdfast_collector::table::{escape, Align, Table};
use holdfast_io::process::{init_logs, runtime, shutdown_on_signal, LogFormat};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Holdfast collector: receives agents' events over QUIC (mutual TLS), stores them in
/// SQLite, raises alerts, and issues enrollment tokens.
#[derive(Parser)]
#[command(name = "holdfast-collector", version)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where the collector's data lives, for admin commands.
#[derive(Args, Clone)]
struct Where {
    /// Collector config file (its data_dir is used).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Collector data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Where {
    fn config(&self) -> anyhow::Result<Config> {
        Ok(match (&self.config, &self.data_dir) {
            (Some(c), _) => Config::load(c)?,
            (None, Some(d)) => Config::with_data_dir(d.clone()),
            (None, None) => Config::with_data_dir(default_data_dir()),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector server.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Collector + local agent + instructions, all on loopback.
    #[cfg(feature = "quickstart")]
    Quickstart {
        /// Data directory (default: the user's data dir, holdfast/quickstart).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// QUIC listen address.
        #[arg(long, default_value = holdfast_collector::config::DEFAULT_LISTEN)]
        listen: String,
        /// Console and API address (loopback), or `off`.
        #[arg(long, default_value = holdfast_collector::config::DEFAULT_HTTP_LISTEN)]
        http: String,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// API tokens for the HTTP API and the web console, each with a role: analyst (triage),
    /// it_admin (devices, offboarding), auditor (read-only with the audit log), admin.
    ApiToken {
        #[command(subcommand)]
        command: ApiTokenCommand,
    },
    /// Alerts.
    Alerts {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Enrolled devices.
    Devices {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Stored events.
    Events {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Users (who enrolled a device or got a token): devices, and active / departing /
    /// offboarded / restored.
    Users {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// HR exports: who resigned and their last working day.
    Hr {
        #[command(subcommand)]
        command: HrCommand,
    },
    /// The append-only audit log: who did what, when, from where.
    Audit {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Exact data match: the company's real customers, as keyed fingerprints.
    Edm {
        #[command(subcommand)]
        command: EdmCommand,
    },
    /// Offboard a leaver: every device of USER gets a signed order (quarantine customer
    /// files, strip access, purge CRM caches, as the policy's [offboard] says), carried out at
    /// the effective time or when the device next connects. Idempotent.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Offboard {
        #[command(subcommand)]
        command: Option<OffboardCommand>,
        /// The user, as enrolled (see `devices list`).
        #[arg(required = true)]
        user: Option<String>,
        /// When the orders take effect: `now`, or an RFC 3339 time such as
        /// 2026-12-01T18:00:00Z.
        #[arg(long, default_value = "now")]
        effective: String,
        /// How far back the look-back report reaches, e.g. 90d.
        #[arg(long, default_value = "90d")]
        lookback: String,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum OffboardCommand {
    /// Where each device of USER stands: pending, delivered, done or failed, with receipts.
    Status {
        user: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// The look-back report (every customer-data event in the look-back window before the
    /// effective time, records exported, real customers, top files, devices) and the handover
    /// list (customer files the user held, and where).
    Report {
        user: String,
        #[arg(long, value_enum, default_value = "json")]
        format: ReportFormat,
        #[command(flatten)]
        at: Where,
    },
    /// Start USER's failed connector calls (webhooks, commands) again.
    Retry {
        user: String,
        #[command(flatten)]
        at: Where,
    },
    /// Undo a mistaken offboarding: devices put quarantined files back byte-identical and
    /// give stripped access back. Idempotent.
    Restore {
        user: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum HrCommand {
    /// Import an HR export (CSV/TSV; UTF-8, UTF-16 or GBK) with a user or email column, a
    /// last working day and optionally a resignation (notice) date: each leaver is departing
    /// from notice and offboarded when their last day ends (UTC). Bad rows are reported by
    /// line; good rows apply; importing again changes nothing. Exit status 1 if any row failed.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Json,
    Csv,
}

/// The operator and host, for the audit log.
fn cli_actor() -> holdfast_collector::Actor {
    holdfast_collector::Actor::cli()
}

/// `now` or an RFC 3339 time, in milliseconds since the epoch.
fn parse_when(flag: &str, v: &str) -> anyhow::Result<i64> {
    if v == "now" {
        return Ok(holdfast_collector::now_ms());
    }
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow::anyhow!(
                "{flag} `{v}`: expected `now` or a time like 2026-12-01T18:00:00Z ({e})"
            )
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn print_offboard_status(st: &holdfast_collector::offboard::Status) {
    println!(
        "{}: offboarded {} (effective {}), look-back {} days{}{}",
        escape(&st.user),
        fmt_ms(st.started_ms),
        fmt_ms(st.effective_ms),
        st.lookback_ms / 86_400_000,
        if st.reason.is_empty() {
            String::new()
        } else {
            format!(", reason: {}", escape(&st.reason))
        },
        st.restored_ms
            .map(|t| format!(", RESTORED {}", fmt_ms(t)))
            .unwrap_or_default()
    );
    if st.devices.is_empty() {
        println!("  no devices");
    }
    for d in &st.devices {
        println!(
            "  {:<22} {:<20} {}",
            d.device_id,
            escape(&d.hostname),
            d.state.to_uppercase()
        );
        for o in &d.orders {
            println!("    {} {} {}", o.kind, o.id, o.state);
            for r in &o.receipts {
                println!(
                    "      {:<13} {:<6} items={:<6} bytes={:<10} {}",
                    r.action,
                    if r.ok { "ok" } else { "FAILED" },
                    r.items,
                    r.bytes,
                    escape(&r.detail)
                );
            }
        }
    }
    for r in &st.connectors {
        println!(
            "  connector {:<12} {:<8} {:<7} attempts={:<3} code={:<5} {}",
            r.connector,
            r.event,
            r.status.to_uppercase(),
            r.attempts,
            r.last_code
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            escape(&r.last_detail)
        );
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a single-use enrollment token bound to a user.
    Create {
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum ApiTokenCommand {
    /// Create a token; its secret is printed once, and only its hash is kept.
    Create {
        /// A unique name (letters, digits, '-', '_', '.'), e.g. soc-alice or hr-system.
        #[arg(long)]
        name: String,
        /// analyst, it_admin, auditor or admin.
        #[arg(long)]
        role: String,
        /// A one-time console login instead of an API token.
        #[arg(long)]
        once: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// Revoke a token and end its console sessions.
    Revoke {
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    /// List, newest and most severe first.
    List {
        #[arg(long)]
        json: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List, most recently seen first.
    List {
        #[arg(long)]
        json: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        at: Where,
    },
    /// Refuse this device from now on; an open connection is closed within seconds.
    Revoke {
        /// The device id (see `devices list`).
        device: String,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum EdmCommand {
    /// Import the company's customer master list (CSV/TSV; UTF-8, UTF-16 or GBK). Each
    /// identifier is normalised and keyed with the deployment secret; agents receive only the
    /// signed fingerprint set, at their next heartbeat. Bad rows are reported by line.
    Import {
        /// The customer list.
        file: PathBuf,
        /// Columns holding identifiers, by header name or role, e.g. `email,phone`.
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        /// Also write the set as agents hold it (signed manifest, then the fingerprints), for
        /// `holdfast-agent scan --edm`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// One JSON object: counts and every skipped row.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate every .toml policy file in DIR; errors name file:line:column.
    Check { dir: PathBuf },
    /// Validate, sign (Ed25519) and publish DIR (or one FILE) as the policy every agent must
    /// run. Agents verify the signature and switch at their next heartbeat. Idempotent.
    Publish {
        path: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// Show the published policy bundle and which devices run another version.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

fn main() -> ExitCode {
    // Everything the collector writes (database, keys, certificates, logs) is its own.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match real_main(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    label: String,
    tty: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new(label: &str) -> Progress {
        use std::io::IsTerminal;
        Progress {
            label: label.to_string(),
            tty: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.tty || self.last.elapsed() < std::time::Duration::from_millis(100) {
            return;
        }
        self.last = std::time::Instant::now();
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let filled = (pct / 4) as usize;
        eprint!(
            "\r{} [{}{}] {pct:>3}% {} / {} MiB",
            self.label,
            "#".repeat(filled),
            " ".repeat(25 - filled.min(25)),
            done >> 20,
            total >> 20
        );
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// `--json` output of every listing: one object per line.
fn print_json_lines<T: serde::Serialize>(items: &[T]) -> anyhow::Result<()> {
    for item in items {
        println!("{}", serde_json::to_string(item)?);
    }
    Ok(())
}

fn open_store(c: &Config) -> anyhow::Result<Store> {
    let p = c.db_path();
    if !p.is_file() {
        anyhow::bail!(
            "{}: no collector database here (wrong --data-dir or --config?)",
            p.display()
        );
    }
    Store::open(&p).with_context(|| format!("opening {}", p.display()))
}

fn real_main(command: Command) -> anyhow::Result<ExitCode> {
    use holdfast_collector::offboard;
    match command {
        Command::Offboard {
            command: Some(OffboardCommand::Status { user, json, at }),
            ..
        } => {
            let store = open_store(&at.config()?)?;
            let st = offboard::status(&store, &user, holdfast_collector::now_ms())?;
            if json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                print_offboard_status(&st);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Offboard {
            command: Some(OffboardCommand::Report { user, format, at }),
            ..
        } => {
            let store = open_store(&at.config()?)?;
            let r = offboard::report(&store, &user)?;
            match format {
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                ReportFormat::Csv => print!("{}", holdfast_collector::report::to_csv(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Offboard {
            command: Some(OffboardCommand::Retry { user, at }),
            ..
        } => {
            let mut store = open_store(&at.config()?)?;
            let n = offboard::retry(
                &mut store,
                &user,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            println!("{user}: {n} failed connector call(s) queued again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Offboard {
            command: Some(OffboardCommand::Restore { user, reason, at }),
            ..
        } => {
            let c = at.config()?;
            let mut store = open_store(&c)?;
            let mut actor = cli_actor();
            if !reason.is_empty() {
                actor.origin = format!("{} ({reason})", actor.origin);
            }
            if offboard::restore(&c, &mut store, &user, &actor, holdfast_collector::now_ms())? {
                println!("{user}: restore ordered; devices put files and access back when they next connect");
            } else {
                println!("{user}: already restored; nothing changed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Offboard {
            command: None,
            user,
            effective,
            lookback,
            reason,
            json,
            at,
        } => {
            let user = user.ok_or_else(|| anyhow::anyhow!("USER: required"))?;
            let c = at.config()?;
            let mut store = open_store(&c)?;
            let lookback = humantime::parse_duration(&lookback)
                .map_err(|e| anyhow::anyhow!("--lookback `{lookback}`: {e}"))?;
            let req = offboard::Request {
                user: user.clone(),
                effective_ms: parse_when("--effective", &effective)?,
                lookback_ms: lookback.as_millis() as i64,
                reason,
                notice_ms: None,
            };
            let now = holdfast_collector::now_ms();
            let started = offboard::start(&c, &mut store, &req, &cli_actor(), now)?;
            if json {
                println!("{}", serde_json::to_string(&started)?);
            } else if started.started {
                println!(
                    "{user}: offboarding started; {} device(s) receive a signed order {}",
                    started.devices,
                    if started.effective_ms > now {
                        format!("effective {}", fmt_ms(started.effective_ms))
                    } else {
                        "now, or when they next connect".to_string()
                    }
                );
                println!("follow it with: holdfast-collector offboard status {user}");
            } else {
                println!("{user}: already being offboarded; nothing changed");
                println!("follow it with: holdfast-collector offboard status {user}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let c = Config::load(&config)?;
            runtime()?.block_on(async {
                let (endpoint, state) = holdfast_collector::ingest::start(&c)?;
                let shutdown = shutdown_on_signal();
                let http = holdfast_collector::http::start(&c, state.metrics.clone(), shutdown.clone()).await?;
                let http_addr = http.as_ref().map(|(a, _)| a.to_string()).unwrap_or_else(|| "off".into());
                tracing::info!(listen = %endpoint.local_addr()?, http = %http_addr, data_dir = %c.data_dir.display(), ca_sha256 = %state.ca.fingerprint(), "collector listening");
                let forwarding = tokio::spawn(holdfast_collector::forward::run(
                    c.forwards.clone(),
                    c.db_path(),
                    state.metrics.clone(),
                    shutdown.clone(),
                ));
                let hr = tokio::spawn(holdfast_collector::hr::run_schedule(
                    c.clone(),
                    shutdown.clone(),
                ));
                holdfast_collector::ingest::serve(endpoint, state, shutdown).await;
                let _ = forwarding.await;
                let _ = hr.await;
                if let Some((_, task)) = http {
                    let _ = task.await;
                }
                tracing::info!("collector stopped");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "quickstart")]
        Command::Quickstart {
            data_dir,
            listen,
            http,
        } => {
            let mut c = Config::with_data_dir(
                data_dir.unwrap_or_else(|| default_data_dir().with_file_name("quickstart")),
            );
            c.listen = listen
                .parse()
                .map_err(|_| anyhow::anyhow!("--listen: `{listen}` is not an IP:PORT address"))?;
            c.http_listen = match http.as_str() {
                "off" => None,
                v => Some(
                    v.parse::<std::net::SocketAddr>()
                        .ok()
                        .filter(|a| a.ip().is_loopback())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "--http: `{v}` is not a loopback IP:PORT address (or off)"
                            )
                        })?,
                ),
            };
            runtime()?.block_on(async {
                holdfast_collector::quickstart::run(c, shutdown_on_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    user,
                    ttl,
                    json,
                    at,
                },
        } => {
            let c = at.config()?;
            let ttl = humantime::parse_duration(&ttl)
                .map_err(|e| anyhow::anyhow!("--ttl `{ttl}`: {e}"))?;
            let issued = holdfast_collector::tokens::create(&c, &user, ttl, &cli_actor())?;
            if json {
                println!("{}", serde_json::to_string(&issued)?);
            } else {
                println!("{}", issued.token);
                eprintln!(
                    "single-use token for {} expires {}; save the line above to a file (say user.token) and on the device run:\n  holdfast-agent enroll --collector {} --token-file user.token",
                    issued.user,
                    fmt_ms(issued.expires_ms),
                    c.listen,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiToken {
            command:
                ApiTokenCommand::Create {
                    name,
                    role,
                    once,
                    json,
                    at,
                },
        } => {
            let c = at.config()?;
            let mut store = open_store(&c)?;
            let t = holdfast_collector::api_tokens::create(
                &mut store,
                &name,
                &role,
                once,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            if json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                println!("{}", t.secret);
                let url = c
                    .http_listen
                    .map(|a| format!("http://{a}/"))
                    .unwrap_or_else(|| "(http_listen is off)".into());
                eprintln!(
                    "{} token `{}` (role {}); shown once, keep it safe. API: `Authorization: Bearer <token>`; console: {url}",
                    if once { "one-time login" } else { "API" },
                    t.name,
                    t.role
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiToken {
            command: ApiTokenCommand::List { json, at },
        } => {
            let tokens = open_store(&at.config()?)?.api_tokens()?;
            if json {
                print_json_lines(&tokens)?;
            } else {
                for t in &tokens {
                    let state = match (t.revoked_ms, t.used_ms) {
                        (Some(r), _) => format!("revoked {}", fmt_ms(r)),
                        (None, Some(u)) => format!("spent {}", fmt_ms(u)),
                        (None, None) => "live".into(),
                    };
                    println!(
                        "{:<24} {:<9} {:<28} created {} by {}",
                        t.name,
                        t.role,
                        state,
                        fmt_ms(t.created_ms),
                        escape(&t.created_by)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiToken {
            command: ApiTokenCommand::Revoke { name, at },
        } => {
            let mut store = open_store(&at.config()?)?;
            holdfast_collector::api_tokens::revoke(
                &mut store,
                &name,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            println!("revoked {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts {
            command: ListCommand::List { json, limit, at },
        } => {
            let alerts = open_store(&at.config()?)?.alerts(limit)?;
            if json {
                print_json_lines(&alerts)?;
            } else if alerts.is_empty() {
                println!("no alerts");
            } else {
                let mut t = Table::new(&[
                    ("ID", Align::Right),
                    ("SEVERITY", Align::Left),
                    ("STATUS", Align::Left),
                    ("RULE", Align::Left),
                    ("USER", Align::Left),
                    ("RECORDS", Align::Right),
                    ("LAST SEEN", Align::Left),
                    ("PATH OR DETAIL", Align::Left),
                ]);
                for a in &alerts {
                    t.row(vec![
                        a.id.to_string(),
                        a.severity.to_string(),
                        a.status.to_string(),
                        a.rule_id.clone(),
                        a.user.clone(),
                        a.records.to_string(),
                        fmt_ms(a.last_seen_ms),
                        if a.path.is_empty() {
                            a.detail.clone()
                        } else {
                            a.path.clone()
                        },
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices {
            command: DeviceCommand::Revoke { device, at },
        } => {
            let store = open_store(&at.config()?)?;
            if !store.revoke_device(&device, holdfast_collector::now_ms(), &cli_actor())? {
                anyhow::bail!(
                    "DEVICE: no device `{device}` (see `holdfast-collector devices list`)"
                );
            }
            println!("device {device} revoked");
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices {
            command: DeviceCommand::List { json, limit, at },
        } => {
            let store = open_store(&at.config()?)?;
            let devices = store.devices()?;
            let published = store.current_policy()?.map(|p| p.version);
            if json {
                // Each device, plus whether it runs another policy than the published one.
                let rows = devices
                    .iter()
                    .take(limit)
                    .map(|d| {
                        let mut v = serde_json::to_value(d)?;
                        v["policy_stale"] =
                            serde_json::json!(published.as_ref().map(|p| *p != d.policy_version));
                        Ok(v)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_json_lines(&rows)?;
            } else if devices.is_empty() {
                println!("no devices");
            } else {
                let mut t = Table::new(&[
                    ("DEVICE", Align::Left),
                    ("USER", Align::Left),
                    ("HOST", Align::Left),
                    ("OS", Align::Left),
                    ("LAST SEQ", Align::Right),
                    ("POLICY", Align::Left),
                    ("SKEW", Align::Right),
                    ("LAST SEEN", Align::Left),
                ]);
                for d in devices.iter().take(limit) {
                    t.row(vec![
                        d.id.clone(),
                        d.user.clone(),
                        d.hostname.clone(),
                        d.os.clone(),
                        d.last_seq.to_string(),
                        d.policy_version
                            .get(..12)
                            .unwrap_or(&d.policy_version)
                            .to_string(),
                        d.clock_skew_ms
                            .map(|s| format!("{}s", s / 1000))
                            .unwrap_or_else(|| "-".into()),
                        match d.revoked_ms {
                            Some(t) => format!("REVOKED {}", fmt_ms(t)),
                            None => d.last_seen_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
                        },
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Users {
            command: ListCommand::List { json, limit, at },
        } => {
            let store = open_store(&at.config()?)?;
            let users = holdfast_collector::risk::users(&store, holdfast_collector::now_ms())?;
            let users: Vec<_> = users.into_iter().take(limit).collect();
            if json {
                print_json_lines(&users)?;
            } else if users.is_empty() {
                println!("no users");
            } else {
                let mut t = Table::new(&[
                    ("USER", Align::Left),
                    ("RISK", Align::Right),
                    ("DEVICES", Align::Right),
                    ("STATE", Align::Left),
                    ("EFFECTIVE", Align::Left),
                    ("WHY", Align::Left),
                ]);
                for u in &users {
                    t.row(vec![
                        u.user.clone(),
                        u.score.to_string(),
                        u.devices.to_string(),
                        u.state.to_uppercase(),
                        u.effective_ms.map(fmt_ms).unwrap_or_else(|| "-".into()),
                        if u.signals.is_empty() {
                            "-".to_string()
                        } else {
                            u.signals.join("; ")
                        },
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Hr {
            command: HrCommand::Import { file, json, at },
        } => {
            let c = at.config()?;
            let mut store = open_store(&c)?;
            let r = holdfast_collector::hr::import(
                &c,
                &mut store,
                &file,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for o in &r.rows {
                    println!("line {:<5} {:<10} {}", o.line, o.result, escape(&o.detail));
                }
                println!(
                    "{} scheduled, {} unchanged, {} row(s) with errors",
                    r.scheduled, r.unchanged, r.errors
                );
            }
            Ok(if r.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Audit {
            command: ListCommand::List { json, limit, at },
        } => {
            let log = open_store(&at.config()?)?.audit_log(limit)?;
            if json {
                print_json_lines(&log)?;
            } else if log.is_empty() {
                println!("no audit entries");
            } else {
                let mut t = Table::new(&[
                    ("TIME", Align::Left),
                    ("ACTOR", Align::Left),
                    ("ORIGIN", Align::Left),
                    ("ACTION", Align::Left),
                    ("TARGET", Align::Left),
                    ("DETAIL", Align::Left),
                ]);
                for e in &log {
                    t.row(vec![
                        fmt_ms(e.time_ms),
                        e.actor.clone(),
                        e.origin.clone(),
                        e.action.clone(),
                        e.target.clone(),
                        e.detail.clone(),
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            command: ListCommand::List { json, limit, at },
        } => {
            let events = open_store(&at.config()?)?.events(limit)?;
            if json {
                print_json_lines(&events)?;
            } else {
                for e in &events {
                    if let Some(message) = &e.message {
                        println!(
                            "{}  {}#{}  {}  {}  {message}",
                            fmt_ms(e.time_ms),
                            e.device_id,
                            e.seq,
                            escape(&e.user),
                            e.kind,
                            message = escape(message)
                        );
                        continue;
                    }
                    println!(
                        "{}  {}#{}  {}  {}  {}  records={}  rules={}",
                        fmt_ms(e.time_ms),
                        e.device_id,
                        e.seq,
                        escape(&e.user),
                        e.action.as_deref().unwrap_or(&e.kind),
                        escape(e.path.as_deref().unwrap_or("-")),
                        e.records.unwrap_or(0),
                        e.rules.join(",")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Edm {
            command:
                EdmCommand::Import {
                    file,
                    columns,
                    out,
                    json,
                    at,
                },
        } => {
            let c = at.config()?;
            let store = open_store(&c)?;
            let mut bar = Progress::new(&format!("importing {}", file.display()));
            let (r, held) = holdfast_collector::edm::import(
                &c,
                &store,
                &file,
                &columns,
                holdfast_collector::now_ms(),
                &cli_actor(),
                &mut |done, total| bar.update(done, total),
            )?;
            bar.finish();
            if let Some(out) = out {
                holdfast_io::fs::write_file_atomic(&out, &held.to_bytes(), 0o600)
                    .with_context(|| format!("--out {}", out.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "imported {} customers ({} identifiers) as set {}; {} row(s) skipped",
                    r.customers, r.identifiers, r.version, r.skipped_rows
                );
                for s in r.skipped.iter().take(20) {
                    println!("  line {}: {}", s.line, escape(&s.reason));
                }
                if r.skipped.len() > 20 {
                    println!("  … {} more (use --json for all)", r.skipped.len() - 20);
                }
                println!("agents fetch the signed set at their next heartbeat");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Publish { path, json, at },
        } => {
            let c = at.config()?;
            let store = open_store(&c)?;
            let p = holdfast_collector::policies::publish(
                &c,
                &store,
                &path,
                holdfast_collector::now_ms(),
                &cli_actor(),
            )?;
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else if p.changed {
                println!(
                    "published policy {} ({} rule(s) in {} file(s)); agents switch at their next heartbeat",
                    p.version, p.rules, p.files
                );
            } else {
                println!(
                    "policy {} is already the published one; nothing changed",
                    p.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Status { json, at },
        } => {
            let store = open_store(&at.config()?)?;
            let current = store.current_policy()?;
            let devices = store.devices()?;
            let stale: Vec<_> = devices
                .iter()
                .filter(|d| d.revoked_ms.is_none())
                .filter(|d| current.as_ref().is_some_and(|p| p.version != d.policy_version))
                .map(|d| serde_json::json!({"device_id": d.id, "user": d.user, "policy_version": d.policy_version, "last_seen_ms": d.last_seen_ms}))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"published": current, "stale_devices": stale})
                );
            } else {
                match &current {
                    None => println!("no policy published: agents run their local policies"),
                    Some(p) => println!("published   {} at {}", p.version, fmt_ms(p.published_ms)),
                }
                if current.is_some() {
                    println!("stale       {} device(s)", stale.len());
                    for d in &stale {
                        println!(
                            "  {}  {}  runs {}",
                            d["device_id"].as_str().unwrap_or(""),
                            d["user"].as_str().unwrap_or(""),
                            d["policy_version"]
                                .as_str()
                                .filter(|v| !v.is_empty())
                                .unwrap_or("unknown")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn policy_check(dir: &Path) -> anyhow::Result<ExitCode> {
    match holdfast_io::policy_files::load(Some(dir), "~") {
        Ok(set) => {
            println!(
                "{}: {} rule(s), {} bulk-read rule(s), {} cloud service(s) OK (version {})",
                dir.display(),
                set.rules.len(),
                set.bulk_reads.len(),
                set.cloud.len(),
                set.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
