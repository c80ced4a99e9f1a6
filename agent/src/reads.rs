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
    /// The print spool watched through fanotify, when print jobs are.
    spool: Option<PathBuf>,
    judge: BulkReads,
    own_reads: HashMap<PathBuf, Instant>,
    /// SHA-256 of executables by (device, inode, mtime), for pinned exclusions.
    exe_hashes: HashMap<(u64, u64, i64), String>,
    dropped_reported: u64,
    cap_reported: bool,
    /// Reads by apps waiting to be classified: possible uploads.
    uploads: Vec<Upload>,
    /// When each (path, app) was last taken as an upload: an app opens a file more than once
    /// for one upload (a preview, then the upload).
    uploaded: HashMap<(String, String), Instant>,
    /// Apps of the policy in force whose reads are uploads.
    apps: usize,
    /// Reads by apps lost because too many waited (counted with the lost reads).
    uploads_lost: u64,
    /// Customer files left unmarked for want of marks (said once per run).
    files_unmarked: u64,
    file_cap_reported: bool,
}

/// A file read by an app of the policy's list, to be classified: an upload if it holds
/// customer records.
#[derive(Debug)]
pub struct Upload {
    pub path: PathBuf,
    pub by: crate::pipeline::UploadBy,
    /// The app's own descriptor of the file, when one was held.
    pub file: Option<std::fs::File>,
}

