//! The read-monitoring adapter: the only module that touches fanotify. It reports every read
//! of a file under the customer-data folders of the bulk-read rules, with the reader's pid,
//! uid, user name and executable, as [`WatchEvent::Read`]s on the watch channel. A read is a
//! file opened without write access and closed again (`FAN_CLOSE_NOWRITE`), or any read of
//! file data (`FAN_ACCESS`), so a file opened `O_RDWR` and read counts too; saving a file
//! without reading it does not. The reader is looked up when it opens the file (`FAN_OPEN`), since by the
//! close it may have exited; the last [`MAX_PROCESSES`] readers are remembered by pid. A
//! reader that exits before the agent handles its first open (within a millisecond or so)
//! is reported with its pid only.
//!
//! fanotify needs `CAP_SYS_ADMIN`. Each directory under the folders gets a mark for opens of
//! its files (an inode mark, like an inotify watch, so only these folders wake the agent, not
//! every open on the machine); the folders are walked again every [`REMARK`] for new
//! directories and for folders that appear (a share mounted later). A second group, reporting
//! by file id, wakes the walk as soon as a directory is made or moved in under the folders, so
//! a new folder is marked within milliseconds, not [`REMARK`]. A walk again lists only
//! the directories whose modification time moved since they were last listed (a new
//! subdirectory moves its parent's), so an unchanged tree costs one `stat` per directory. Without the privilege,
//! [`start`] fails and the agent falls back to inotify's open events (see `daemon`).

use crate::watch::{AppRead, HeldRead, Spooled, WatchEvent};
use holdfast_shared::event::Process;
use holdfast_shared::policy::App;
use holdfast_shared::reads::Open;
use nix::fcntl::AT_FDCWD;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How often the folders are walked again for new directories.
pub const REMARK: Duration = Duration::from_secs(30);
/// Most directories marked (a mark costs the kernel about as much as an inotify watch).
pub const MAX_MARKS: usize = 200_000;
/// Most readers remembered between their open and their close.
pub const MAX_PROCESSES: usize = 4096;
/// A directory modified more recently than this before it was listed is listed again on the
/// next walk: a subdirectory made in the same clock tick would not move its modification time.
const RACY: Duration = Duration::from_secs(2);
/// What a directory's mark asks of the read group: opens and no-write closes of its files.
const READS: MaskFlags = MaskFlags::FAN_OPEN
    .union(MaskFlags::FAN_CLOSE_NOWRITE)
    .union(MaskFlags::FAN_ACCESS)
    .union(MaskFlags::FAN_CLOSE_WRITE)
    .union(MaskFlags::FAN_EVENT_ON_CHILD);
/// What a customer file's own mark asks: the same, for that file alone.
const FILE_READS: MaskFlags = MaskFlags::FAN_OPEN
    .union(MaskFlags::FAN_CLOSE_NOWRITE)
    .union(MaskFlags::FAN_ACCESS)
    .union(MaskFlags::FAN_CLOSE_WRITE);
/// Customer files marked for reads, at most (each mark pins its inode in the kernel's cache).
pub const MAX_FILE_MARKS: usize = 20_000;
/// What the print spool's mark asks: its files closed after writing.
const SPOOL: MaskFlags = MaskFlags::FAN_CLOSE_WRITE.union(MaskFlags::FAN_EVENT_ON_CHILD);
/// What it asks of the new-directory group: directories made or moved in.
const NEW_DIRS: MaskFlags = MaskFlags::FAN_CREATE
    .union(MaskFlags::FAN_MOVED_TO)
    .union(MaskFlags::FAN_ONDIR);
/// The shortest time between two walks that new directories ask for.
const WALK_GAP: Duration = Duration::from_millis(100);

/// Why read monitoring through fanotify could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReadsError {
    /// The kernel refused a fanotify group: no `CAP_SYS_ADMIN`, or no fanotify.
    #[error("fanotify is not available ({0}): it needs CAP_SYS_ADMIN (run the agent as root or grant it the capability)")]
    Unavailable(nix::Error),
    /// The reading thread could not be started.
    #[error("starting the read-monitoring thread: {0}")]
    Thread(std::io::Error),
}

/// Failed reads of the queue in a row after which the monitor reports itself degraded.
const READ_ERRORS: u32 = 10;

