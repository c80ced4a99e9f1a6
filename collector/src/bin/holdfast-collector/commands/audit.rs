//! `holdfast-collector audit`: list the audit log.

use crate::cli::ListArgs;
use holdfast_collector::fmt_ms;
use holdfast_collector::store::AuditEntry;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    args.print(
        |s, n| Ok(s.audit_log(n)?),
        "no audit entries",
        &[
            Column::left("TIME", |e: &AuditEntry| fmt_ms(e.time_ms)),
            Column::left("ACTOR", |e| e.actor.clone()),
            Column::left("ORIGIN", |e| e.origin.clone()),
            Column::left("ACTION", |e| e.action.clone()),
            Column::left("TARGET", |e| e.target.clone()),
            Column::left("DETAIL", |e| e.detail.clone()),
        ],
    )
}
