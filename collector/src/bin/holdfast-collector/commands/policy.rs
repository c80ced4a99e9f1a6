//! `holdfast-collector policy`: check and publish policy files.

use crate::cli::{cli_actor, open_store, Where};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The flags and subcommands of `policy`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate every .toml policy file in DIR; errors name file:line:column.
    Check { dir: PathBuf },
    /// Validate, sign (Ed25519) and publish DIR (or one FILE) as the policy every agent must
    /// run. Agents verify the signature and switch at their next heartbeat. Idempotent.
    Publish {
        path: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// Show the published policy bundle and which devices run another version.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
}

pub fn policy_check(dir: &Path) -> anyhow::Result<ExitCode> {
    match holdfast_io::policy_files::load(Some(dir), "~") {
        Ok(set) => {
            println!(
                "{}: {} rule(s), {} bulk-read rule(s), {} cloud service(s) OK (version {})",
                dir.display(),
                set.rules.len(),
                set.bulk_reads.len(),
                set.cloud.len(),
                set.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Args {
            command: PolicyCommand::Publish { path, json, at },
        } => {
            let c = at.config()?;
            let store = open_store(&c)?;
            let p = holdfast_collector::policies::publish(
                &c,
                &store,
                &path,
                holdfast_collector::now_ms(),
                &cli_actor(),
            )?;
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else if p.changed {
                println!(
                "published policy {} ({} rule(s) in {} file(s)); agents switch at their next heartbeat",
                p.version, p.rules, p.files
            );
            } else {
                println!(
                    "policy {} is already the published one; nothing changed",
                    p.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Args {
            command: PolicyCommand::Status { json, at },
        } => {
            let store = open_store(&at.config()?)?;
            let current = store.current_policy()?;
            let devices = store.devices()?;
            let stale: Vec<_> = devices
            .iter()
            .filter(|d| d.revoked_ms.is_none())
            .filter(|d| current.as_ref().is_some_and(|p| p.version != d.policy_version))
            .map(|d| serde_json::json!({"device_id": d.id, "user": d.user, "policy_version": d.policy_version, "last_seen_ms": d.last_seen_ms}))
            .collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"published": current, "stale_devices": stale})
                );
            } else {
                match &current {
                    None => println!("no policy published: agents run their local policies"),
                    Some(p) => println!("published   {} at {}", p.version, fmt_ms(p.published_ms)),
                }
                if current.is_some() {
                    println!("stale       {} device(s)", stale.len());
                    for d in &stale {
                        println!(
                            "  {}  {}  runs {}",
                            d["device_id"].as_str().unwrap_or(""),
                            d["user"].as_str().unwrap_or(""),
                            d["policy_version"]
                                .as_str()
                                .filter(|v| !v.is_empty())
                                .unwrap_or("unknown")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
