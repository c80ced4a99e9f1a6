//! The file watcher adapter: the only module that touches `notify`. It turns notify's
//! events into [`WatchEvent`]s on a bounded channel; a full channel blocks notify's thread
//! (the kernel queue then absorbs the burst, and reports an overflow if it cannot).

use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};

/// What the watcher saw, reduced to what the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A file or directory appeared.
    Created(PathBuf),
    /// A file's content or metadata changed.
    Touched(PathBuf),
    /// Moved away (the other half may follow as [`WatchEvent::Renamed`]).
    MovedFrom(PathBuf),
    /// Moved in from elsewhere.
    MovedTo(PathBuf),
    /// Renamed within the watched places.
    Renamed { from: PathBuf, to: PathBuf },
    /// Deleted.
    Removed(PathBuf),
    /// A directory appeared (created or moved in): the files already in it may predate
    /// its watch, so it needs a scan.
    DirAppeared(PathBuf),
    /// The kernel queue overflowed: events were lost and the roots need a rescan.
    Overflow,
    /// The kernel's limit on watches was reached at this path: what lies under it is not
    /// watched and must be polled.
    LimitReached(PathBuf),
    /// The watcher reported an error.
    Error(String),
    /// A file was opened (inotify: no word of who opened it). Sent only when the watcher was
    /// started with [`Opens::Report`], the fallback of read monitoring.
    Opened(PathBuf),
    /// A file was opened, and by whom (read monitoring through fanotify).
    Read(holdfast_shared::reads::Open),
    /// A file was read by an app of the policy's `[[app]]` list (a browser, a mail client, a
    /// chat app): a possible upload, with the descriptor the app opened when one was free.
    AppRead(AppRead),
    /// A file in the print system's spool was closed after writing (a print job's document
    /// or control file), with the kernel's descriptor of it: CUPS deletes a document once
    /// printed, so it is read from this.
    Spooled(Spooled),
    /// A file written on a phone, passed on by the phone's watcher (see `phones`) with a
    /// descriptor it opened as the phone mount's owner.
    Phone(PhoneFile),
}

/// A file written on a phone, as its watcher passed it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneFile {
    /// Where it is: the mount point joined with the name the watcher gave.
    pub path: PathBuf,
    pub file: std::sync::Arc<HeldRead>,
}

/// A spool file as read monitoring saw it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Its name in the spool folder (`d00012-001`, `c00012`).
    pub name: String,
    pub file: std::sync::Arc<HeldRead>,
}

/// A read by an app, as read monitoring saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRead {
    pub open: holdfast_shared::reads::Open,
    /// The file the app opened (the kernel's descriptor of it), so what is classified is what
    /// the app read, whatever the path holds by then.
    pub file: Option<std::sync::Arc<HeldRead>>,
}

/// Descriptors of app reads held on their way to the pipeline, at most.
pub const MAX_HELD_READS: usize = 64;
static HELD_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A descriptor held for an app read; one of at most [`MAX_HELD_READS`].
#[derive(Debug)]
pub struct HeldRead(std::fs::File);

