//! `holdfast-collector quickstart`: a collector and a local agent in one process, on loopback.

use holdfast_collector::config::{quickstart_data_dir, Config};
use holdfast_io::process::{runtime, shutdown_on_signal};
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags and subcommands of `quickstart`.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory (default: the user's data dir, holdfast/quickstart).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// QUIC listen address.
    #[arg(long, default_value = holdfast_collector::config::DEFAULT_LISTEN)]
    pub listen: String,
    /// Console and API address (loopback), or `off`.
    #[arg(long, default_value = holdfast_collector::config::DEFAULT_HTTP_LISTEN)]
    pub http: String,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        data_dir,
        listen,
        http,
    } = args;
    let mut c = Config::with_data_dir(data_dir.unwrap_or_else(quickstart_data_dir));
    c.listen = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen: `{listen}` is not an IP:PORT address"))?;
    c.http_listen = match http.as_str() {
        "off" => None,
        v => Some(
            v.parse::<std::net::SocketAddr>()
                .ok()
                .filter(|a| a.ip().is_loopback())
                .ok_or_else(|| {
                    anyhow::anyhow!("--http: `{v}` is not a loopback IP:PORT address (or off)")
                })?,
        ),
    };
    runtime()?
        .block_on(async { holdfast_collector::quickstart::run(c, shutdown_on_signal()).await })?;
    Ok(ExitCode::SUCCESS)
}
