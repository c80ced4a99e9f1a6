//! `holdfast-collector edm`: import the customer master list.

use crate::cli::{cli_actor, open_store, print_one, Out, Progress};
use anyhow::Context;
use clap::Subcommand;
use holdfast_collector::table::escape;
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags and subcommands of `edm`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: EdmCommand,
}

#[derive(Subcommand)]
pub enum EdmCommand {
    /// Import the company's customer master list (CSV/TSV; UTF-8, UTF-16 or GBK). Each
    /// identifier is normalised and keyed with the deployment secret; agents receive only the
    /// signed fingerprint set, at their next heartbeat. Bad rows are reported by line.
    Import {
        /// The customer list.
        file: PathBuf,
        /// Columns holding identifiers, by header name or role, e.g. `email,phone`.
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        /// Also write the set as agents hold it (signed manifest, then the fingerprints), for
        /// `holdfast-agent scan --edm`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        output: Out,
    },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command:
            EdmCommand::Import {
                file,
                columns,
                out,
                output: Out { json, at },
            },
    } = args;
    let c = at.config()?;
    let store = open_store(&c)?;
    let mut bar = Progress::new(&format!("importing {}", file.display()));
    let (r, held) = holdfast_collector::edm::import(
        &c,
        &store,
        &file,
        &columns,
        holdfast_collector::now_ms(),
        &cli_actor(),
        &mut |done, total| bar.update(done, total),
    )?;
    bar.finish();
    if let Some(out) = out {
        holdfast_io::fs::write_file_atomic(&out, &held.to_bytes(), 0o600)
            .with_context(|| format!("--out {}", out.display()))?;
    }
    print_one(json, &r, |r| {
        println!(
            "imported {} customers ({} identifiers) as set {}; {} row(s) skipped",
            r.customers, r.identifiers, r.version, r.skipped_rows
        );
        for s in r.skipped.iter().take(20) {
            println!("  line {}: {}", s.line, escape(&s.reason));
        }
        if r.skipped.len() > 20 {
            println!("  … {} more (use --json for all)", r.skipped.len() - 20);
        }
        println!("agents fetch the signed set at their next heartbeat");
    })?;
    Ok(ExitCode::SUCCESS)
}