/// A running monitor; dropping it stops the thread within a second.
pub struct ReadMonitor {
    stop: Arc<AtomicBool>,
    /// The read group, shared with the thread: customer files are marked through it.
    fan: Arc<Fanotify>,
    /// The apps whose reads are possible uploads, shared with the thread.
    apps: Arc<Mutex<Vec<App>>>,
    /// Customer files marked, by device and inode.
    files: Mutex<std::collections::HashSet<(u64, u64)>>,
    /// Folders to monitor from now on, taken up by the thread within a second.
    next_folders: Arc<Mutex<Option<Vec<PathBuf>>>>,
    /// Opens dropped because the watch channel was full.
    pub dropped: Arc<AtomicU64>,
    /// Directories marked so far.
    pub marked: Arc<AtomicU64>,
    /// Directories left unmarked by the last walk because [`MAX_MARKS`] was reached.
    pub unmarked: Arc<AtomicU64>,
    new_folders_at_once: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadMonitor {
    /// Whether new directories are marked as soon as they are made (else at the next walk).
    pub fn new_folders_at_once(&self) -> bool {
        self.new_folders_at_once
    }

    /// The apps whose reads are reported as [`WatchEvent::AppRead`] from now on.
    pub fn set_apps(&self, apps: Vec<App>) {
        *self.apps.lock().unwrap_or_else(PoisonError::into_inner) = apps;
    }

    /// Marks the customer file open as `file` for reads, wherever it lies (an inode mark: it
    /// follows the file through renames and goes with it when it is deleted). False when
    /// [`MAX_FILE_MARKS`] files are marked already.
    pub fn mark_file(&self, file: std::os::fd::BorrowedFd<'_>) -> Result<bool, nix::Error> {
        let st = nix::sys::stat::fstat(file)?;
        #[allow(clippy::unnecessary_cast)]
        let id = (st.st_dev as u64, st.st_ino as u64);
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if !files.contains(&id) && files.len() >= MAX_FILE_MARKS {
            return Ok(false);
        }
        // Marked again even when the id is known: a deleted file's mark goes with its inode,
        // and a new file can get the same inode number (deleting marked files, then writing
        // an export, would otherwise leave the export unmarked). Adding a mark twice is
        // harmless.
        self.fan
            .mark::<_, std::path::Path>(MarkFlags::FAN_MARK_ADD, FILE_READS, file, None)?;
        files.insert(id);
        Ok(true)
    }

    /// Monitors `folders` from now on (a policy update): new ones are marked within a second,
    /// directories no folder covers any more are unmarked.
    pub fn set_folders(&self, folders: Vec<PathBuf>) {
        *self
            .next_folders
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(folders);
    }
}

impl Drop for ReadMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts monitoring opens under `folders` (which need not exist yet), and the print jobs
/// written to `spool` (marked as soon as it exists).
pub fn start(
    folders: Vec<PathBuf>,
    spool: Option<PathBuf>,
    tx: SyncSender<WatchEvent>,
    health: crate::health::Health,
) -> Result<ReadMonitor, ReadsError> {
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(ReadsError::Unavailable)?;
    // Directory events come only to groups that report file ids (Linux 5.1).
    let dirs_fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::from_bits_retain(nix::libc::FAN_REPORT_FID),
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
    )
    .inspect_err(|e| {
        tracing::info!(error = %e, "no fanotify directory events: new folders are marked by the periodic walk");
    })
    .ok();
    let stop = Arc::new(AtomicBool::new(false));
    let next_folders = Arc::new(Mutex::new(None));
    let new_folders_at_once = dirs_fan.is_some();
    let fan = Arc::new(fan);
    let apps = Arc::new(Mutex::new(Vec::new()));
    let mut m = Monitor::new(fan.clone(), dirs_fan, folders, tx);
    m.apps = apps.clone();
    m.health = health.clone();
    m.spool = spool.map(|dir| Spool { dir, marked: None });
    let (dropped, marked, unmarked) = (m.dropped.clone(), m.marked.clone(), m.unmarked.clone());
    m.remark();
    let (s, next) = (stop.clone(), next_folders.clone());
    let thread = std::thread::Builder::new()
        .name("holdfast-reads".into())
        .spawn(move || {
            // Supervised: a panic is reported as `reads` and the monitor starts again, its
            // folders marked afresh.
            let mut first = true;
            crate::health::keep_running("reads", &health, &s, || {
                if !std::mem::take(&mut first) {
                    m.remark();
                }
                m.run(&s, &next)
            })
        })
        .map_err(ReadsError::Thread)?;
    Ok(ReadMonitor {
        stop,
        fan,
        apps,
        files: Mutex::new(std::collections::HashSet::new()),
        next_folders,
        dropped,
        marked,
        unmarked,
        new_folders_at_once,
        thread: Some(thread),
    })
}

