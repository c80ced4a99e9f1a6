//! `holdfast-collector alerts`: list alerts with the API's filters, and triage them
//! (`triage`, `resolve`, `dismiss`), each change audited as the console's are.

use crate::cli::{cli_actor, open_store, parse_when, print_list, ListFlags, Out, Where};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use holdfast_collector::store::{Alert, AlertChange, AlertFilter, AlertOrder, AlertStatus, Scope};
use holdfast_collector::table::Column;
use holdfast_shared::event::Severity;
use holdfast_shared::time::UnixMs;
use std::process::ExitCode;

/// The flags and subcommands of `alerts`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AlertCommand,
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// List, most severe then newest first (the triage queue's order), filtered as the API's
    /// `GET /api/v1/alerts` is.
    List {
        #[command(flatten)]
        filter: FilterFlags,
        #[command(flatten)]
        list: ListFlags,
    },
    /// Mark alerts triaged (someone is on it); optionally assign them and add a note.
    Triage {
        #[command(flatten)]
        change: ChangeFlags,
        /// Who works on them.
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Close alerts as real and dealt with.
    Resolve {
        #[command(flatten)]
        change: ChangeFlags,
    },
    /// Close alerts as false positives.
    Dismiss {
        #[command(flatten)]
        change: ChangeFlags,
    },
}

/// Which alerts `list` shows: the API's filters, as flags.
#[derive(clap::Args)]
pub struct FilterFlags {
    /// Only these statuses (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(holdfast_collector::triage::FILTER_STATUSES))]
    status: Vec<String>,
    /// Only these severities (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = ["critical", "high", "medium", "low"])]
    severity: Vec<String>,
    /// Only this rule id.
    #[arg(long)]
    rule: Option<String>,
    /// Only this user's.
    #[arg(long)]
    user: Option<String>,
    /// Only this device's (`crm:<connector>` for a CRM's exports).
    #[arg(long)]
    device: Option<String>,
    /// Only those assigned to this name.
    #[arg(long)]
    assignee: Option<String>,
    /// Last seen at or after: an RFC 3339 time, or a duration before now (`24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Last seen before: an RFC 3339 time, or a duration before now.
    #[arg(long)]
    until: Option<String>,
    /// `severity` (most severe, then newest) or `newest`.
    #[arg(long, default_value = "severity", value_parser = ["severity", "newest"])]
    sort: String,
}

/// The alerts a triage command changes, its note, and where the data is.
#[derive(clap::Args)]
pub struct ChangeFlags {
    /// Alert ids (see `alerts list`).
    #[arg(required = true, value_name = "ID")]
    ids: Vec<i64>,
    /// A note to add to each.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    out: Out,
}

/// `v` as a time: a duration before `now` (`24h`), `now`, or RFC 3339.
fn when(flag: &str, v: &str, now: UnixMs) -> anyhow::Result<UnixMs> {
    match humantime::parse_duration(v) {
        Ok(d) => Ok(now.minus(d)),
        Err(_) => parse_when(flag, v).map_err(|_| {
            anyhow::anyhow!(
                "{flag} `{v}`: expected a time like 2026-12-01T18:00:00Z or a duration before now like 24h"
            )
        }),
    }
}

impl FilterFlags {
    fn filter(&self, now: UnixMs) -> anyhow::Result<(AlertFilter, AlertOrder)> {
        let time =
            |flag: &str, v: &Option<String>| v.as_deref().map(|v| when(flag, v, now)).transpose();
        let filter = AlertFilter {
            scope: Scope {
                user: self.user.clone(),
                device: self.device.clone(),
                since_ms: time("--since", &self.since)?,
                until_ms: time("--until", &self.until)?,
            },
            // clap checked both lists against these names.
            statuses: self
                .status
                .iter()
                .filter_map(|s| AlertStatus::parse(s))
                .collect(),
            severities: self
                .severity
                .iter()
                .filter_map(|s| Severity::parse(s))
                .collect(),
            rule: self.rule.clone(),
            assignee: self.assignee.clone(),
        };
        let order = if self.sort == "newest" {
            AlertOrder::Newest
        } else {
            AlertOrder::Severity
        };
        Ok((filter, order))
    }
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        AlertCommand::List { filter, list } => {
            let ListFlags {
                out: Out { json, at },
                limit,
            } = list;
            let (f, order) = filter.filter(holdfast_collector::now_ms())?;
            let alerts = open_store(&at.config()?)?.alert_page(&f, order, None, limit)?;
            print_list(&alerts, json, "no alerts", &columns())?;
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Triage { change, assignee } => {
            apply(change, AlertStatus::Triaged, assignee.map(Some))
        }
        AlertCommand::Resolve { change } => apply(change, AlertStatus::Resolved, None),
        AlertCommand::Dismiss { change } => apply(change, AlertStatus::FalsePositive, None),
    }
}

/// Moves each alert of `c` to `to` (with the note and assignee), one audited change each.
/// Every id is tried; the ones that fail are named on stderr and the exit code is 2.
fn apply(
    c: ChangeFlags,
    to: AlertStatus,
    assignee: Option<Option<String>>,
) -> anyhow::Result<ExitCode> {
    let ChangeFlags { ids, note, out } = c;
    let Out { json, at } = out;
    let mut store = open_store(&Where::config(&at)?)?;
    let change = AlertChange {
        status: Some(to),
        assignee,
        note,
    };
    let mut failed = 0;
    for id in ids {
        match holdfast_collector::triage::change(
            &mut store,
            id,
            &change,
            &cli_actor(),
            holdfast_collector::now_ms(),
        ) {
            Ok(a) if json => println!("{}", serde_json::to_string(&a)?),
            Ok(a) => println!("alert {id}: {} ({} {})", a.status, a.rule_id, a.user),
            Err(e) => {
                failed += 1;
                if json {
                    println!("{}", serde_json::json!({"id": id, "error": e.to_string()}));
                }
                eprintln!("error: alert {id}: {e}");
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The columns of an alert listing.
fn columns() -> Vec<Column<Alert>> {
    vec![
        Column::right("ID", |a: &Alert| a.id.to_string()),
        Column::left("SEVERITY", |a| a.severity.to_string()),
        Column::left("STATUS", |a| a.status.to_string()),
        Column::left("RULE", |a| a.rule_id.clone()),
        Column::left("USER", |a| a.user.clone()),
        Column::right("RECORDS", |a| a.records.to_string()),
        Column::left("LAST SEEN", |a| fmt_ms(a.last_seen_ms)),
        Column::left("PATH OR DETAIL", |a| {
            if a.path.is_empty() {
                &a.detail
            } else {
                &a.path
            }
            .clone()
        }),
    ]
}
