//! The daemon: wires watcher → pipeline thread → spool → uplink task, and stops them
//! cleanly. `holdfast-agent run` and the collector's quickstart both start it here.

use crate::config::Config;
use crate::gap::{Gap, LastRun};
use crate::health::Health;
use crate::identity::Identity;
use crate::mounts::MountTable;
use crate::pipeline::{finish, is_own, Debouncer, Ready, Via};
use crate::rescan::Rescanner;
use crate::spool::{Admit, Spool};
use crate::updates::{Active, LiveEdm, LivePolicies};
use crate::uplink::Uplink;
use crate::watch::{self, WatchEvent};
use crate::workers::Job;
use anyhow::Context;
use holdfast_shared::event::EventBody;
use holdfast_shared::time::UnixMs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch as tokio_watch, Notify};
use tracing::{error, info, info_span, warn};

/// Capacity of the watcher → pipeline channel.
const WATCH_QUEUE: usize = 8192;
/// Watch events taken per pipeline round, at most.
const DRAIN: usize = 4096;
/// How often the mount table is read for new removable media and shares.
const MOUNT_CHECK: Duration = Duration::from_secs(2);
/// How often the pipeline looks for settled files.
const TICK: Duration = Duration::from_millis(50);
/// How often a running agent marks itself alive in the spool: a crash's gap starts at the
/// last mark.
const ALIVE_EVERY: Duration = Duration::from_secs(10);
/// How long a stopping agent waits for its stop notice to be delivered.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(3);

