//! What every command shares: where the data is (`--config`/`--data-dir`), who acts, time
//! flags, the progress bar, `--json` lines, opening the store, and the listing subcommand.

use anyhow::Context;
use clap::{Args, Subcommand};
use holdfast_collector::config::{implied_data_dir, quickstart_data_dir, Config};
use holdfast_collector::store::Store;
use holdfast_collector::table::{Column, Table};
use holdfast_shared::time::UnixMs;
use std::path::PathBuf;

/// Where the collector's data lives, for admin commands.
#[derive(Args, Clone)]
pub(crate) struct Where {
    /// Collector config file (its data_dir is used).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Collector data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// `--json` and where the data is: the flags of every command that prints what it did.
#[derive(Args, Clone)]
pub(crate) struct Out {
    /// One JSON object (or one per line for listings) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub at: Where,
}

/// What a command did: one JSON object with `--json`, else `text`'s words.
pub(crate) fn print_one<T: serde::Serialize>(
    json: bool,
    done: &T,
    text: impl FnOnce(&T),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(done)?);
    } else {
        text(done);
    }
    Ok(())
}

/// The operator and host, for the audit log.
pub(crate) fn cli_actor() -> holdfast_collector::Actor {
    holdfast_collector::Actor::cli()
}

/// `now` or an RFC 3339 time, in milliseconds since the epoch.
pub(crate) fn parse_when(flag: &str, v: &str) -> anyhow::Result<UnixMs> {
    if v == "now" {
        return Ok(holdfast_collector::now_ms());
    }
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow::anyhow!(
                "{flag} `{v}`: expected `now` or a time like 2026-12-01T18:00:00Z ({e})"
            )
        })?;
    Ok(UnixMs((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) struct Progress {
    label: String,
    tty: bool,
    last: std::time::Instant,
}

/// Every listing's output: with `--json` one object per line, else one table through the
/// library's printer (header row first), or `empty` when there is nothing to list.
pub(crate) fn print_list<T: serde::Serialize>(
    items: &[T],
    json: bool,
    empty: &str,
    columns: &[Column<T>],
) -> anyhow::Result<()> {
    if json {
        print_json_lines(items)
    } else if items.is_empty() {
        println!("{empty}");
        Ok(())
    } else {
        Table::of(items, columns).print();
        Ok(())
    }
}

/// A cell's value, or `-` when there is none.
pub(crate) fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// `--json` output of every listing: one object per line.
pub(crate) fn print_json_lines<T: serde::Serialize>(items: &[T]) -> anyhow::Result<()> {
    for item in items {
        println!("{}", serde_json::to_string(item)?);
    }
    Ok(())
}

/// `lead` and the flag that reaches quickstart's data (`: add --data-dir …`), when a
/// quickstart database exists.
fn quickstart_hint(lead: &str) -> Option<String> {
    let q = quickstart_data_dir();
    q.join("collector.db")
        .is_file()
        .then(|| format!("{lead}: add --data-dir {} for its data", q.display()))
}

pub(crate) fn open_store(c: &Config) -> anyhow::Result<Store> {
    let p = c.db_path();
    if !p.is_file() {
        let hint = quickstart_hint("; quickstart's is elsewhere").unwrap_or_else(|| {
            "; add --config with the server's collector.toml, or --data-dir with its data_dir"
                .into()
        });
        anyhow::bail!("{}: no collector database here{hint}", p.display());
    }
    Store::open(&p).with_context(|| format!("opening {}", p.display()))
}

#[derive(Subcommand)]
pub(crate) enum ListCommand {
    /// List, newest and most severe first.
    List(ListFlags),
}

/// The flags of a listing: `--json`, where the data is, and `--limit`.
#[derive(Args)]
pub(crate) struct ListFlags {
    #[command(flatten)]
    pub out: Out,
    /// At most this many rows.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// The flags of every listing command (`alerts`, `events`, `users`, `audit`).
#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(subcommand)]
    pub command: ListCommand,
}

impl ListArgs {
    /// Runs the listing: at most `--limit` items that `fetch` reads from the store, printed
    /// by [`print_list`] (`empty` when there are none).
    pub(crate) fn print<T: serde::Serialize>(
        self,
        fetch: impl FnOnce(&Store, usize) -> anyhow::Result<Vec<T>>,
        empty: &str,
        columns: &[Column<T>],
    ) -> anyhow::Result<std::process::ExitCode> {
        let ListCommand::List(ListFlags {
            out: Out { json, at },
            limit,
        }) = self.command;
        let items = fetch(&open_store(&at.config()?)?, limit)?;
        print_list(&items, json, empty, columns)?;
        Ok(std::process::ExitCode::SUCCESS)
    }
}

impl Where {
    /// Whether `--config` names a collector.toml (connectors and forwarders live only there).
    pub(crate) fn has_config_file(&self) -> bool {
        self.config.is_some()
    }

    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        Ok(match (&self.config, &self.data_dir) {
            (Some(c), _) if !c.exists() => anyhow::bail!(
                "--config {}: no such file{}",
                c.display(),
                quickstart_hint(" (quickstart writes none")
                    .map(|h| format!(
                        "{h}, or write one as README's \"Running it for real\" shows)"
                    ))
                    .unwrap_or_default()
            ),
            (Some(c), _) => Config::load(c)?,
            (None, Some(d)) => Config::with_data_dir(d.clone()),
            (None, None) => Config::with_data_dir(implied_data_dir()),
        })
    }
}

impl Progress {
    pub(crate) fn new(label: &str) -> Progress {
        use std::io::IsTerminal;
        Progress {
            label: label.to_string(),
            tty: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn update(&mut self, done: u64, total: u64) {
        if !self.tty || self.last.elapsed() < std::time::Duration::from_millis(100) {
            return;
        }
        self.last = std::time::Instant::now();
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let filled = (pct / 4) as usize;
        eprint!(
            "\r{} [{}{}] {pct:>3}% {} / {} MiB",
            self.label,
            "#".repeat(filled),
            " ".repeat(25 - filled.min(25)),
            done >> 20,
            total >> 20
        );
    }

    pub(crate) fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