/// Another read of the same file by the same app within this long is the same upload.
const UPLOAD_AGAIN: Duration = Duration::from_secs(60);
/// Uploads remembered for that, at most.
const MAX_UPLOADS_REMEMBERED: usize = 4096;
/// Reads by apps waiting to be classified, at most (more are counted as lost reads).
const MAX_UPLOADS_WAITING: usize = 256;

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
    fn set_apps(&self, _: Vec<holdfast_shared::policy::App>) {
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
    for f in set.bulk_reads.iter().flat_map(|r| r.folders.iter()) {
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
        (user, spool): (&str, Option<PathBuf>),
        tx: SyncSender<WatchEvent>,
        health: crate::health::Health,
    ) -> anyhow::Result<Started> {
        let folders = folders_of(set);
        let via = match mode {
            ReadMonitoring::Off => Via::Off,
            ReadMonitoring::Inotify => {
                Via::Inotify("reads = \"inotify\" in the agent's configuration".to_string())
            }
            _ => match fanotify(folders.clone(), spool.clone(), tx, health) {
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
            spool,
            judge: BulkReads::default(),
            own_reads: HashMap::new(),
            exe_hashes: HashMap::new(),
            dropped_reported: 0,
            cap_reported: false,
            uploads: Vec::new(),
            uploaded: HashMap::new(),
            apps: 0,
            uploads_lost: 0,
            files_unmarked: 0,
            file_cap_reported: false,
        };
        reads.follow_apps(set);
        reads.status = reads.describe();
        if matches!(reads.via, Via::Inotify(_)) && !reads.folders.is_empty() {
            tracing::warn!(status = %reads.status, "read monitoring without process identity");
        }
        Ok(Started { reads, opens })
    }

    /// Follows the policy in force: when its bulk-read folders changed, monitors the new
    /// ones from now on. True when the status changed with them.
    pub fn follow(&mut self, set: &PolicySet) -> bool {
        let apps = self.follow_apps(set);
        let folders = folders_of(set);
        if matches!(self.via, Via::Off) || (folders == self.folders && !apps) {
            return false;
        }
        if let Via::Fanotify(m) = &self.via {
            m.set_folders(folders.clone());
        }
        self.folders = folders;
        self.status = self.describe();
        true
    }

    /// Tells the monitor which apps' reads are possible uploads.
    /// True when their number changed (the status names it).
    fn follow_apps(&mut self, set: &PolicySet) -> bool {
        if let Via::Fanotify(m) = &self.via {
            m.set_apps(set.apps.clone());
        }
        std::mem::replace(&mut self.apps, set.apps.len()) != set.apps.len()
    }

    /// Marks a customer file for reads (the agent just classified it, or remembers it from
    /// an earlier run), so a browser, mail client or chat app reading it is seen wherever it
    /// lies. With `stamp`, only the file as it was read is marked: one swapped in since is
    /// left alone. Opened through `safe_fs`: no link is followed.
    pub fn mark_customer_file(&mut self, path: &Path, stamp: Option<crate::tree::Stamp>) {
        let Via::Fanotify(m) = &self.via else { return };
        let Ok(f) = crate::safe_fs::open_regular(path) else {
            return;
        };
        if stamp.is_some_and(|s| s.ino != f.stat.ino || s.len != f.stat.len) {
            return;
        }
        match mark_file(m, &f.file) {
            Ok(true) => {}
            Ok(false) => self.files_unmarked += 1,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot mark a customer file for reads")
            }
        }
    }

    /// The reads by apps taken since the last call, to be classified.
    pub fn take_uploads(&mut self) -> Vec<Upload> {
        std::mem::take(&mut self.uploads)
    }

    /// A read by an app: an upload to classify, unless the same app read the same file
    /// within [`UPLOAD_AGAIN`].
    fn app_read(&mut self, set: &PolicySet, read: crate::watch::AppRead) {
        let Some(app) = read
            .open
            .process
            .exe
            .as_deref()
            .and_then(|exe| set.app_of(exe))
        else {
            return;
        };
        let key = (read.open.path.clone(), app.name.clone());
        if self
            .uploaded
            .get(&key)
            .is_some_and(|t| t.elapsed() < UPLOAD_AGAIN)
        {
            return;
        }
        if self.uploaded.len() >= MAX_UPLOADS_REMEMBERED {
            self.uploaded.retain(|_, t| t.elapsed() < UPLOAD_AGAIN);
            if self.uploaded.len() >= MAX_UPLOADS_REMEMBERED {
                self.uploaded.clear();
            }
        }
        if self.uploads.len() >= MAX_UPLOADS_WAITING {
            self.uploads_lost += 1;
            return;
        }
        self.uploaded.insert(key, Instant::now());
        self.uploads.push(Upload {
            path: PathBuf::from(&read.open.path),
            by: crate::pipeline::UploadBy {
                app: app.name.clone(),
                app_kind: app.kind,
                process: read.open.process.clone(),
            },
            file: read.file.as_ref().and_then(|h| h.file()),
        });
    }

    /// The status line.
    fn describe(&self) -> String {
        let listed = self
            .folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let uploads = format!(
            "uploads: customer files read by the policy's {} app(s); {}",
            self.apps,
            match (&self.spool, &self.via) {
                (Some(s), Via::Fanotify(_)) => format!("print jobs: read from {}", s.display()),
                (None, _) => "print jobs: off (print_spool = \"off\")".to_string(),
                (Some(_), _) => "print jobs: not seen (they need fanotify)".to_string(),
            }
        );
        match &self.via {
            Via::Off => "off (reads = \"off\" in the agent's configuration)".into(),
            Via::Fanotify(_) if self.folders.is_empty() => {
                format!("fanotify: no bulk_read folder in the policy; {uploads}")
            }
            Via::Inotify(_) if self.folders.is_empty() => {
                "off (no bulk_read rule in the policy; uploads need fanotify)".into()
            }
            Via::Fanotify(m) => {
                let new_folders = if m.new_folders_at_once() {
                    "new folders marked as they appear"
                } else {
                    "new folders marked within 30 s (no fanotify directory events)"
                };
                format!("fanotify: reads under {listed}, with pid, uid, user and executable; {new_folders}; {uploads}")
            }
            Via::Inotify(why_not) => format!(
                "inotify fallback: opens under {listed} only where they are also watched, without the process, uid or executable; uploads not seen ({why_not})"
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
            WatchEvent::AppRead(read) if matches!(self.via, Via::Fanotify(_)) => {
                let open = read.open.clone();
                self.app_read(set, read);
                open
            }
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
        if self.files_unmarked > 0 && !self.file_cap_reported {
            self.file_cap_reported = true;
            out.push(EventBody::notice(
                "reads_file_marks_cap",
                format!("read monitoring reached its limit of {} customer files; uploads of customer files classified since are not seen", crate::fanotify::MAX_FILE_MARKS),
                self.files_unmarked,
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
                m.dropped.load(std::sync::atomic::Ordering::Relaxed) + self.uploads_lost,
                m.unmarked.load(std::sync::atomic::Ordering::Relaxed),
            ),
            _ => (0, 0),
        }
    }
}

#[cfg(target_os = "linux")]
fn mark_file(m: &Fan, f: &std::fs::File) -> Result<bool, nix::Error> {
    use std::os::fd::AsFd;
    m.mark_file(f.as_fd())
}

#[cfg(not(target_os = "linux"))]
fn mark_file(m: &Fan, _: &std::fs::File) -> Result<bool, String> {
    match *m {}
}

#[cfg(target_os = "linux")]
fn fanotify(
    folders: Vec<PathBuf>,
    spool: Option<PathBuf>,
    tx: SyncSender<WatchEvent>,
    health: crate::health::Health,
) -> Result<Fan, crate::fanotify::ReadsError> {
    crate::fanotify::start(folders, spool, tx, health)
}

#[cfg(not(target_os = "linux"))]
fn fanotify(
    _folders: Vec<PathBuf>,
    _spool: Option<PathBuf>,
    _tx: SyncSender<WatchEvent>,
    _health: crate::health::Health,
) -> Result<Fan, String> {
    Err("fanotify exists only on Linux".into())
}