/// The spool file inside the data directory.
pub fn spool_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join(crate::spool::SPOOL_FILE)
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
    let active = match crate::updates::load_saved(&config.data_dir, &identity, &config.home) {
        Some(a) => a,
        None => Active {
            set: Arc::new(
                holdfast_io::policy_files::load(config.policies.as_deref(), &config.home)
                    .with_context(|| "loading policies")?,
            ),
            source: "local",
            issued_ms: UnixMs(0),
        },
    };
    let policies = LivePolicies::new(active.clone());
    let spool_file = spool_path(&config);
    let spool = Spool::writer(&spool_file, config.spool_max, &identity.enrollment.user)
        .with_context(|| format!("opening spool {}", spool_file.display()))?;
    // How the last run ended, before this run marks itself as running.
    let last_run = LastRun::from_meta(
        spool.meta("alive_ms")?.as_deref(),
        spool.meta("stopped_by")?.as_deref(),
    );
    let started_ms = crate::clock::now_ms();
    spool.set_meta("alive_ms", &started_ms.to_string())?;
    spool.set_meta("stopped_by", "")?;
    // The watched places: the configured ones, and the cloud-sync folders of the policy that
    // exist on this device.
    let mut roots = config.watch.clone();
    for (service, d) in cloud_dirs(&active.set, &config.home) {
        if !roots.iter().any(|r| d.starts_with(r)) {
            info!(service = %service, folder = %d.display(), "watching a cloud-sync folder");
            roots.push(d);
        }
    }
    let (tx, rx) = watch::channel(WATCH_QUEUE);
    let health = Health::default();
    // From here on a change is the watch's to see: the first look keeps only what is older.
    let watching = crate::tree::ChangeClock::now();
    let started = crate::reads::Reads::start(
        config.reads,
        &active.set,
        (&identity.enrollment.user, config.print_spool.clone()),
        tx.clone(),
        health.clone(),
    )?;
    let phone_tx = tx.clone();
    let watcher = watch::start(&roots, tx, started.opens)?;
    let reads = started.reads;
    spool.set_meta("reads", &reads.status)?;
    info!(reads = %reads.status, "read monitoring");
    for (root, why) in &watcher.failed {
        warn!(root = %root.display(), error = %why, "cannot watch this place");
    }
    for root in &watcher.limited {
        warn!(root = %root.display(), "the kernel's watch limit is reached: this place is scanned every {} instead", humantime::format_duration(config.poll_every));
    }
    let mut polled = config.poll.clone();
    polled.extend(watcher.limited.iter().cloned());
    let roots: Vec<String> = watcher
        .roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    spool.set_meta("watching", &roots.join("\n"))?;
    spool.set_meta("policy_version", &active.set.version)?;
    spool.set_meta("policy_source", active.source)?;
    info!(
        device = %identity.enrollment.device_id,
        user = %identity.enrollment.user,
        collector = %identity.enrollment.collector,
        watching = ?roots,
        policy_version = %active.set.version,
        policy_source = active.source,
        rules = active.set.rules.len(),
        "agent running"
    );

    let wake = Arc::new(Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let edm = LiveEdm::default();
    if let Some(saved) = crate::updates::load_saved_edm(&config.data_dir, &identity) {
        spool.set_meta("edm_version", &saved.version)?;
        edm.replace_loaded(saved);
    }
    let pipeline = {
        let mut stage = PipelineStage {
            rx,
            spool_file: spool_file.clone(),
            spool_max: config.spool_max,
            user: identity.enrollment.user.clone(),
            policies: policies.clone(),
            edm: edm.clone(),
            wake: wake.clone(),
            stop: stop.clone(),
            data_dir: config.data_dir.clone(),
            settle: config.settle,
            reading: config.reading,
            watched: watcher.roots.clone(),
            polled,
            failed: watcher.failed.iter().map(|(p, _)| p.clone()).collect(),
            limited: watcher.limited.clone(),
            poll_every: config.poll_every,
            rewatch: watcher.rewatch_handle(),
            home: config.home.clone(),
            reads,
            last_run,
            started_ms,
            watching,
            phone_tx,
            health: health.clone(),
        };
        drop(spool);
        std::thread::Builder::new()
            .name("holdfast-pipeline".into())
            .spawn(move || -> anyhow::Result<()> {
                stage.supervise();
                Ok(())
            })
            .context("starting the pipeline thread")?
    };

    let uplink = Uplink {
        identity,
        data_dir: config.data_dir.clone(),
        spool_path: spool_file,
        home: config.home.clone(),
        policies,
        edm,
        wake,
        heartbeat: config.heartbeat,
        orders: crate::orders::Executor {
            data_dir: config.data_dir.clone(),
            home: config.home.clone(),
            watch: config.watch.clone(),
        },
        refused_orders: Default::default(),
        health: health.clone(),
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
    /// Sends spooled events until `shutdown` turns true, then stops the pipeline cleanly,
    /// seals a stop notice (what stopped us: the signal and its sender) and gives the uplink
    /// [`FLUSH_WITHIN`] to deliver it.
    pub async fn run(self, shutdown: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut uplink = self.uplink;
        // Supervised: a failed uplink (its spool unusable) is reported and started again
        // with backoff until the agent stops.
        let mut backoff = RESTART_MIN;
        loop {
            match uplink.run(shutdown.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    let why = e.to_string();
                    error!(error = %why, retry_in = ?backoff, "the uplink failed; starting it again");
                    uplink.health.fail("uplink", why);
                    let mut s = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = s.changed() => break,
                    }
                    if *shutdown.borrow() {
                        break;
                    }
                    backoff = (backoff * 2).min(RESTART_MAX);
                }
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        drop(self.watcher);
        let pipeline = self.pipeline;
        let pipeline_result = tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .context("joining the pipeline")?
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
        pipeline_result?;
        let by = holdfast_io::process::stopped_by()
            .unwrap_or("stopped by the program that started it")
            .to_string();
        let spool = Spool::open(&uplink.spool_path)?;
        spool.append(crate::clock::now_ms(), &crate::gap::stop_notice(&by))?;
        uplink.flush(FLUSH_WITHIN).await;
        // Last: the next start reads this as a clean stop, from now.
        spool.set_meta("alive_ms", &crate::clock::now_ms().to_string())?;
        spool.set_meta("stopped_by", &by)?;
        info!(stopped_by = %by, "agent stopped");
        Ok(())
    }
}

/// Everything the pipeline needs to (re)start: a run that fails is started again from
/// these, and its catch-up against the persistent index finds what changed meanwhile.
struct PipelineStage {
    rx: std::sync::mpsc::Receiver<WatchEvent>,
    spool_file: std::path::PathBuf,
    spool_max: u64,
    user: String,
    policies: LivePolicies,
    edm: LiveEdm,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    data_dir: std::path::PathBuf,
    settle: Duration,
    reading: crate::workers::Reading,
    watched: Vec<std::path::PathBuf>,
    polled: Vec<std::path::PathBuf>,
    failed: Vec<std::path::PathBuf>,
    limited: Vec<std::path::PathBuf>,
    poll_every: Duration,
    rewatch: watch::Rewatch,
    home: String,
    reads: crate::reads::Reads,
    /// How the run before this one ended (the last process, or the last failed run).
    last_run: Option<LastRun>,
    started_ms: UnixMs,
    /// When the watch began: what a first look finds changed since is news.
    watching: crate::tree::ChangeClock,
    /// Where the phones' watchers send the files written on them.
    phone_tx: std::sync::mpsc::SyncSender<WatchEvent>,
    health: Health,
}

/// The first wait before a failed stage is started again; it doubles up to [`RESTART_MAX`].
const RESTART_MIN: Duration = Duration::from_millis(500);
/// The longest wait between restarts of a failing stage.
const RESTART_MAX: Duration = Duration::from_secs(30);

/// Sleeps `d`, waking early when `stop` is raised. Returns whether to go on.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
    !stop.load(Ordering::Relaxed)
}

