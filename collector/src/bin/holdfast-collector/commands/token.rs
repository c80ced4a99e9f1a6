//! `holdfast-collector token`: enrollment tokens.

use crate::cli::{cli_actor, print_one, Out};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use std::process::ExitCode;

/// The flags and subcommands of `token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a single-use enrollment token bound to a user.
    Create {
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        #[command(flatten)]
        out: Out,
    },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        command:
            TokenCommand::Create {
                user,
                ttl,
                out: Out { json, at },
            },
    } = args;
    let c = at.config()?;
    let ttl = humantime::parse_duration(&ttl).map_err(|e| anyhow::anyhow!("--ttl `{ttl}`: {e}"))?;
    let issued = holdfast_collector::tokens::create(&c, &user, ttl, &cli_actor())?;
    print_one(json, &issued, |issued| {
        println!("{}", issued.token);
        eprintln!(
                "single-use token for {} expires {}; save the line above to a file (say user.token) and on the device run:\n  holdfast-agent enroll --collector {} --token-file user.token",
                issued.user,
                fmt_ms(issued.expires_ms),
                c.listen,
            );
    })?;
    Ok(ExitCode::SUCCESS)
}
