//! `holdfast-collector alerts`: list alerts.

use crate::cli::{open_store, print_list, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::Align;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let (json, limit, at) = args.parts();
    let alerts = open_store(&at.config()?)?.alerts(limit)?;
    let columns = [
        ("ID", Align::Right),
        ("SEVERITY", Align::Left),
        ("STATUS", Align::Left),
        ("RULE", Align::Left),
        ("USER", Align::Left),
        ("RECORDS", Align::Right),
        ("LAST SEEN", Align::Left),
        ("PATH OR DETAIL", Align::Left),
    ];
    print_list(&alerts, json, "no alerts", &columns, |a| {
        vec![
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
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}
