//! `holdfast-collector users`: list users and their state.

use crate::cli::{open_store, print_json_lines, ListCommand};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::{Align, Table};
use std::process::ExitCode;

/// The flags and subcommands of `users`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ListCommand,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command: ListCommand::List { json, limit, at },
    } = args;
    let store = open_store(&at.config()?)?;
    let users = holdfast_collector::risk::users(&store, holdfast_collector::now_ms())?;
    let users: Vec<_> = users.into_iter().take(limit).collect();
    if json {
        print_json_lines(&users)?;
    } else if users.is_empty() {
        println!("no users");
    } else {
        let mut t = Table::new(&[
            ("USER", Align::Left),
            ("RISK", Align::Right),
            ("DEVICES", Align::Right),
            ("STATE", Align::Left),
            ("EFFECTIVE", Align::Left),
            ("WHY", Align::Left),
        ]);
        for u in &users {
            t.row(vec![
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
            ]);
        }
        t.print();
    }
    Ok(ExitCode::SUCCESS)
}