struct Monitor {
    fan: Arc<Fanotify>,
    /// Apps whose reads go out as [`WatchEvent::AppRead`], with a descriptor.
    apps: Arc<Mutex<Vec<App>>>,
    /// A second group, reporting by file id (no descriptors), that only says a directory was
    /// made or moved in under a marked one, so the walk marks it at once rather than within
    /// [`REMARK`]. `None` where the kernel or the file system cannot report by file id.
    dirs_fan: Option<Fanotify>,
    folders: Vec<PathBuf>,
    /// Every directory marked, with what its last listing found.
    dirs: HashMap<PathBuf, Dir>,
    /// Walks so far.
    walks: u64,
    /// uid → user name, as the device knows it.
    users: HashMap<u32, Option<String>>,
    /// pid → who it was when it last opened a file here.
    processes: HashMap<u32, Process>,
    own_pid: u32,
    tx: SyncSender<WatchEvent>,
    dropped: Arc<AtomicU64>,
    marked: Arc<AtomicU64>,
    unmarked: Arc<AtomicU64>,
    /// (pid, device, inode) of files read since their open: one read is reported per open.
    accessed: std::collections::HashSet<(u32, u64, u64)>,
    /// [`MAX_MARKS`], or `HOLDFAST_READ_MARKS_MAX` (for tests of the limit).
    max_marks: usize,
    /// Where the monitor's failures show (`reads`).
    health: crate::health::Health,
    /// Reads of the queue that failed in a row.
    read_errors: u32,
    /// The print system's spool folder, when print jobs are watched.
    spool: Option<Spool>,
}

/// The print spool folder and the directory its mark is on (device, inode).
struct Spool {
    dir: PathBuf,
    marked: Option<(u64, u64)>,
}

/// What the walks know of one marked directory.
struct Dir {
    /// Device and inode: a directory removed and made again under the same name is a new
    /// inode and needs a mark of its own.
    id: (u64, u64),
    /// Its modification time when it was last listed, unless that was too recent to trust.
    listed_at: Option<SystemTime>,
    /// The names of its subdirectories at that listing.
    subdirs: Vec<OsString>,
    /// The last walk that reached it.
    seen: u64,
}

