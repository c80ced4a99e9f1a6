//! `holdfast-collector offboard`: offboard a leaver, follow it, report, retry, restore.

use crate::cli::{cli_actor, open_store, parse_when, print_one, Where};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use holdfast_collector::offboard;
use holdfast_collector::table::escape;
use std::process::ExitCode;

/// The flags and subcommands of `offboard`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<OffboardCommand>,
    /// The user, as enrolled (see `devices list`).
    #[arg(required = true)]
    pub user: Option<String>,
    /// When the orders take effect: `now` (the default), or an RFC 3339 time such as
    /// 2026-12-01T18:00:00Z. Sent again with another time for an open offboarding, it is
    /// refused and says why.
    #[arg(long)]
    pub effective: Option<String>,
    /// How far back the look-back report reaches, e.g. 90d.
    #[arg(long, default_value = "90d")]
    pub lookback: String,
    /// Why (kept in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who takes USER's customers over: connectors that transfer customers (`wecom`) hand
    /// them to this user, and the handover report names them.
    #[arg(long, value_name = "USER2")]
    pub successor: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Subcommand)]
pub enum OffboardCommand {
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
        /// `table` for people (UTC times), `json` (epoch milliseconds) or `csv` (one row
        /// per event and held file).
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// The same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

pub fn print_offboard_status(status: &holdfast_collector::offboard::Status) {
    let st = &status.offboarding;
    println!(
        "{}: offboarded {} (effective {}), look-back {} days{}{}{}",
        escape(&st.user),
        fmt_ms(st.started_ms),
        fmt_ms(st.effective_ms),
        st.lookback_ms / 86_400_000,
        if st.reason.is_empty() {
            String::new()
        } else {
            format!(", reason: {}", escape(&st.reason))
        },
        st.successor
            .as_ref()
            .map(|s| format!(", successor: {}", escape(s)))
            .unwrap_or_default(),
        st.restored_ms
            .map(|t| format!(", RESTORED {}", fmt_ms(t)))
            .unwrap_or_default()
    );
    if status.devices.is_empty() {
        println!("  no devices");
    }
    for d in &status.devices {
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
    for r in &status.connectors {
        println!(
            "  connector {:<12} {:<8} {:<7} attempts={:<3} code={:<5} {}",
            r.connector,
            r.event,
            r.status.as_str().to_uppercase(),
            r.attempts,
            r.last
                .as_ref()
                .and_then(|l| l.code)
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            escape(r.last.as_ref().map_or("", |l| l.detail.as_str()))
        );
    }
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args {
            command: Some(OffboardCommand::Status { user, json, at }),
            ..
        } => {
            let store = open_store(&at.config()?)?;
            let st = offboard::status(&store, &user, holdfast_collector::now_ms())?;
            print_one(json, &st, |st| {
                print_offboard_status(st);
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Args {
            command:
                Some(OffboardCommand::Report {
                    user,
                    format,
                    json,
                    at,
                }),
            ..
        } => {
            let store = open_store(&at.config()?)?;
            let r = offboard::report(&store, &user)?;
            let format = if json { ReportFormat::Json } else { format };
            match format {
                ReportFormat::Table => print!("{}", holdfast_collector::report::to_text(&r)),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                ReportFormat::Csv => print!("{}", holdfast_collector::report::to_csv(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Args {
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
        Args {
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
        Args {
            command: None,
            user,
            effective,
            lookback,
            reason,
            successor,
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
                effective_ms: effective
                    .map(|e| parse_when("--effective", &e))
                    .transpose()?,
                lookback_ms: lookback.as_millis() as i64,
                reason,
                notice_ms: None,
                successor,
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
                println!(
                    "follow it with: {}",
                    c.command(&format!(
                        "offboard status {}",
                        holdfast_collector::config::shell_word(&user)
                    ))
                );
            } else {
                println!("{user}: already being offboarded; nothing changed");
                println!(
                    "follow it with: {}",
                    c.command(&format!(
                        "offboard status {}",
                        holdfast_collector::config::shell_word(&user)
                    ))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
