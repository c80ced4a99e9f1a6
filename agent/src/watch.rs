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
    /// The kernel queue overflowed: events were lost and the roots need a rescan.
    Overflow,
    /// The watcher reported an error.
    Error(String),
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

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    /// Roots actually watched.
    pub roots: Vec<PathBuf>,
    /// Roots that could not be watched, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

fn convert(ev: notify::Event) -> Vec<WatchEvent> {
    let mut paths = ev.paths.into_iter();
    if ev.attrs.flag() == Some(notify::event::Flag::Rescan) {
        return vec![WatchEvent::Overflow];
    }
    match ev.kind {
        EventKind::Create(CreateKind::Folder) => vec![],
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
        EventKind::Remove(notify::event::RemoveKind::Folder) => vec![],
        EventKind::Remove(_) => paths.map(WatchEvent::Removed).collect(),
        _ => vec![],
    }
}

/// Starts watching `roots` recursively, sending events into `tx`.
pub fn start(roots: &[PathBuf], tx: SyncSender<WatchEvent>) -> Result<Watcher, WatchError> {
    let mut inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let evs = match res {
            Ok(ev) => convert(ev),
            Err(e) => vec![WatchEvent::Error(e.to_string())],
        };
        for ev in evs {
            // The receiver is gone only at shutdown.
            if tx.send(ev).is_err() {
                return;
            }
        }
    })
    .map_err(WatchError::Start)?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for root in roots {
        match inner.watch(root, RecursiveMode::Recursive) {
            Ok(()) => ok.push(root.clone()),
            Err(e) => failed.push((root.clone(), e.to_string())),
        }
    }
    if ok.is_empty() {
        let why = failed
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(WatchError::NoRoots(why));
    }
    Ok(Watcher {
        _inner: inner,
        roots: ok,
        failed,
    })
}

/// A bounded channel for watch events.
pub fn channel(capacity: usize) -> (SyncSender<WatchEvent>, Receiver<WatchEvent>) {
    std::sync::mpsc::sync_channel(capacity)
}