impl PipelineStage {
    /// Runs the pipeline until the agent stops; a failed run is reported (health
    /// `degraded`, a log line) and started again with backoff. Nothing exits silently.
    fn supervise(&mut self) {
        let mut backoff = RESTART_MIN;
        loop {
            // A panic is a failure like any other: reported and started again.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run()))
                .unwrap_or_else(|p| {
                    Err(anyhow::anyhow!(
                        "panicked: {}",
                        crate::health::panic_message(p.as_ref())
                    ))
                });
            match run {
                Ok(()) => return,
                Err(e) => {
                    let why = format!("{e:#}");
                    error!(error = %why, retry_in = ?backoff, "the pipeline failed; starting it again");
                    self.health.fail("pipeline", why.clone());
                    self.last_run = Some(LastRun {
                        alive_ms: crate::clock::now_ms(),
                        stopped_by: Some(format!("the pipeline failed ({why})")),
                    });
                    if !nap(backoff, &self.stop) {
                        return;
                    }
                    backoff = (backoff * 2).min(RESTART_MAX);
                }
            }
        }
    }

    /// One run of the pipeline, from its catch-up until the agent stops or a stage fails.
    fn run(&mut self) -> anyhow::Result<()> {
        let PipelineStage {
            rx,
            spool_file,
            spool_max,
            user,
            policies,
            edm,
            wake,
            stop,
            data_dir,
            settle,
            reading,
            watched,
            polled,
            failed,
            limited,
            poll_every,
            rewatch,
            home,
            reads,
            last_run,
            started_ms,
            watching,
            phone_tx,
            health,
        } = self;
        let spool = Spool::writer(spool_file, *spool_max, user)
            .with_context(|| format!("opening spool {}", spool_file.display()))?;
        // A write, so a spool that cannot take one fails the run here.
        spool.set_meta("alive_ms", &crate::clock::now_ms().to_string())?;
        health.ok("pipeline");
        let mut debouncer = Debouncer::new(*settle);
        // What is already there, indexed before anything else (events queue meanwhile),
        // against the index the last run kept: what changed while we were not running
        // is the catch-up, reported like any change, and the gap gets its notice.
        let saved = spool.index_load()?;
        let mut rescanner = Rescanner::start(
            watched.clone(),
            polled.clone(),
            failed.clone(),
            data_dir.clone(),
            *poll_every,
            (Instant::now(), *watching),
            saved,
        );
        if let Some(fresh) = rescanner.take_fresh() {
            info!(
                files = fresh.rows.len(),
                arrived = fresh.arrived.len(),
                "first start: what is here now is the baseline, but for what arrived as the watch began"
            );
            spool.index_replace(&fresh.rows)?;
            for ev in fresh.arrived {
                debouncer.observe(ev, Instant::now());
            }
        }
        let mut gap = None;
        if let Some(c) = rescanner.take_catch_up() {
            let unseen = spool.index_unseen(&c.seen)?;
            let mut found = c.events;
            found.extend(rescanner.vanished(c.truncated, unseen));
            info!(
                files = found.len(),
                "catching up on what changed while the agent was not running"
            );
            let paths: Vec<std::path::PathBuf> = found
                .iter()
                .filter_map(|e| match e {
                    WatchEvent::Created(p) | WatchEvent::Touched(p) | WatchEvent::Removed(p) => {
                        Some(p.clone())
                    }
                    _ => None,
                })
                .collect();
            let last = last_run.clone().unwrap_or(LastRun {
                alive_ms: UnixMs(0),
                stopped_by: None,
            });
            let g = Gap::new(last, *started_ms, paths);
            // The last run died before it had caught up on its own gap: that gap
            // still gets its notice. This one is kept until its notice is sealed.
            let mut early = Vec::new();
            if let Some(n) = spool
                .meta("pending_gap")?
                .as_deref()
                .and_then(Gap::unfinished_notice)
            {
                early.push((crate::clock::now_ms(), n));
            }
            spool.seal(&early, &[], &[("pending_gap", &g.record())])?;
            gap = Some(g);
            for ev in found {
                debouncer.observe(ev, Instant::now());
            }
        }
        let mut last_alive = Instant::now();
        // The readers, and the changes they hold or that wait for them.
        let mut pool = crate::workers::Pool::start(*reading).context("starting the readers")?;
        let mut reading: std::collections::HashSet<std::path::PathBuf> = Default::default();
        let mut deferred: Vec<Ready> = Vec::new();
        // Descriptors of files that just appeared, so one deleted before it settles can
        // still be read.
        let mut held = crate::pipeline::Held::default();
        // Print jobs between their spool files and their events.
        let mut printing = crate::print::Printing::default();
        let mut spooled: Vec<(Ready, std::fs::File)> = Vec::new();
        // A limit hit while the watches were first set up is news like one hit later:
        // a notice to the collector, and the coverage says so.
        for root in limited.clone() {
            rescanner.expand(WatchEvent::LimitReached(root));
        }
        // Removable media and shares already mounted are watched (or polled) too.
        let mut mounts = MountTable::start();
        // Lineage outlives the agent: the first sightings kept in the spool.
        let sightings = spool
            .sightings(crate::lineage::MAX_SIGHTINGS)
            .unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the lineage memory: starting without it");
                Vec::new()
            });
        // The customer files an earlier run knew are marked for reads again.
        for s in sightings.iter().rev().take(crate::fanotify::MAX_FILE_MARKS) {
            reads.mark_customer_file(std::path::Path::new(&s.path), None);
        }
        let mut lineage = crate::lineage::Lineage::restore(sightings);
        let mut last_mounts = Instant::now();
        // The last look at the mounts: a place found at the next one was not there before.
        let mut mounts_seen = *watching;
        let follow = |rescanner: &mut Rescanner,
                      debouncer: &mut Debouncer,
                      added: &[(std::path::PathBuf, holdfast_shared::event::Destination)],
                      since: crate::tree::ChangeClock| {
            for (mp, d) in added {
                // A phone is its own user's FUSE mount: its watcher (`phones`) sees it.
                if d.kind == "phone" {
                    continue;
                }
                let polled = d.kind == "network";
                info!(mount = %mp.display(), kind = %d.kind, name = %d.name, "new place data can leave by: now covered");
                for ev in rescanner.add_root(mp.clone(), polled, since) {
                    debouncer.observe(ev, Instant::now());
                }
                if !polled {
                    rewatch.renew(vec![mp.clone()]);
                }
            }
        };
        follow(&mut rescanner, &mut debouncer, mounts.known(), *watching);
        // Phones, watched by watchers of their own; the files written on them.
        #[cfg(target_os = "linux")]
        let mut phones = crate::phones::Phones::default();
        #[cfg(target_os = "linux")]
        phones.follow(&mounts, watching.ns(), phone_tx);
        let mut phone_files: Vec<(std::path::PathBuf, Option<std::fs::File>)> = Vec::new();
        let mut coverage = String::new();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            // The mark a crash leaves behind: the gap starts at the last one.
            if now.saturating_duration_since(last_alive) >= ALIVE_EVERY {
                spool.set_meta("alive_ms", &crate::clock::now_ms().to_string())?;
                last_alive = now;
            }
            let mut cov = rescanner.coverage();
            cov.reads.clone_from(&reads.status);
            (cov.reads_dropped, cov.reads_unmarked) = reads.losses();
            let cov = serde_json::to_string(&cov).unwrap_or_default();
            if cov != coverage {
                spool.set_meta("coverage", &cov)?;
                coverage = cov;
            }
            // Idle (nothing waiting to settle, nothing to poll): sleep until the next
            // event, so an idle agent does not wake up at all. Dropping the watcher
            // ends the wait.
            let mounts_due = MOUNT_CHECK.saturating_sub(now.saturating_duration_since(last_mounts));
            let quiet = debouncer.is_empty()
                && reading.is_empty()
                && deferred.is_empty()
                && printing.is_empty()
                && phone_files.is_empty();
            let wait = match (quiet, rescanner.next_wake(now)) {
                (true, None) => mounts_due,
                (true, Some(w)) => w.min(mounts_due),
                (false, None) => TICK.min(mounts_due),
                (false, Some(w)) => w.min(TICK).min(mounts_due),
            };
            let wait = Some(wait);
            let received = match wait {
                None => rx
                    .recv()
                    .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                Some(w) => rx.recv_timeout(w),
            };
            let mut read_bodies: Vec<EventBody> = Vec::new();
            match received {
                Ok(ev) => {
                    let mut next = Some(ev);
                    // Take what is queued (up to a bound, so that files settle and
                    // get read even while a burst goes on) before looking for
                    // settled files.
                    let mut taken = 0;
                    while let Some(ev) = next {
                        if own_event(&ev, data_dir) {
                        } else if let WatchEvent::Phone(p) = ev {
                            phone_files.push((p.path, p.file.file()));
                        } else if let WatchEvent::Spooled(s) = ev {
                            let now = crate::clock::now_ms();
                            spooled.extend(printing.spooled(s, now));
                        } else if matches!(
                            ev,
                            WatchEvent::Read(_) | WatchEvent::AppRead(_) | WatchEvent::Opened(_)
                        ) {
                            let set = policies.current().set;
                            read_bodies
                                .extend(reads.observe(ev, &set, |p| debouncer.is_pending(p)));
                        } else {
                            for ev in rescanner.expand(ev) {
                                held.note(&ev);
                                debouncer.observe(ev, Instant::now());
                            }
                        }
                        taken += 1;
                        next = if taken < DRAIN {
                            rx.try_recv().ok()
                        } else {
                            None
                        };
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now().saturating_duration_since(last_mounts) >= MOUNT_CHECK {
                last_mounts = Instant::now();
                let (since, looked) = (mounts_seen, crate::tree::ChangeClock::now());
                mounts_seen = looked;
                let changes = mounts.refresh();
                follow(&mut rescanner, &mut debouncer, &changes.added, since);
                #[cfg(target_os = "linux")]
                phones.follow(&mounts, since.ns(), phone_tx);
                for mp in &changes.removed {
                    info!(mount = %mp.display(), "unmounted");
                    rescanner.remove_root(mp);
                }
                // Read monitoring follows the policy's bulk-read folders.
                let set = policies.current().set;
                if reads.follow(&set) {
                    spool.set_meta("reads", &reads.status)?;
                    info!(reads = %reads.status, "read monitoring follows the policy");
                }
                // Cloud-sync folders that appeared since (an app installed, a policy
                // update naming a new one).
                for (service, d) in cloud_dirs(&set, home) {
                    if !rescanner.covers(&d) {
                        info!(service = %service, folder = %d.display(), "watching a cloud-sync folder");
                        for ev in rescanner.add_root(d.clone(), false, since) {
                            debouncer.observe(ev, Instant::now());
                        }
                        rewatch.renew(vec![d]);
                    }
                }
            }
            if debouncer.dropped > 0 {
                // Changes dropped for want of room are found again by a rescan.
                rescanner.request_rescan();
            }
            let found = rescanner.due(Instant::now());
            if let Some(roots) = rescanner.take_renewal() {
                rewatch.renew(roots);
            }
            if !found.is_empty() {
                info!(
                    files = found.len(),
                    "rescan found changes the watcher did not report"
                );
            }
            for ev in found {
                debouncer.observe(ev, Instant::now());
            }
            let mut batch: Vec<(UnixMs, EventBody)> = debouncer
                .take_notices()
                .into_iter()
                .chain(rescanner.take_notices())
                .chain(reads.take_notices())
                .chain(printing.take_notices())
                .chain(phone_notices(
                    #[cfg(target_os = "linux")]
                    &mut phones,
                ))
                .chain(read_bodies)
                .map(|b| (crate::clock::now_ms(), b))
                .collect();
            // Settled changes go to the readers (a change whose path is being read
            // waits for that read); deletes need no reading. What was read is
            // finished here, in the order it comes back.
            let mut index = Vec::new();
            let mut finished: Vec<(Ready, Option<crate::pipeline::Described>)> = Vec::new();
            // Reads by apps: classified from the descriptor the app opened (else the path).
            for u in reads.take_uploads() {
                let ready = Ready::via(u.path, crate::pipeline::Via::Upload(u.by));
                match u.file {
                    Some(file) if !reading.contains(&ready.path) => {
                        let jobs = (&mut pool, &mut reading, &mut deferred);
                        submit(jobs, edm, ready, Some(file));
                    }
                    _ => deferred.push(ready),
                }
            }
            // Print jobs' documents: read from the spool's descriptors.
            if !printing.is_empty() {
                spooled.extend(printing.named(crate::clock::now_ms()));
            }
            for (ready, file) in spooled.drain(..) {
                submit(
                    (&mut pool, &mut reading, &mut deferred),
                    edm,
                    ready,
                    Some(file),
                );
            }
            // Files written on phones: read from their watchers' descriptors (a file still
            // being read from an earlier write waits its turn).
            phone_files.retain_mut(|(path, file)| {
                if reading.contains(path.as_path()) {
                    return true;
                }
                let ready = Ready::new(holdfast_shared::event::Action::Created, path.clone());
                submit(
                    (&mut pool, &mut reading, &mut deferred),
                    edm,
                    ready,
                    file.take(),
                );
                false
            });
            let work: Vec<Ready> = deferred
                .drain(..)
                .chain(debouncer.due(Instant::now()))
                .collect();
            for ready in work {
                let busy = |p: &std::path::Path| reading.contains(p);
                if busy(&ready.path) || ready.old_path.as_deref().is_some_and(busy) {
                    deferred.push(ready);
                    continue;
                }
                // Late or repeated news of a file already reported as it is now.
                // A file created and deleted before it settled: read what it held through
                // the descriptor taken when it appeared; reported if that was customer data.
                if ready.action == holdfast_shared::event::Action::Deleted
                    && !rescanner.knows(&ready.path)
                {
                    if let Some(file) = held.take(&ready.path) {
                        let jobs = (&mut pool, &mut reading, &mut deferred);
                        submit(jobs, edm, ready, Some(file));
                        continue;
                    }
                }
                held.take(&ready.path);
                // A delete where nothing was ever known (a temporary file).
                if matches!(
                    ready.action,
                    holdfast_shared::event::Action::Created
                        | holdfast_shared::event::Action::Modified
                ) && rescanner.unchanged(&ready.path)
                    || ready.action == holdfast_shared::event::Action::Deleted
                        && !rescanner.knows(&ready.path)
                {
                    if let Some(g) = gap.as_mut() {
                        g.observe(&ready.path, None);
                    }
                    continue;
                }
                if ready.action == holdfast_shared::event::Action::Deleted {
                    let set = policies.current().set;
                    let read = crate::pipeline::FileRead {
                        stamp: None,
                        outcome: crate::pipeline::ReadOutcome::Deleted,
                    };
                    let d = finish(&ready, read, &set, &mounts, &mut lineage);
                    finished.push((ready, d));
                    continue;
                }
                reads.agent_read(&ready.path);
                submit((&mut pool, &mut reading, &mut deferred), edm, ready, None);
            }
            let done = pool.take_done();
            if !done.is_empty() {
                let set = policies.current().set;
                for d in done {
                    reading.remove(&d.ready.path);
                    if let Some(Via::Print { job, printed: None }) = d.ready.via.as_deref() {
                        printing.document(*job, d.read, crate::clock::now_ms());
                        continue;
                    }
                    let _span = info_span!("file", path = %d.ready.path.display(), action = d.ready.action.as_str()).entered();
                    if d.ready.action == holdfast_shared::event::Action::Deleted {
                        // Read through the descriptor held since it appeared: a create (with
                        // what it held) and the delete, when it held customer data.
                        let created = Ready::new(
                            holdfast_shared::event::Action::Created,
                            d.ready.path.clone(),
                        );
                        let described = finish(&created, d.read, &set, &mounts, &mut lineage);
                        if described
                            .as_ref()
                            .is_some_and(|x| crate::gap::customer(&x.body))
                        {
                            info!("deleted before it settled, but it held customer data: reported");
                            let gone = crate::pipeline::FileRead {
                                stamp: None,
                                outcome: crate::pipeline::ReadOutcome::Deleted,
                            };
                            let deleted = finish(&d.ready, gone, &set, &mounts, &mut lineage);
                            finished.push((created, described));
                            finished.push((d.ready, deleted));
                        } else if let Some(g) = gap.as_mut() {
                            g.observe(&d.ready.path, None);
                        }
                        continue;
                    }
                    let described = finish(&d.ready, d.read, &set, &mounts, &mut lineage);
                    finished.push((d.ready, described));
                }
            }
            // Print jobs done (or waited for): one event per document of customer records.
            if !printing.is_empty() {
                let set = policies.current().set;
                for (ready, read) in printing.due(crate::clock::now_ms()) {
                    let d = finish(&ready, read, &set, &mounts, &mut lineage);
                    finished.push((ready, d));
                }
            }
            for (ready, described) in finished {
                // An upload, a print job, is news of its own: the file's index entry stays
                // as it is.
                if let Some(via) = &ready.via {
                    if let Some(d) = described {
                        info!(path = %ready.path.display(), via = ?via, "content leaving: an upload or a print job");
                        batch.push((crate::clock::now_ms(), d.body));
                    }
                    continue;
                }
                // A customer file is marked for reads, so an app reading it is seen.
                if let Some(d) = &described {
                    if crate::gap::customer(&d.body)
                        && ready.action != holdfast_shared::event::Action::Deleted
                    {
                        reads.mark_customer_file(&ready.path, d.stamp);
                    }
                }
                // Read again but holding what was last reported (a file rewritten
                // as it was, a stamp not trusted): the index moves, no event.
                let repeat = described
                    .as_ref()
                    .is_some_and(|d| rescanner.is_repeat(&d.body));
                if let Some(g) = gap.as_mut() {
                    g.observe(
                        &ready.path,
                        described.as_ref().filter(|_| !repeat).map(|d| &d.body),
                    );
                }
                if let Some(d) = described {
                    index.extend(rescanner.record(&d.body, d.stamp));
                    if !repeat {
                        batch.push((crate::clock::now_ms(), d.body));
                    }
                }
            }
            let mut meta: &[(&str, &str)] = &[];
            let idle = debouncer.is_empty() && reading.is_empty() && deferred.is_empty();
            if let Some(notice) = gap.as_mut().and_then(|g| g.take_notice(idle)) {
                info!("the gap while the agent was not running is caught up");
                batch.push((crate::clock::now_ms(), notice));
                meta = &[("pending_gap", "")];
                gap = None;
            }
            if batch.is_empty() && index.is_empty() && meta.is_empty() {
                continue;
            }
            // One transaction (one fsync) for everything that settled in this tick,
            // with the index rows that say these files are reported.
            let admits = spool.seal(&batch, &index, meta)?;
            for ((_, body), admit) in batch.iter().zip(&admits) {
                if let EventBody::File(f) = body {
                    if let (Admit::Stored(seq), Some(sha)) = (admit, &f.sha256) {
                        lineage.set_seq(sha, *seq);
                    }
                    let rules: Vec<&str> = f.rules.iter().map(|r| r.id.as_str()).collect();
                    match admit {
                        Admit::Stored(seq) => {
                            info!(seq, path = %f.path, records = f.summary.as_ref().map(|s| s.records).unwrap_or(0), ?rules, "spooled")
                        }
                        Admit::Dropped => {
                            warn!(path = %f.path, ?rules, "spool full: event counted as dropped")
                        }
                    }
                }
            }
            if let Err(e) =
                spool.keep_sightings(&lineage.take_fresh(), crate::lineage::MAX_SIGHTINGS)
            {
                warn!(error = %e, "cannot keep the lineage memory: copies made after a restart will not link back");
            }
            wake.notify_one();
        }
        Ok(())
    }
}

