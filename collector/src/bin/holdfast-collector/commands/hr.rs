//! `holdfast-collector hr`: import HR exports.

use crate::cli::{cli_actor, open_store, print_one, Out};
use clap::Subcommand;
use holdfast_collector::table::escape;
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags and subcommands of `hr`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HrCommand,
}

#[derive(Subcommand)]
pub enum HrCommand {
    /// Import an HR export (CSV/TSV; UTF-8, UTF-16 or GBK) with a user or email column, a
    /// last working day and optionally a resignation (notice) date: each leaver is departing
    /// from notice and offboarded when their last day ends (UTC). Bad rows are reported by
    /// line; good rows apply; importing again changes nothing. Exit status 1 if any row failed.
    Import {
        file: PathBuf,
        #[command(flatten)]
        out: Out,
    },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command: HrCommand::Import {
            file,
            out: Out { json, at },
        },
    } = args;
    let c = at.config()?;
    let mut store = open_store(&c)?;
    let r = holdfast_collector::hr::import(
        &c,
        &mut store,
        &file,
        &cli_actor(),
        holdfast_collector::now_ms(),
    )?;
    print_one(json, &r, |r| {
        for o in &r.rows {
            println!("line {:<5} {:<10} {}", o.line, o.result, escape(&o.detail));
        }
        println!(
            "{} scheduled, {} unchanged, {} row(s) with errors",
            r.scheduled, r.unchanged, r.errors
        );
    })?;
    Ok(if r.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
