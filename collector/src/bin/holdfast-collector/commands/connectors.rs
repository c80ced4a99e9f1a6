//! `holdfast-collector connectors`: the connectors of collector.toml, what each does at an
//! offboarding and a restore, and how each CRM's export polling stands.

use crate::cli::{dash, open_store, print_list, ListArgs, ListCommand, ListFlags, Out};
use holdfast_collector::connectors::overview::{overview, ConnectorStatus};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let ListCommand::List(ListFlags {
        out: Out { json, at },
        limit,
    }) = args.command;
    let config = at.config()?;
    let store = open_store(&config)?;
    let mut all = overview(&store, &config.connectors, holdfast_collector::now_ms())?;
    all.truncate(limit);
    let empty = if at.has_config_file() {
        "no connectors ([[connector]] tables in collector.toml)"
    } else {
        "no connectors: they are configured in collector.toml (add --config collector.toml)"
    };
    print_list(
        &all,
        json,
        empty,
        &[
            Column::left("NAME", |c: &ConnectorStatus| c.name.clone()),
            Column::left("KIND", |c| c.kind.to_string()),
            Column::left("OFFBOARDING", |c| c.offboarding.clone()),
            Column::left("RESTORE", |c| c.restore.clone()),
            Column::left("POLL", |c| dash(c.poll_every_s.map(|s| format!("{s}s")))),
            Column::left("LAST POLL", |c| match (c.poll_every_s, c.last_poll_ms) {
                (None, _) => "-".into(),
                (Some(_), None) => "never".into(),
                (Some(_), Some(t)) => fmt_ms(t),
            }),
            Column::left("STATE", |c| match c.poll_ok {
                None => "-".into(),
                Some(true) => format!("ok: {}", c.poll_detail),
                Some(false) => format!("FAILED: {}", c.poll_detail),
            }),
            Column::right("EXPORTS", |c| {
                dash(c.poll_every_s.map(|_| c.exports.to_string()))
            }),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}
