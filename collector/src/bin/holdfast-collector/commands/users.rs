//! `holdfast-collector users`: list users and their state.

use crate::cli::{dash, ListArgs};
use holdfast_collector::fmt_ms;
use holdfast_collector::risk::UserRisk;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// `list`, with `--json` and `--limit`.
pub type Args = ListArgs;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    args.print(
        |s, n| {
            let users = holdfast_collector::risk::users(s, holdfast_collector::now_ms())?;
            Ok(users.into_iter().take(n).collect())
        },
        "no users",
        &[
            Column::left("USER", |u: &UserRisk| u.user.clone()),
            Column::right("RISK", |u| u.score.to_string()),
            Column::right("DEVICES", |u| u.devices.to_string()),
            Column::left("STATE", |u| u.state.to_uppercase()),
            Column::left("EFFECTIVE", |u| dash(u.effective_ms.map(fmt_ms))),
            Column::left("WHY", |u| {
                dash((!u.signals.is_empty()).then(|| u.signals.join("; ")))
            }),
        ],
    )
}
