//! `holdfast-collector events`: list stored events.

use crate::cli::{dash, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::store::StoredEvent;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    args.print(
        |s, n| Ok(s.events(n)?),
        "no events",
        &[
            Column::left("TIME", |e: &StoredEvent| fmt_ms(e.time_ms)),
            Column::left("DEVICE#SEQ", |e| format!("{}#{}", e.device_id, e.seq)),
            Column::left("USER", |e| e.user.clone()),
            Column::left("WHAT", |e| {
                e.action.clone().unwrap_or_else(|| e.kind.clone())
            }),
            Column::right("RECORDS", |e| dash(e.records.map(|r| r.to_string()))),
            Column::left("RULES", |e| {
                dash((!e.rules.is_empty()).then(|| e.rules.join(",")))
            }),
            Column::left("PATH OR MESSAGE", |e| {
                dash(e.message.clone().or_else(|| e.path.clone()))
            }),
        ],
    )
}
