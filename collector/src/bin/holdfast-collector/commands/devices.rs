//! `holdfast-collector devices`: list and revoke devices.

use crate::cli::{
    cli_actor, dash, open_store, print_json_lines, print_list, ListFlags, Out, Where,
};
use clap::Subcommand;
use holdfast_collector::fmt_ms;
use holdfast_collector::store::Device;
use holdfast_collector::table::Column;
use std::process::ExitCode;

/// The flags and subcommands of `devices`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// List, most recently seen first.
    List(ListFlags),
    /// Refuse this device from now on; an open connection is closed within seconds.
    Revoke {
        /// The device id (see `devices list`).
        device: String,
        #[command(flatten)]
        at: Where,
    },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args {
            command: DeviceCommand::Revoke { device, at },
        } => {
            let store = open_store(&at.config()?)?;
            if !store.revoke_device(&device, holdfast_collector::now_ms(), &cli_actor())? {
                anyhow::bail!(
                    "DEVICE: no device `{device}` (see `holdfast-collector devices list`)"
                );
            }
            println!("device {device} revoked");
            Ok(ExitCode::SUCCESS)
        }
        Args {
            command:
                DeviceCommand::List(ListFlags {
                    out: Out { json, at },
                    limit,
                }),
        } => {
            let store = open_store(&at.config()?)?;
            let devices = store.devices()?;
            let published = store.current_policy()?.map(|p| p.version);
            if json {
                // Each device, plus whether it runs another policy than the published one.
                let rows = devices
                    .iter()
                    .take(limit)
                    .map(|d| {
                        let mut v = serde_json::to_value(d)?;
                        v["policy_stale"] =
                            serde_json::json!(published.as_ref().map(|p| *p != d.policy_version));
                        Ok(v)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_json_lines(&rows)?;
            } else {
                let shown = &devices[..devices.len().min(limit)];
                print_list(
                    shown,
                    false,
                    "no devices",
                    &[
                        Column::left("DEVICE", |d: &Device| d.id.clone()),
                        Column::left("USER", |d| d.user.clone()),
                        Column::left("HOST", |d| d.hostname.clone()),
                        Column::left("OS", |d| d.os.clone()),
                        Column::right("LAST SEQ", |d| d.last_seq.to_string()),
                        Column::left("POLICY", |d| {
                            d.policy_version
                                .get(..12)
                                .unwrap_or(&d.policy_version)
                                .to_string()
                        }),
                        Column::right("SKEW", |d| {
                            dash(d.clock_skew_ms.map(|s| format!("{}s", s / 1000)))
                        }),
                        Column::left("LAST SEEN", |d| match (d.revoked_ms, d.removed_ms) {
                            (Some(t), _) => format!("REVOKED {}", fmt_ms(t)),
                            (None, Some(t)) => format!("AGENT REMOVED {}", fmt_ms(t)),
                            _ => d.last_seen_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
                        }),
                    ],
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
