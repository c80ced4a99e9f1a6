//! `holdfast-collector users`: list users and their state.

use crate::cli::{open_store, print_list, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::Align;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let (json, limit, at) = args.parts();
    let store = open_store(&at.config()?)?;
    let users = holdfast_collector::risk::users(&store, holdfast_collector::now_ms())?;
    let users: Vec<_> = users.into_iter().take(limit).collect();
    let columns = [
        ("USER", Align::Left),
        ("RISK", Align::Right),
        ("DEVICES", Align::Right),
        ("STATE", Align::Left),
        ("EFFECTIVE", Align::Left),
        ("WHY", Align::Left),
    ];
    print_list(&users, json, "no users", &columns, |u| {
        vec![
            u.user.clone(),
            u.score.to_string(),
            u.devices.to_string(),
            u.state.to_uppercase(),
            u.effective_ms.map(fmt_ms).unwrap_or_else(|| "-".into()),
            if u.signals.is_empty() {
                "-".to_string()
            } else {
                u.signals.join("; ")
            },
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}
