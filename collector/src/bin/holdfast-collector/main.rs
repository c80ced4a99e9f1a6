//! `holdfast-collector`: flag parsing and wiring only; the work is in the library. One
//! module per command (`commands/<name>.rs`: its `Args` and its `exec`), what they share in
//! `cli.rs`, and every table through the library's one printer (`table::Table`).

mod cli;
mod commands;

use clap::Subcommand;
use holdfast_io::process::Program;
use std::process::ExitCode;

const PROGRAM: Program = Program {
    name: "holdfast-collector",
    about: "Holdfast collector: receives agents' events over QUIC (mutual TLS), stores them in \
        SQLite, raises alerts, and issues enrollment tokens.",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(Subcommand)]
enum Command {
    /// Run the collector server.
    Serve(commands::serve::Args),
    /// Collector + local agent + instructions, all on loopback.
    #[cfg(feature = "quickstart")]
    Quickstart(commands::quickstart::Args),
    /// Enrollment tokens.
    Token(commands::token::Args),
    /// API tokens for the HTTP API and the web console, each with a role: analyst (triage),
    /// it_admin (devices, offboarding), auditor (read-only with the audit log), admin.
    ApiToken(commands::api_token::Args),
    /// Alerts.
    Alerts(commands::alerts::Args),
    /// Enrolled devices.
    Devices(commands::devices::Args),
    /// Stored events.
    Events(commands::events::Args),
    /// Users (who enrolled a device or got a token): devices, and active / departing /
    /// offboarded / restored.
    Users(commands::users::Args),
    /// HR exports: who resigned and their last working day.
    Hr(commands::hr::Args),
    /// The append-only audit log: who did what, when, from where.
    Audit(commands::audit::Args),
    /// Connectors (collector.toml's [[connector]] tables): what each does at an offboarding
    /// and a restore, and how each CRM's export polling stands.
    Connectors(commands::connectors::Args),
    /// Policy files.
    Policy(commands::policy::Args),
    /// Exact data match: the company's real customers, as keyed fingerprints.
    Edm(commands::edm::Args),
    /// Offboard a leaver: every device of USER gets a signed order (quarantine customer
    /// files, strip access, purge CRM caches, as the policy's [offboard] says), carried out at
    /// the effective time or when the device next connects. Idempotent.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Offboard(commands::offboard::Args),
}

fn main() -> ExitCode {
    // Everything the collector writes (database, keys, certificates, logs) is its own.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    PROGRAM.main(real_main)
}

fn real_main(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => commands::serve::exec(args),
        #[cfg(feature = "quickstart")]
        Command::Quickstart(args) => commands::quickstart::exec(args),
        Command::Token(args) => commands::token::exec(args),
        Command::ApiToken(args) => commands::api_token::exec(args),
        Command::Alerts(args) => commands::alerts::exec(args),
        Command::Devices(args) => commands::devices::exec(args),
        Command::Events(args) => commands::events::exec(args),
        Command::Users(args) => commands::users::exec(args),
        Command::Hr(args) => commands::hr::exec(args),
        Command::Audit(args) => commands::audit::exec(args),
        Command::Connectors(args) => commands::connectors::exec(args),
        Command::Policy(args) => commands::policy::exec(args),
        Command::Edm(args) => commands::edm::exec(args),
        Command::Offboard(args) => commands::offboard::exec(args),
    }
}