impl HeldRead {
    /// Holds `fd`, unless [`MAX_HELD_READS`] are held already (then the path is read).
    pub fn hold(fd: std::os::fd::OwnedFd) -> Option<HeldRead> {
        use std::sync::atomic::Ordering;
        let held = HELD_READS.fetch_add(1, Ordering::Relaxed);
        if held >= MAX_HELD_READS {
            HELD_READS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(HeldRead(std::fs::File::from(fd)))
    }

    /// A descriptor of the same open file, for the reader.
    pub fn file(&self) -> Option<std::fs::File> {
        self.0.try_clone().ok()
    }
}

impl Drop for HeldRead {
    fn drop(&mut self) {
        HELD_READS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Two holds are the same only if they are one.
impl PartialEq for HeldRead {
    fn eq(&self, other: &HeldRead) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for HeldRead {}

/// Whether the watcher reports opens (read monitoring's fallback when fanotify is denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opens {
    Report,
    Ignore,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// notify could not create its watcher.
    #[error("starting the file watcher: {0}")]
    Start(notify::Error),
    /// None of the roots could be watched.
    #[error("none of the watched places could be watched: {0}")]
    NoRoots(String),
}

/// A running watcher; dropping it (and its [`Rewatch`] handles) stops watching.
pub struct Watcher {
    inner: std::sync::Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
    /// Roots actually watched.
    pub roots: Vec<PathBuf>,
    /// Roots that could not be watched, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Roots only partly watched because the kernel's watch limit was reached: they must be
    /// polled.
    pub limited: Vec<PathBuf>,
}

fn convert(ev: notify::Event, opens: Opens) -> Vec<WatchEvent> {
    let mut paths = ev.paths.into_iter();
    if ev.attrs.flag() == Some(notify::event::Flag::Rescan) {
        return vec![WatchEvent::Overflow];
    }
    match ev.kind {
        EventKind::Create(CreateKind::Folder) => paths.map(WatchEvent::DirAppeared).collect(),
        EventKind::Create(_) => paths.map(WatchEvent::Created).collect(),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => match (paths.next(), paths.next())
        {
            (Some(from), Some(to)) => vec![WatchEvent::Renamed { from, to }],
            _ => vec![],
        },
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            paths.map(WatchEvent::MovedFrom).collect()
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            paths.map(WatchEvent::MovedTo).collect()
        }
        EventKind::Modify(ModifyKind::Metadata(_)) => vec![],
        EventKind::Modify(_) => paths.map(WatchEvent::Touched).collect(),
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            paths.map(WatchEvent::Touched).collect()
        }
        EventKind::Access(notify::event::AccessKind::Open(_)) if opens == Opens::Report => paths
            .filter(|p| !p.is_dir())
            .map(WatchEvent::Opened)
            .collect(),
        EventKind::Remove(notify::event::RemoveKind::Folder) => vec![],
        EventKind::Remove(_) => paths.map(WatchEvent::Removed).collect(),
        _ => vec![],
    }
}

/// Starts watching `roots` recursively, sending events into `tx`.
pub fn start(
    roots: &[PathBuf],
    tx: SyncSender<WatchEvent>,
    opens: Opens,
) -> Result<Watcher, WatchError> {
    // Never through a link: `~/Downloads/x -> /` must not make a root agent watch (and
    // then read) the whole machine.
    let config = notify::Config::default().with_follow_symlinks(false);
    let handler = move |res: notify::Result<notify::Event>| {
        let evs = match res {
            Ok(ev) => convert(ev, opens),
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                vec![WatchEvent::LimitReached(
                    e.paths.first().cloned().unwrap_or_default(),
                )]
            }
            Err(e) => vec![WatchEvent::Error(e.to_string())],
        };
        for ev in evs {
            // The receiver is gone only at shutdown.
            if tx.send(ev).is_err() {
                return;
            }
        }
    };
    let mut inner = notify::RecommendedWatcher::new(handler, config).map_err(WatchError::Start)?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    let mut limited = Vec::new();
    for root in roots {
        if let Err(e) = crate::safe_fs::open_dir(root) {
            failed.push((root.clone(), e.to_string()));
            continue;
        }
        match inner.watch(root, RecursiveMode::Recursive) {
            Ok(()) => ok.push(root.clone()),
            // Partly watched: the watches added so far stay; the rest is polled.
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                limited.push(root.clone())
            }
            Err(e) => failed.push((root.clone(), e.to_string())),
        }
    }
    if ok.is_empty() && limited.is_empty() {
        let why = failed
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(WatchError::NoRoots(why));
    }
    Ok(Watcher {
        inner: std::sync::Arc::new(std::sync::Mutex::new(inner)),
        roots: ok,
        failed,
        limited,
    })
}

impl Watcher {
    /// A handle that can renew the watches from another thread.
    pub fn rewatch_handle(&self) -> Rewatch {
        Rewatch(std::sync::Arc::downgrade(&self.inner))
    }
}

/// Renews recursive watches after the kernel dropped events: folders created while events
/// were being lost were never watched, and walking the roots again adds them.
#[derive(Clone)]
pub struct Rewatch(std::sync::Weak<std::sync::Mutex<notify::RecommendedWatcher>>);

impl Rewatch {
    /// Renews the watches on `roots` on a thread of its own: notify answers a watch request
    /// from its event thread, which may be waiting for the caller to drain the channel.
    pub fn renew(&self, roots: Vec<PathBuf>) {
        let weak = self.0.clone();
        let spawned = std::thread::Builder::new()
            .name("holdfast-rewatch".into())
            .spawn(move || {
                let Some(inner) = weak.upgrade() else { return };
                let Ok(mut w) = inner.lock() else { return };
                for root in roots {
                    if let Err(e) = w.watch(&root, RecursiveMode::Recursive) {
                        tracing::warn!(root = %root.display(), error = %e, "renewing the watch failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the rewatch thread");
        }
    }
}

/// A bounded channel for watch events.
pub fn channel(capacity: usize) -> (SyncSender<WatchEvent>, Receiver<WatchEvent>) {
    std::sync::mpsc::sync_channel(capacity)
}
