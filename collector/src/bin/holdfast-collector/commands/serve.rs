//! `holdfast-collector serve`: run the collector server (QUIC ingest, the HTTP API and console, forwarders, the HR schedule).

use holdfast_collector::config::Config;
use holdfast_io::process::{runtime, shutdown_on_signal};
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags and subcommands of `serve`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let Args { config } = args;
    let c = Config::load(&config)?;
    runtime()?.block_on(async {
            let (endpoint, state) = holdfast_collector::ingest::start(&c)?;
            let shutdown = shutdown_on_signal();
            let http = holdfast_collector::http::start(&c, state.metrics.clone(), shutdown.clone()).await?;
            let http_addr = http.as_ref().map(|(a, _)| a.to_string()).unwrap_or_else(|| "off".into());
            tracing::info!(listen = %endpoint.local_addr()?, http = %http_addr, data_dir = %c.data_dir.display(), ca_sha256 = %state.ca.fingerprint(), "collector listening");
            let forwarding = tokio::spawn(holdfast_collector::forward::run(
                c.forwards.clone(),
                c.db_path(),
                state.metrics.clone(),
                shutdown.clone(),
            ));
            let hr = tokio::spawn(holdfast_collector::hr::run_schedule(
                c.clone(),
                shutdown.clone(),
            ));
            holdfast_collector::ingest::serve(endpoint, state, shutdown).await;
            let _ = forwarding.await;
            let _ = hr.await;
            if let Some((_, task)) = http {
                let _ = task.await;
            }
            tracing::info!("collector stopped");
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}
