//! `holdfast-collector alerts`: list alerts.

use crate::cli::{open_store, print_json_lines, ListCommand};
use holdfast_collector::fmt_ms;
use holdfast_collector::table::{Align, Table};
use std::process::ExitCode;

/// The flags and subcommands of `alerts`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ListCommand,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command: ListCommand::List { json, limit, at },
    } = args;
    let alerts = open_store(&at.config()?)?.alerts(limit)?;
    if json {
        print_json_lines(&alerts)?;
    } else if alerts.is_empty() {
        println!("no alerts");
    } else {
        let mut t = Table::new(&[
            ("ID", Align::Right),
            ("SEVERITY", Align::Left),
            ("STATUS", Align::Left),
            ("RULE", Align::Left),
            ("USER", Align::Left),
            ("RECORDS", Align::Right),
            ("LAST SEEN", Align::Left),
            ("PATH OR DETAIL", Align::Left),
        ]);
        for a in &alerts {
            t.row(vec![
                a.id.to_string(),
                a.severity.to_string(),
                a.status.to_string(),
                a.rule_id.clone(),
                a.user.clone(),
                a.records.to_string(),
                fmt_ms(a.last_seen_ms),
                if a.path.is_empty() {
                    a.detail.clone()
                } else {
                    a.path.clone()
                },
            ]);
        }
        t.print();
    }
    Ok(ExitCode::SUCCESS)
}
