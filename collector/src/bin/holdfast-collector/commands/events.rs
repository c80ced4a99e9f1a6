//! `holdfast-collector events`: list stored events.

use crate::cli::{open_store, print_json_lines, ListCommand};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::escape;
use std::process::ExitCode;

/// The flags and subcommands of `events`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ListCommand,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command: ListCommand::List { json, limit, at },
    } = args;
    let events = open_store(&at.config()?)?.events(limit)?;
    if json {
        print_json_lines(&events)?;
    } else {
        for e in &events {
            if let Some(message) = &e.message {
                println!(
                    "{}  {}#{}  {}  {}  {message}",
                    fmt_ms(e.time_ms),
                    e.device_id,
                    e.seq,
                    escape(&e.user),
                    e.kind,
                    message = escape(message)
                );
                continue;
            }
            println!(
                "{}  {}#{}  {}  {}  {}  records={}  rules={}",
                fmt_ms(e.time_ms),
                e.device_id,
                e.seq,
                escape(&e.user),
                e.action.as_deref().unwrap_or(&e.kind),
                escape(e.path.as_deref().unwrap_or("-")),
                e.records.unwrap_or(0),
                e.rules.join(",")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
