//! `holdfast-collector api-token`: API tokens and their roles.

use crate::cli::{cli_actor, open_store, print_list, print_one, Out, Where};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use holdfast_collector::store::ApiToken;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// The flags and subcommands of `api-token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ApiTokenCommand,
}

#[derive(Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token; its secret is printed once, and only its hash is kept.
    Create {
        /// A unique name (letters, digits, '-', '_', '.'), e.g. soc-alice or hr-system.
        #[arg(long)]
        name: String,
        /// analyst, it_admin, auditor or admin.
        #[arg(long)]
        role: String,
        /// A one-time console login instead of an API token.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        out: Out,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        out: Out,
    },
    /// Revoke a token and end its console sessions.
    Revoke {
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args {
            command:
                ApiTokenCommand::Create {
                    name,
                    role,
                    once,
                    out: Out { json, at },
                },
        } => {
            let c = at.config()?;
            let mut store = open_store(&c)?;
            let t = holdfast_collector::api_tokens::create(
                &mut store,
                &name,
                &role,
                once,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            print_one(json, &t, |t| {
                println!("{}", t.secret);
                let url = c
                    .http_listen
                    .map(|a| format!("http://{a}/"))
                    .unwrap_or_else(|| "(http_listen is off)".into());
                eprintln!(
                "{} token `{}` (role {}); shown once, keep it safe. API: `Authorization: Bearer <token>`; console: {url}",
                if once { "one-time login" } else { "API" },
                t.name,
                t.role
            );
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Args {
            command: ApiTokenCommand::List {
                out: Out { json, at },
            },
        } => {
            let tokens = open_store(&at.config()?)?.api_tokens()?;
            print_list(
                &tokens,
                json,
                "no API tokens",
                &[
                    Column::left("NAME", |t: &ApiToken| t.name.clone()),
                    Column::left("ROLE", |t| t.role.to_string()),
                    Column::left("STATE", |t| match (t.revoked_ms, t.used_ms) {
                        (Some(r), _) => format!("revoked {}", fmt_ms(r)),
                        (None, Some(u)) => format!("spent {}", fmt_ms(u)),
                        (None, None) => "live".into(),
                    }),
                    Column::left("CREATED", |t| fmt_ms(t.created_ms)),
                    Column::left("BY", |t| t.created_by.clone()),
                ],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Args {
            command: ApiTokenCommand::Revoke { name, at },
        } => {
            let mut store = open_store(&at.config()?)?;
            holdfast_collector::api_tokens::revoke(
                &mut store,
                &name,
                &cli_actor(),
                holdfast_collector::now_ms(),
            )?;
            println!("revoked {name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
