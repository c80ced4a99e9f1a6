//! `holdfast-collector alerts`: list alerts.

use crate::cli::ListArgs;
use holdfast_collector::fmt_ms;
use holdfast_collector::store::Alert;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    args.print(
        |s, n| Ok(s.alerts(n)?),
        "no alerts",
        &[
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
        ],
    )
}
