//! Read monitoring on the agent: chooses fanotify or the inotify fallback at start, says
//! which in the agent's status, and turns the opens either reports into events through the
//! shared bulk-read judgement ([`holdfast_shared::reads::BulkReads`]).

use crate::config::ReadMonitoring;
use crate::watch::{Opens, WatchEvent};
use holdfast_shared::event::{EventBody, Process};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::reads::{BulkReads, Open};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// In the fallback, an open of a file the agent itself read (to classify it) this recently
/// is the agent's own.
const OWN_READ: Duration = Duration::from_secs(5);
/// Most of the agent's own reads remembered for that.
const MAX_OWN_READS: usize = 10_000;

/// The running read monitoring.
pub struct Reads {
    /// What the agent's status says about it.
    pub status: String,
    via: Via,
    /// The bulk-read folders of the policy in force.
    folders: Vec<PathBuf>,
    user: String,
    judge: BulkReads,
    own_reads: HashMap<PathBuf, Instant>,
    /// SHA-256 of executables by (device, inode, mtime), for pinned exclusions.
    exe_hashes: HashMap<(u64, u64, i64), String>,
    dropped_reported: u64,
    cap_reported: bool,
}

/// Executables hashed and remembered, at most.
const MAX_EXE_HASHES: usize = 1024;
/// Bytes of an executable hashed, at most.
const MAX_EXE_BYTES: u64 = 512 * 1024 * 1024;

/// How reads are monitored.
enum Via {
    /// Not at all: `reads = "off"` in the agent's configuration.
    Off,
    /// fanotify, with the reader of each read.
    Fanotify(Fan),
    /// The watcher's open events, without the reader; why not fanotify.
    Inotify(String),
}

#[cfg(target_os = "linux")]
use crate::fanotify::ReadMonitor as Fan;

/// Elsewhere there is no fanotify (Windows and macOS get their own monitors).
#[cfg(not(target_os = "linux"))]
enum Fan {}

#[cfg(not(target_os = "linux"))]
impl Fan {
    fn set_folders(&self, _: Vec<PathBuf>) {
        match *self {}
    }
    fn new_folders_at_once(&self) -> bool {
        match *self {}
    }
}

/// What [`Reads::start`] needs the watcher to do.
pub struct Started {
    pub reads: Reads,
    pub opens: Opens,
}

/// The folders of the bulk-read rules of `set`, each once (rules share them: one counts per
/// process, one per user).
fn folders_of(set: &PolicySet) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = Vec::new();
    for f in set.bulk_reads.iter().flat_map(|r| r.expanded.iter()) {
        let f = PathBuf::from(f);
        if !folders.contains(&f) {
            folders.push(f);
        }
    }
    folders
}

impl Reads {
    /// Starts read monitoring for the bulk-read rules of `set`, as `mode` asks: fanotify when
    /// it can (or must), else the watcher's open events. Fails only when fanotify is
    /// required and denied. Unless it is off, monitoring starts even when the policy has no
    /// bulk-read rule yet, so that a policy update bringing some takes effect at once.
    pub fn start(
        mode: ReadMonitoring,
        set: &PolicySet,
        user: &str,
        tx: SyncSender<WatchEvent>,
        health: crate::health::Health,
    ) -> anyhow::Result<Started> {
        let folders = folders_of(set);
        let via = match mode {
            ReadMonitoring::Off => Via::Off,
            ReadMonitoring::Inotify => {
                Via::Inotify("reads = \"inotify\" in the agent's configuration".to_string())
            }
            _ => match fanotify(folders.clone(), tx, health) {
                Ok(m) => Via::Fanotify(m),
                Err(e) if mode == ReadMonitoring::Fanotify => {
                    return Err(anyhow::anyhow!("read monitoring: {e}"))
                }
                Err(e) => Via::Inotify(e.to_string()),
            },
        };
        let opens = match via {
            Via::Inotify(_) => Opens::Report,
            _ => Opens::Ignore,
        };
        let mut reads = Reads {
            status: String::new(),
            via,
            folders,
            user: user.to_string(),
            judge: BulkReads::default(),
            own_reads: HashMap::new(),
            exe_hashes: HashMap::new(),
            dropped_reported: 0,
            cap_reported: false,
        };
        reads.status = reads.describe();
        if matches!(reads.via, Via::Inotify(_)) && !reads.folders.is_empty() {
            tracing::warn!(status = %reads.status, "read monitoring without process identity");
        }
        Ok(Started { reads, opens })
    }

    /// Follows the policy in force: when its bulk-read folders changed, monitors the new
    /// ones from now on. True when the status changed with them.
    pub fn follow(&mut self, set: &PolicySet) -> bool {
        let folders = folders_of(set);
        if matches!(self.via, Via::Off) || folders == self.folders {
            return false;
        }
        if let Via::Fanotify(m) = &self.via {
            m.set_folders(folders.clone());
        }
        self.folders = folders;
        self.status = self.describe();
        true
    }