impl Monitor {
    fn new(
        fan: Arc<Fanotify>,
        dirs_fan: Option<Fanotify>,
        folders: Vec<PathBuf>,
        tx: SyncSender<WatchEvent>,
    ) -> Monitor {
        Monitor {
            fan,
            apps: Arc::new(Mutex::new(Vec::new())),
            dirs_fan,
            folders,
            dirs: HashMap::new(),
            walks: 0,
            users: HashMap::new(),
            processes: HashMap::new(),
            own_pid: std::process::id(),
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            marked: Arc::new(AtomicU64::new(0)),
            unmarked: Arc::new(AtomicU64::new(0)),
            accessed: std::collections::HashSet::new(),
            max_marks: std::env::var("HOLDFAST_READ_MARKS_MAX")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_MARKS),
            health: crate::health::Health::default(),
            read_errors: 0,
            spool: None,
        }
    }

    fn run(&mut self, stop: &AtomicBool, next_folders: &Mutex<Option<Vec<PathBuf>>>) {
        let mut last_walk = Instant::now();
        // When a directory made under the folders asks for a walk.
        let mut walk_due: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let next = next_folders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(folders) = next {
                self.folders = folders;
                walk_due = Some(Instant::now());
            }
            let now = Instant::now();
            if walk_due.is_some_and(|d| now >= d) || now.duration_since(last_walk) >= REMARK {
                self.remark();
                last_walk = Instant::now();
                walk_due = None;
            }
            let wait_ms = walk_due.map_or(1000, |d| {
                d.saturating_duration_since(now).as_millis().clamp(1, 1000) as u16
            });
            let (reads, dirs) = {
                let mut fds = vec![PollFd::new(self.fan.as_fd(), PollFlags::POLLIN)];
                if let Some(d) = &self.dirs_fan {
                    fds.push(PollFd::new(d.as_fd(), PollFlags::POLLIN));
                }
                let ready = poll(&mut fds, PollTimeout::from(wait_ms)).unwrap_or(0) > 0;
                let readable = |f: &PollFd| {
                    ready && f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
                };
                (readable(&fds[0]), fds.get(1).is_some_and(readable))
            };
            if dirs && self.new_directories() {
                // At once, unless a walk has just run: a tree being unpacked is walked at most
                // every WALK_GAP, not once per directory.
                walk_due.get_or_insert(last_walk + WALK_GAP);
            }
            if reads && !self.reads() {
                return;
            }
            if self.read_errors == 0 {
                self.health.ok("reads");
            }
        }
    }

    /// Drains the new-directory group; true when a directory was made or moved in under the
    /// folders (or the group's queue overflowed, which may have hidden one).
    fn new_directories(&mut self) -> bool {
        let Some(fan) = &self.dirs_fan else {
            return false;
        };
        let mut found = false;
        for _ in 0..64 {
            match fan.read_events() {
                Ok(evs) if !evs.is_empty() => {
                    found |= evs.iter().any(|e| {
                        e.mask()
                            .intersects(MaskFlags::FAN_ONDIR | MaskFlags::FAN_Q_OVERFLOW)
                    });
                }
                _ => break,
            }
        }
        found
    }

    /// Handles the opens and reads waiting; false once the agent has stopped listening.
    fn reads(&mut self) -> bool {
        let events = match self.fan.read_events() {
            Ok(evs) => evs,
            Err(nix::errno::Errno::EAGAIN) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "reading fanotify events");
                self.read_errors += 1;
                if self.read_errors == READ_ERRORS {
                    self.health
                        .fail("reads", format!("reading fanotify events: {e}"));
                }
                std::thread::sleep(Duration::from_millis(100));
                return true;
            }
        };
        self.read_errors = 0;
        for ev in events {
            let pid = u32::try_from(ev.pid()).unwrap_or(0);
            if pid == self.own_pid {
                continue;
            }
            let Some(fd) = ev.fd() else {
                // The kernel's queue overflowed: opens were lost.
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if ev.mask().contains(MaskFlags::FAN_CLOSE_WRITE) && self.spooled(fd) == Some(false) {
                return false;
            }
            if ev.mask().contains(MaskFlags::FAN_OPEN) {
                let p = self.process(pid);
                if p.exe.is_some() {
                    if self.processes.len() >= MAX_PROCESSES {
                        self.processes.clear();
                    }
                    self.processes.insert(pid, p);
                }
            }
            // One read per open: the first data read (`FAN_ACCESS`, whatever the open's
            // mode), or the close of a read-only open that read nothing yet.
            let mask = ev.mask();
            // (`st_dev` and `st_ino` are not u64 on every target.)
            #[allow(clippy::unnecessary_cast)]
            let key = nix::sys::stat::fstat(fd.as_fd())
                .ok()
                .map(|st| (pid, st.st_dev as u64, st.st_ino as u64));
            let forward = if mask.contains(MaskFlags::FAN_ACCESS) {
                if self.accessed.len() >= MAX_PROCESSES {
                    self.accessed.clear();
                }
                key.is_none_or(|k| self.accessed.insert(k))
            } else {
                let had = key.is_some_and(|k| self.accessed.remove(&k));
                mask.contains(MaskFlags::FAN_CLOSE_NOWRITE) && !had
            };
            if mask.intersects(MaskFlags::FAN_CLOSE_NOWRITE | MaskFlags::FAN_CLOSE_WRITE) {
                if let Some(k) = key {
                    self.accessed.remove(&k);
                }
            }
            if !forward {
                continue;
            }
            let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            let process = match self.processes.get(&pid) {
                Some(p) => p.clone(),
                None => self.process(pid),
            };
            let open = Open {
                path: path.display().to_string(),
                process,
                time_ms: crate::clock::now_ms(),
            };
            let by_app = open.process.exe.as_deref().is_some_and(|exe| {
                self.apps
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .any(|a| a.runs(exe))
            });
            let ev = if by_app {
                let file = fd
                    .try_clone_to_owned()
                    .ok()
                    .and_then(HeldRead::hold)
                    .map(Arc::new);
                WatchEvent::AppRead(AppRead { open, file })
            } else {
                WatchEvent::Read(open)
            };
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        true
    }

    /// A file closed after writing: when it lies in the print spool, it goes out as
    /// [`WatchEvent::Spooled`] with its descriptor. `None` when it is no spool file or was
    /// sent, `Some(false)` once the agent has stopped listening.
    fn spooled(&self, fd: std::os::fd::BorrowedFd<'_>) -> Option<bool> {
        let spool = self.spool.as_ref()?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        // A document CUPS has deleted by now is still named, with this after it.
        let path = path.to_str()?.trim_end_matches(" (deleted)");
        let name = std::path::Path::new(path)
            .strip_prefix(&spool.dir)
            .ok()?
            .to_str()
            .filter(|n| !n.is_empty() && !n.contains('/'))?
            .to_string();
        let Some(file) = fd.try_clone_to_owned().ok().and_then(HeldRead::hold) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let ev = WatchEvent::Spooled(Spooled {
            name,
            file: Arc::new(file),
        });
        match self.tx.try_send(ev) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(TrySendError::Disconnected(_)) => Some(false),
        }
    }

    /// Marks the print spool folder for files closed after writing, when it exists and is
    /// not marked yet (CUPS installed after the agent started, or the folder made again).
    fn mark_spool(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        let Ok(meta) = std::fs::symlink_metadata(&spool.dir) else {
            return;
        };
        let id = (meta.dev(), meta.ino());
        if !meta.is_dir() || spool.marked == Some(id) {
            return;
        }
        match self.fan.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_DONT_FOLLOW | MarkFlags::FAN_MARK_ONLYDIR,
            SPOOL,
            AT_FDCWD,
            Some(spool.dir.as_path()),
        ) {
            Ok(()) => {
                tracing::info!(spool = %spool.dir.display(), "print jobs watched");
                spool.marked = Some(id);
            }
            Err(e) => {
                tracing::warn!(spool = %spool.dir.display(), error = %e, "cannot watch the print spool")
            }
        }
    }

    /// Who `pid` is: uid from `/proc/PID/status`, the executable's path, the user's name.
    fn process(&mut self, pid: u32) -> Process {
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| real_uid(&s));
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
        let exe_trusted = exe.as_deref().map(|e| trusted_executable(pid, e));
        let user = uid.and_then(|u| {
            self.users
                .entry(u)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                })
                .clone()
        });
        Process {
            pid,
            uid,
            user,
            exe,
            exe_trusted,
            exe_sha256: None,
        }
    }

    /// Marks every directory under the folders not marked yet; returns how many directories
    /// it had to list (the others had not changed since their last listing).
    fn remark(&mut self) -> usize {
        self.mark_spool();
        self.walks += 1;
        let walk = self.walks;
        let mut listed = 0;
        let mut unmarked = 0u64;
        // A folder may be a symbolic link (to a share): it is followed, and so is its mark.
        // Below it only real directories are descended into (`file_type` does not follow).
        let mut stack: Vec<PathBuf> = self.folders.clone();
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let id = (meta.dev(), meta.ino());
            let mtime = meta.modified().ok();
            match self.dirs.get_mut(&dir) {
                Some(d) if d.id == id => {
                    d.seen = walk;
                    if d.listed_at.is_some() && d.listed_at == mtime {
                        stack.extend(d.subdirs.iter().map(|n| dir.join(n)));
                        continue;
                    }
                }
                _ => {
                    if self.dirs.len() >= self.max_marks && !self.dirs.contains_key(&dir) {
                        unmarked += 1;
                        continue;
                    }
                    if let Err(e) = self.fan.mark(
                        MarkFlags::FAN_MARK_ADD,
                        READS,
                        AT_FDCWD,
                        Some(dir.as_path()),
                    ) {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot mark folder");
                        continue;
                    }
                    if let Some(d) = &self.dirs_fan {
                        // Some file systems cannot report file ids (FUSE, some network ones):
                        // their new directories wait for the periodic walk.
                        if let Err(e) = d.mark(
                            MarkFlags::FAN_MARK_ADD,
                            NEW_DIRS,
                            AT_FDCWD,
                            Some(dir.as_path()),
                        ) {
                            tracing::debug!(dir = %dir.display(), error = %e, "no directory events");
                        }
                    }
                }
            }
            // Read the clock before listing: what is made during the listing is newer.
            let now = SystemTime::now();
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            listed += 1;
            let subdirs: Vec<OsString> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name())
                .collect();
            stack.extend(subdirs.iter().map(|n| dir.join(n)));
            let settled = mtime.filter(|m| now.duration_since(*m).is_ok_and(|age| age >= RACY));
            self.dirs.insert(
                dir,
                Dir {
                    id,
                    listed_at: settled,
                    subdirs,
                    seen: walk,
                },
            );
        }
        // Directories no walk reaches any more (removed, moved away, a share unmounted, a
        // folder dropped from the policy) are unmarked where they still are, forgotten, and
        // marked again if they come back.
        let gone: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.seen != walk)
            .map(|(p, _)| p.clone())
            .collect();
        for dir in gone {
            self.dirs.remove(&dir);
            if !dir.is_dir() {
                continue; // its marks went with it
            }
            let _ = self.fan.mark(
                MarkFlags::FAN_MARK_REMOVE,
                READS,
                AT_FDCWD,
                Some(dir.as_path()),
            );
            if let Some(d) = &self.dirs_fan {
                let _ = d.mark(
                    MarkFlags::FAN_MARK_REMOVE,
                    NEW_DIRS,
                    AT_FDCWD,
                    Some(dir.as_path()),
                );
            }
        }
        self.marked.store(self.dirs.len() as u64, Ordering::Relaxed);
        self.unmarked.store(unmarked, Ordering::Relaxed);
        listed
    }
}

