//! `holdfast-collector`: flag parsing and wiring only; the work is in the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use holdfast_agent::process::{init_logs, runtime, shutdown_on_signal, LogFormat};
use holdfast_collector::config::{default_data_dir, Config};
use holdfast_collector::store::Store;
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
    Quickstart {
        /// Data directory (default: the user's data dir, holdfast/quickstart).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// QUIC listen address.
        #[arg(long, default_value = holdfast_collector::config::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
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
enum PolicyCommand {
    /// Validate every .toml policy file in DIR; errors name file:line:column.
    Check { dir: PathBuf },
}

fn main() -> ExitCode {
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

fn fmt_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
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
    match command {
        Command::Serve { config } => {
            let c = Config::load(&config)?;
            runtime()?.block_on(async {
                let (endpoint, state) = holdfast_collector::ingest::start(&c)?;
                tracing::info!(listen = %endpoint.local_addr()?, data_dir = %c.data_dir.display(), ca_sha256 = %state.ca.fingerprint(), "collector listening");
                holdfast_collector::ingest::serve(endpoint, state, shutdown_on_signal()).await;
                tracing::info!("collector stopped");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart { data_dir, listen } => {
            let mut c = Config::with_data_dir(
                data_dir.unwrap_or_else(|| default_data_dir().with_file_name("quickstart")),
            );
            c.listen = listen
                .parse()
                .map_err(|_| anyhow::anyhow!("--listen: `{listen}` is not an IP:PORT address"))?;
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
            let issued = holdfast_collector::tokens::create(&c, &user, ttl)?;
            if json {
                println!("{}", serde_json::to_string(&issued)?);
            } else {
                println!("{}", issued.token);
                eprintln!(
                    "single-use token for {} expires {}; on the device run:\n  holdfast-agent enroll --collector {} --token {}",
                    issued.user,
                    fmt_ms(issued.expires_ms),
                    c.listen,
                    issued.token
                );
            }
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
                println!(
                    "{:<5} {:<9} {:<8} {:<28} {:<12} {:>8}  {:<20}  PATH",
                    "ID", "SEVERITY", "STATUS", "RULE", "USER", "RECORDS", "LAST SEEN"
                );
                for a in &alerts {
                    println!(
                        "{:<5} {:<9} {:<8} {:<28} {:<12} {:>8}  {:<20}  {}",
                        a.id,
                        a.severity,
                        a.status,
                        a.rule_id,
                        a.user,
                        a.records,
                        fmt_ms(a.last_seen_ms),
                        a.path
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices {
            command: DeviceCommand::Revoke { device, at },
        } => {
            let store = open_store(&at.config()?)?;
            if !store.revoke_device(&device, holdfast_collector::now_ms())? {
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
            let devices = open_store(&at.config()?)?.devices()?;
            if json {
                print_json_lines(&devices[..limit.min(devices.len())])?;
            } else if devices.is_empty() {
                println!("no devices");
            } else {
                println!(
                    "{:<22} {:<12} {:<20} {:<8} {:>8}  LAST SEEN",
                    "DEVICE", "USER", "HOST", "OS", "LAST SEQ"
                );
                for d in devices.iter().take(limit) {
                    println!(
                        "{:<22} {:<12} {:<20} {:<8} {:>8}  {}",
                        d.id,
                        d.user,
                        d.hostname,
                        d.os,
                        d.last_seq,
                        match d.revoked_ms {
                            Some(t) => format!("REVOKED {}", fmt_ms(t)),
                            None => d.last_seen_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
                        }
                    );
                }
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
                    println!(
                        "{}  {}#{}  {}  {}  {}  records={}  rules={}",
                        fmt_ms(e.time_ms),
                        e.device_id,
                        e.seq,
                        e.user,
                        e.action.as_deref().unwrap_or(&e.kind),
                        e.path.as_deref().unwrap_or("-"),
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
    }
}

fn policy_check(dir: &Path) -> anyhow::Result<ExitCode> {
    match holdfast_agent::policy_files::load(Some(dir), "~") {
        Ok(set) => {
            println!(
                "{}: {} rule(s) OK (version {})",
                dir.display(),
                set.rules.len(),
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
