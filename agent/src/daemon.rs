//! The daemon: wires watcher → pipeline thread → spool → uplink task, and stops them
//! cleanly. `holdfast-agent run` and the collector's quickstart both start it here.

use crate::config::Config;
use crate::identity::Identity;
use crate::pipeline::{describe, is_own, Debouncer};
use crate::spool::Spool;
use crate::uplink::Uplink;
use crate::watch::{self, WatchEvent};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch as tokio_watch, Notify};
use tracing::{info, info_span, warn};

/// Capacity of the watcher → pipeline channel.
const WATCH_QUEUE: usize = 8192;
/// How often the pipeline looks for settled files.
const TICK: Duration = Duration::from_millis(50);

/// The spool file inside the data directory.
pub fn spool_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("spool.db")
}

/// A started agent: watching and classifying, not yet sending.
pub struct Daemon {
    /// The places actually watched.
    pub roots: Vec<std::path::PathBuf>,
    watcher: watch::Watcher,
    pipeline: std::thread::JoinHandle<anyhow::Result<()>>,
    stop: Arc<AtomicBool>,
    uplink: Uplink,
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(config: Config, shutdown: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
    start(config)?.run(shutdown).await
}

/// Loads identity and policies, opens the spool and starts watching: once this returns,
/// every change under the roots is seen.
pub fn start(config: Config) -> anyhow::Result<Daemon> {
    let identity = Identity::load(&config.data_dir)?;
    let policies = crate::policy_files::load(config.policies.as_deref(), &config.home)
        .with_context(|| "loading policies")?;
    let spool_file = spool_path(&config);
    let spool = Spool::open(&spool_file)
        .with_context(|| format!("opening spool {}", spool_file.display()))?;
    let (tx, rx) = watch::channel(WATCH_QUEUE);
    let watcher = watch::start(&config.watch, tx)?;
    for (root, why) in &watcher.failed {
        warn!(root = %root.display(), error = %why, "cannot watch this place");
    }
    let roots: Vec<String> = watcher
        .roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    spool.set_meta("watching", &roots.join("\n"))?;
    spool.set_meta("policy_version", &policies.version)?;
    info!(
        device = %identity.enrollment.device_id,
        user = %identity.enrollment.user,
        collector = %identity.enrollment.collector,
        watching = ?roots,
        policy_version = %policies.version,
        rules = policies.rules.len(),
        "agent running"
    );

    let wake = Arc::new(Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let user = identity.enrollment.user.clone();
    let pipeline = {
        let wake = wake.clone();
        let stop = stop.clone();
        let data_dir = config.data_dir.clone();
        let settle = config.settle;
        std::thread::Builder::new()
            .name("holdfast-pipeline".into())
            .spawn(move || -> anyhow::Result<()> {
                let mut debouncer = Debouncer::new(settle);
                while !stop.load(Ordering::Relaxed) {
                    // Idle (nothing waiting to settle): sleep until the next event, so an idle
                    // agent does not wake up at all. Dropping the watcher ends the wait.
                    let received = if debouncer.is_empty() {
                        rx.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected)
                    } else {
                        rx.recv_timeout(TICK)
                    };
                    match received {
                        Ok(ev) => {
                            let mut next = Some(ev);
                            // Take everything already queued before looking for settled files.
                            while let Some(ev) = next {
                                if !own_event(&ev, &data_dir) {
                                    debouncer.observe(ev, Instant::now());
                                }
                                next = rx.try_recv().ok();
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    let mut wrote = false;
                    for body in debouncer.take_notices() {
                        spool.append(crate::clock::now_ms(), &user, &body)?;
                        wrote = true;
                    }
                    for ready in debouncer.due(Instant::now()) {
                        let _span = info_span!("file", path = %ready.path.display(), action = ready.action.as_str()).entered();
                        if let Some(body) = describe(&ready, &policies) {
                            let seq = spool.append(crate::clock::now_ms(), &user, &body)?;
                            if let holdfast_shared::event::EventBody::File(f) = &body {
                                let rules: Vec<&str> = f.rules.iter().map(|r| r.id.as_str()).collect();
                                info!(seq, records = f.summary.as_ref().map(|s| s.records).unwrap_or(0), ?rules, "spooled");
                            }
                            wrote = true;
                        }
                    }
                    if wrote {
                        wake.notify_one();
                    }
                }
                Ok(())
            })
            .context("starting the pipeline thread")?
    };

    let uplink = Uplink {
        identity,
        spool_path: spool_file,
        wake,
    };
    Ok(Daemon {
        roots: watcher.roots.clone(),
        watcher,
        pipeline,
        stop,
        uplink,
    })
}

impl Daemon {
    /// Sends spooled events until `shutdown` turns true, then stops the pipeline cleanly.
    pub async fn run(self, shutdown: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
        let result = self.uplink.run(shutdown).await;
        self.stop.store(true, Ordering::Relaxed);
        drop(self.watcher);
        let pipeline = self.pipeline;
        let pipeline_result = tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .context("joining the pipeline")?
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
        result?;
        pipeline_result?;
        info!("agent stopped");
        Ok(())
    }
}

fn own_event(ev: &WatchEvent, data_dir: &std::path::Path) -> bool {
    match ev {
        WatchEvent::Created(p)
        | WatchEvent::Touched(p)
        | WatchEvent::MovedFrom(p)
        | WatchEvent::MovedTo(p)
        | WatchEvent::Removed(p) => is_own(p, data_dir),
        WatchEvent::Renamed { to, .. } => is_own(to, data_dir),
        WatchEvent::Overflow | WatchEvent::Error(_) => false,
    }
}