/// The policy's cloud-sync folders that exist on this device, with their service.
fn cloud_dirs(
    set: &holdfast_shared::policy::PolicySet,
    home: &str,
) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for c in &set.cloud {
        for f in &c.folders {
            let pattern = crate::config::expand_home(f, home);
            for d in crate::tree::existing_dirs(&pattern) {
                out.push((c.name.clone(), d));
            }
        }
    }
    out
}

/// The readers, the paths being read, and the changes waiting for either.
type Jobs<'a> = (
    &'a mut crate::workers::Pool,
    &'a mut std::collections::HashSet<std::path::PathBuf>,
    &'a mut Vec<Ready>,
);

/// Hands `ready` to the readers (with `file`, a descriptor to read it from), noting its path
/// as being read; when every reader is busy, it waits.
fn submit(
    (pool, reading, deferred): Jobs<'_>,
    edm: &LiveEdm,
    ready: Ready,
    file: Option<std::fs::File>,
) {
    let path = ready.path.clone();
    match pool.submit(Job {
        ready,
        edm: edm.matcher(),
        file,
    }) {
        Ok(()) => {
            reading.insert(path);
        }
        Err(job) => deferred.push(job.ready),
    }
}

/// Notices about phones that could not be watched.
fn phone_notices(#[cfg(target_os = "linux")] phones: &mut crate::phones::Phones) -> Vec<EventBody> {
    #[cfg(target_os = "linux")]
    return phones.take_notices();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

fn own_event(ev: &WatchEvent, data_dir: &std::path::Path) -> bool {
    match ev {
        WatchEvent::Created(p)
        | WatchEvent::Touched(p)
        | WatchEvent::MovedFrom(p)
        | WatchEvent::MovedTo(p)
        | WatchEvent::Removed(p) => is_own(p, data_dir),
        WatchEvent::DirAppeared(p) => is_own(p, data_dir),
        WatchEvent::Renamed { to, .. } => is_own(to, data_dir),
        WatchEvent::Opened(p) => is_own(p, data_dir),
        WatchEvent::Read(o) => is_own(Path::new(&o.path), data_dir),
        WatchEvent::AppRead(r) => is_own(Path::new(&r.open.path), data_dir),
        WatchEvent::Spooled(_) | WatchEvent::Phone(_) => false,
        WatchEvent::Overflow | WatchEvent::LimitReached(_) | WatchEvent::Error(_) => false,
    }
}
