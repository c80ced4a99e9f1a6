//! `holdfast-collector audit`: list the audit log.

use crate::cli::{open_store, print_list, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::Align;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let (json, limit, at) = args.parts();
    let log = open_store(&at.config()?)?.audit_log(limit)?;
    let columns = [
        ("TIME", Align::Left),
        ("ACTOR", Align::Left),
        ("ORIGIN", Align::Left),
        ("ACTION", Align::Left),
        ("TARGET", Align::Left),
        ("DETAIL", Align::Left),
    ];
    print_list(&log, json, "no audit entries", &columns, |e| {
        vec![
            fmt_ms(e.time_ms),
            e.actor.clone(),
            e.origin.clone(),
            e.action.clone(),
            e.target.clone(),
            e.detail.clone(),
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}
