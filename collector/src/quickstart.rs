//! `holdfast-collector quickstart`: a collector on embedded SQLite plus a local agent,
//! enrolled automatically, watching this user's Downloads, Desktop and Documents.

use crate::config::Config;
use anyhow::Context;
use holdfast_agent::config::{default_home, expand_home, Config as AgentConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Runs collector and agent until `shutdown` turns true.
pub async fn run(
    config: Config,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (endpoint, state) = crate::ingest::start(&config)
        .with_context(|| format!("starting the collector on {}", config.listen))?;
    let listen = endpoint.local_addr().context("reading the bound address")?;
    let http = crate::http::start(&config, state.metrics.clone(), shutdown.clone())
        .await
        .context("starting the console")?;
    let server = tokio::spawn(crate::ingest::serve(endpoint, state, shutdown.clone()));
    // A one-time admin login for the console: spent by the first browser login.
    let login = {
        let mut store = crate::store::Store::open(&config.db_path())?;
        let name = format!(
            "quickstart-admin-{}",
            &crate::api_tokens::new_secret("")[..8]
        );
        let actor = crate::Actor {
            who: "quickstart".into(),
            origin: "cli".into(),
        };
        crate::api_tokens::create(&mut store, &name, "admin", true, &actor, crate::now_ms())?
    };

    let home = default_home();
    let mut watch: Vec<PathBuf> = ["~/Downloads", "~/Desktop", "~/Documents"]
        .iter()
        .map(|p| expand_home(p, &home))
        .filter(|p| p.is_dir())
        .collect();
    if watch.is_empty() {
        let downloads = expand_home("~/Downloads", &home);
        std::fs::create_dir_all(&downloads)
            .with_context(|| format!("creating {}", downloads.display()))?;
        watch.push(downloads);
    }
    let agent_config = AgentConfig {
        data_dir: config.data_dir.join("agent"),
        watch: watch.clone(),
        policies: None,
        home,
        ..AgentConfig::defaults()
    };
    let collector_addr = format!("127.0.0.1:{}", listen.port());
    let enrolled_elsewhere = holdfast_agent::identity::Identity::load(&agent_config.data_dir)
        .map(|id| id.enrollment.collector != collector_addr)
        .unwrap_or(true);
    if enrolled_elsewhere {
        let user = std::env::var("USER").unwrap_or_else(|_| "quickstart".into());
        let issued = crate::tokens::create(
            &config,
            &user,
            Duration::from_secs(600),
            &crate::Actor::cli(),
        )?;
        holdfast_agent::enroll::enroll(
            &collector_addr,
            &issued.token,
            &agent_config.data_dir,
            true,
        )
        .await
        .context("enrolling the local agent")?;
    }
    // Watching before telling the user to drop a file.
    let agent = holdfast_agent::daemon::start(agent_config).context("starting the local agent")?;
    let watch = agent.roots.clone();
    let dd = config.data_dir.display();
    println!("Holdfast quickstart is running.");
    println!("  collector   QUIC on {listen}, data in {dd}");
    match &http {
        Some((addr, _)) => {
            println!("  console     http://{addr}/");
            println!("              one-time admin login: {}", login.secret);
        }
        None => println!("  console     off"),
    }
    println!("  agent       enrolled, watching:");
    for w in &watch {
        println!("                {}", w.display());
    }
    println!();
    println!("Drop a CRM export (a CSV with 50+ contacts) into one of those folders, then:");
    println!("  {}", config.command("alerts list"));
    println!("  {}", config.command("events list"));
    println!("  {}", config.command("devices list"));
    println!("Press Ctrl-C to stop.");
    let agent = agent.run(shutdown.clone()).await;
    let _ = server.await;
    if let Some((_, task)) = http {
        let _ = task.await;
    }
    agent
}
