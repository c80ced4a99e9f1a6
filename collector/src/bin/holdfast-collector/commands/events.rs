//! `holdfast-collector events`: list stored events.

use crate::cli::{open_store, print_list, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::Align;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let (json, limit, at) = args.parts();
    let events = open_store(&at.config()?)?.events(limit)?;
    let columns = [
        ("TIME", Align::Left),
        ("DEVICE#SEQ", Align::Left),
        ("USER", Align::Left),
        ("WHAT", Align::Left),
        ("RECORDS", Align::Right),
        ("RULES", Align::Left),
        ("PATH OR MESSAGE", Align::Left),
    ];
    print_list(&events, json, "no events", &columns, |e| {
        vec![
            fmt_ms(e.time_ms),
            format!("{}#{}", e.device_id, e.seq),
            e.user.clone(),
            e.action.clone().unwrap_or_else(|| e.kind.clone()),
            e.records
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            if e.rules.is_empty() {
                "-".into()
            } else {
                e.rules.join(",")
            },
            e.message
                .clone()
                .or_else(|| e.path.clone())
                .unwrap_or_else(|| "-".into()),
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}
