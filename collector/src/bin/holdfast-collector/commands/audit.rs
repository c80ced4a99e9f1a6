//! `holdfast-collector audit`: list the audit log.

use crate::cli::{open_store, print_json_lines, ListCommand};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::{Align, Table};
use std::process::ExitCode;

/// The flags and subcommands of `audit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ListCommand,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command: ListCommand::List { json, limit, at },
    } = args;
    let log = open_store(&at.config()?)?.audit_log(limit)?;
    if json {
        print_json_lines(&log)?;
    } else if log.is_empty() {
        println!("no audit entries");
    } else {
        let mut t = Table::new(&[
            ("TIME", Align::Left),
            ("ACTOR", Align::Left),
            ("ORIGIN", Align::Left),
            ("ACTION", Align::Left),
            ("TARGET", Align::Left),
            ("DETAIL", Align::Left),
        ]);
        for e in &log {
            t.row(vec![
                fmt_ms(e.time_ms),
                e.actor.clone(),
                e.origin.clone(),
                e.action.clone(),
                e.target.clone(),
                e.detail.clone(),
            ]);
        }
        t.print();
    }
    Ok(ExitCode::SUCCESS)
}