    /// The status line.
    fn describe(&self) -> String {
        let listed = self
            .folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match &self.via {
            Via::Off => "off (reads = \"off\" in the agent's configuration)".into(),
            _ if self.folders.is_empty() => "off (no bulk_read rule in the policy)".into(),
            Via::Fanotify(m) => {
                let new_folders = if m.new_folders_at_once() {
                    "new folders marked as they appear"
                } else {
                    "new folders marked within 30 s (no fanotify directory events)"
                };
                format!("fanotify: reads under {listed}, with pid, uid, user and executable; {new_folders}")
            }
            Via::Inotify(why_not) => format!(
                "inotify fallback: opens under {listed} only where they are also watched, without the process, uid or executable ({why_not})"
            ),
        }
    }

    /// Notes that the agent itself read `path` (to classify it).
    pub fn agent_read(&mut self, path: &Path) {
        if !matches!(self.via, Via::Inotify(_)) {
            return;
        }
        if self.own_reads.len() >= MAX_OWN_READS {
            self.own_reads.retain(|_, t| t.elapsed() < OWN_READ);
            if self.own_reads.len() >= MAX_OWN_READS {
                self.own_reads.clear();
            }
        }
        self.own_reads.insert(path.to_path_buf(), Instant::now());
    }

    /// The events an open gives. `busy(path)`: the file is being written (its open was the
    /// writer's, not a read).
    pub fn observe(
        &mut self,
        ev: WatchEvent,
        set: &PolicySet,
        busy: impl Fn(&Path) -> bool,
    ) -> Vec<EventBody> {
        let open = match ev {
            WatchEvent::Read(open) if matches!(self.via, Via::Fanotify(_)) => open,
            WatchEvent::Opened(path) if matches!(self.via, Via::Inotify(_)) => {
                let own = self
                    .own_reads
                    .get(&path)
                    .is_some_and(|t| t.elapsed() < OWN_READ);
                if own || busy(&path) {
                    return Vec::new();
                }
                Open {
                    path: path.display().to_string(),
                    process: Process {
                        pid: 0,
                        uid: None,
                        user: Some(self.user.clone()),
                        exe: None,
                        exe_trusted: None,
                        exe_sha256: None,
                    },
                    time_ms: crate::clock::now_ms(),
                }
            }
            _ => return Vec::new(),
        };
        let mut open = open;
        if open.process.exe.is_some() && set.bulk_reads.iter().any(|r| r.pins_sha256()) {
            open.process.exe_sha256 = self.exe_hash(open.process.pid);
        }
        self.judge.observe(set, &open)
    }

    /// SHA-256 of the running binary of `pid` (read through `/proc/PID/exe`, so the inode
    /// that runs, whatever its path now holds), cached by device, inode and mtime.
    fn exe_hash(&mut self, pid: u32) -> Option<String> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let exe = format!("/proc/{pid}/exe");
        let m = std::fs::metadata(&exe).ok()?;
        let key = (m.dev(), m.ino(), m.mtime());
        if let Some(h) = self.exe_hashes.get(&key) {
            return Some(h.clone());
        }
        let mut f = std::fs::File::open(&exe).ok()?;
        let mut h = Sha256::new();
        std::io::copy(&mut (&mut f).take(MAX_EXE_BYTES), &mut h).ok()?;
        let hex = hex::encode(h.finalize());
        if self.exe_hashes.len() >= MAX_EXE_HASHES {
            self.exe_hashes.clear();
        }
        self.exe_hashes.insert(key, hex.clone());
        Some(hex)
    }

    /// Notices about reads the monitor could not see: lost reads (once per new batch) and
    /// folders left unmarked by the limit on marks (once per agent run).
    pub fn take_notices(&mut self) -> Vec<EventBody> {
        let (dropped, unmarked) = self.losses();
        let mut out = Vec::new();
        if dropped > self.dropped_reported {
            let n = dropped - self.dropped_reported;
            self.dropped_reported = dropped;
            out.push(EventBody::notice(
                "reads_dropped",
                format!("{n} read(s) of customer files were lost (the kernel's queue or the agent's channel was full); bulk-read counts may be low"),
                n,
            ));
        }
        if unmarked > 0 && !self.cap_reported {
            self.cap_reported = true;
            out.push(EventBody::notice(
                "reads_marks_cap",
                format!("read monitoring reached its limit of folders; {unmarked} customer folder(s) are not monitored for reads"),
                unmarked,
            ));
        }
        out
    }

    /// Reads lost and folders left unmarked so far.
    pub fn losses(&self) -> (u64, u64) {
        match &self.via {
            #[cfg(target_os = "linux")]
            Via::Fanotify(m) => (
                m.dropped.load(std::sync::atomic::Ordering::Relaxed),
                m.unmarked.load(std::sync::atomic::Ordering::Relaxed),
            ),
            _ => (0, 0),
        }
    }
}

#[cfg(target_os = "linux")]
fn fanotify(
    folders: Vec<PathBuf>,
    tx: SyncSender<WatchEvent>,
    health: crate::health::Health,
) -> Result<Fan, crate::fanotify::ReadsError> {
    crate::fanotify::start(folders, tx, health)
}

#[cfg(not(target_os = "linux"))]
fn fanotify(
    _folders: Vec<PathBuf>,
    _tx: SyncSender<WatchEvent>,
    _health: crate::health::Health,
) -> Result<Fan, String> {
    Err("fanotify exists only on Linux".into())
}