/// The real uid on the `Uid:` line of `/proc/PID/status`.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Whether the running binary of `pid` (the inode itself, through `/proc/PID/exe`) and the
/// folder holding `exe` are root's and writable by nobody else: only such a program may be
/// excluded from read monitoring, so a user's own copy of an excluded program never is.
fn trusted_executable(pid: u32, exe: &str) -> bool {
    let safe = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    let binary = std::fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| safe(&m));
    let folder = std::path::Path::new(exe)
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .is_some_and(|m| safe(&m));
    binary && folder
}

/// Whether this process may have a fanotify group (`holdfast-agent doctor`): the group is
/// made and dropped at once.
pub fn probe() -> Result<(), nix::Error> {
    Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// As root, another process's read of a file in a marked folder arrives with its reader;
    /// without the privilege, starting says why.
    #[test]
    fn reads_arrive_with_their_reader() {
        let (dir, f) = holdfast_io::testing::scratch("sub/a.csv");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "email\nada@example.com\n").unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let m = match start(vec![dir.path().to_path_buf()], None, tx, Default::default()) {
            Ok(m) => m,
            Err(e) => {
                assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
                return;
            }
        };
        assert_eq!(m.marked.load(Ordering::Relaxed), 2);
        let open = read_with_sh(&f, &rx);
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(open.process.exe.as_deref(), Some(sh.to_str().unwrap()));
        assert_eq!(open.process.uid, Some(0));
    }

    /// A second walk of an unchanged tree lists nothing; a new subdirectory deep down is
    /// found and marked by listing only its parent (and itself); a directory modified just
    /// before its listing is listed again until its time has settled.
    #[test]
    fn walks_list_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let age = |dirs: &[&str]| {
            let old = SystemTime::now() - Duration::from_secs(3600);
            for d in dirs {
                let f = std::fs::File::open(root.join(d)).unwrap();
                f.set_modified(old).unwrap();
            }
        };
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(root.join("x")).unwrap();
        age(&["", "a", "a/b", "a/b/c", "x"]);
        let Ok(fan) = Fanotify::init(InitFlags::FAN_CLASS_NOTIF, EventFFlags::O_RDONLY) else {
            return; // not privileged: `reads_arrive_with_their_reader` checks the refusal
        };
        let (tx, _rx) = std::sync::mpsc::sync_channel(16);
        let mut m = Monitor::new(
            Arc::new(fan),
            None,
            vec![root.clone(), root.join("later")],
            tx,
        );
        let check = |m: &mut Monitor, listed: usize, marked: u64| {
            assert_eq!(
                (m.remark(), m.marked.load(Ordering::Relaxed)),
                (listed, marked)
            );
        };
        check(&mut m, 5, 5);
        check(&mut m, 0, 5);
        std::fs::create_dir(root.join("a/b/c/new")).unwrap();
        age(&["a/b/c", "a/b/c/new"]);
        check(&mut m, 2, 6);
        check(&mut m, 0, 6);
        std::fs::create_dir(root.join("a/b/c/racy")).unwrap();
        check(&mut m, 2, 7);
        check(&mut m, 2, 7);
        age(&["a/b/c", "a/b/c/racy"]);
        check(&mut m, 2, 7);
        check(&mut m, 0, 7);
        std::fs::remove_dir_all(root.join("x")).unwrap();
        age(&[""]);
        check(&mut m, 1, 6);
        std::fs::create_dir(root.join("later")).unwrap();
        age(&["", "later"]);
        // The root moved too (it holds `later`).
        check(&mut m, 2, 7);
        check(&mut m, 0, 7);
    }

    /// A folder made under a marked one (two levels at once, as `mkdir -p` does) is marked
    /// within moments, not at the next periodic walk: a read in it arrives.
    #[test]
    fn reads_in_a_new_folder_arrive_without_waiting_for_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let Ok(m) = start(vec![dir.path().to_path_buf()], None, tx, Default::default()) else {
            return; // not privileged: `reads_arrive_with_their_reader` checks the refusal
        };
        assert_eq!(m.marked.load(Ordering::Relaxed), 1);
        let f = dir.path().join("new/deeper/a.csv");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "email\nada@example.com\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.marked.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "the new folders were not marked");
            std::thread::sleep(Duration::from_millis(10));
        }
        read_with_sh(&f, &rx);
    }

    /// A policy update moves the monitoring: the old folder's reads stop, the new one's come.
    #[test]
    fn new_folders_replace_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(old.join("sub")).unwrap();
        std::fs::create_dir_all(new.join("sub/deeper")).unwrap();
        for d in [&old, &new] {
            std::fs::write(d.join("sub/a.csv"), "email\nada@example.com\n").unwrap();
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let Ok(m) = start(vec![old.clone()], None, tx, Default::default()) else {
            return; // not privileged: `reads_arrive_with_their_reader` checks the refusal
        };
        read_with_sh(&old.join("sub/a.csv"), &rx);
        assert_eq!(m.marked.load(Ordering::Relaxed), 2);
        m.set_folders(vec![new.clone(), dir.path().join("missing")]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.marked.load(Ordering::Relaxed) != 3 {
            assert!(Instant::now() < deadline, "the new folders were not marked");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A read under the old folder is no longer reported: the first read to arrive is
        // the one under the new folder.
        let gone = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("read -r line < \"$0\"")
            .arg(old.join("sub/a.csv"))
            .status()
            .unwrap();
        assert!(gone.success());
        read_with_sh(&new.join("sub/a.csv"), &rx);
    }

    /// Reads the first line of `f` with `/bin/sh` and returns the read the monitor reported.
    /// The reader stays a second, so the agent finds it when it looks it up (one that exits
    /// within microseconds of its open may be reported without its executable).
    fn read_with_sh(f: &Path, rx: &std::sync::mpsc::Receiver<WatchEvent>) -> Open {
        let ok = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("read -r line < \"$0\"; sleep 1")
            .arg(f)
            .output()
            .unwrap();
        assert!(ok.status.success());
        let ev = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let WatchEvent::Read(open) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(open.path, f.display().to_string());
        open
    }

    #[test]
    fn the_real_uid_is_read_from_the_status_line() {
        let status = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n";
        assert_eq!(real_uid(status), Some(1000));
        assert_eq!(real_uid("Name: x\n"), None);
        assert_eq!(real_uid("Uid:\tnope\n"), None);
    }
}
