//! The pipeline from watch events to spooled events: debounce bursts into one settled
//! change per file, read and classify it once, evaluate the policies, append to the spool.
//!
//! [`Debouncer`] is a pure state machine over events and an `Instant` passed in, so its
//! behaviour is tested without a file system.

use crate::watch::WatchEvent;
use holdfast_shared::event::{Action, EventBody, FileActivity};
use holdfast_shared::policy::{PolicySet, Subject};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most files waiting to settle at once; beyond this, changes are counted as dropped and
/// reported in a notice.
pub const MAX_PENDING: usize = 100_000;

/// A change that has settled and is ready to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub action: Action,
    pub path: PathBuf,
    pub old_path: Option<PathBuf>,
    /// For content leaving by a way that is no file change (`Opened`): an upload through an
    /// app, or a print job.
    pub via: Option<Box<Via>>,
}

impl Ready {
    /// A change of `path` that is no move and no upload.
    pub fn new(action: Action, path: PathBuf) -> Ready {
        Ready {
            action,
            path,
            old_path: None,
            via: None,
        }
    }

    /// Content leaving by `via`, as read at `path`.
    pub fn via(path: PathBuf, via: Via) -> Ready {
        Ready {
            via: Some(Box::new(via)),
            ..Ready::new(Action::Opened, path)
        }
    }
}

/// How content leaves, when no file change says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Read by an app of the policy's list: an upload through it.
    Upload(UploadBy),
    /// A document of print job `job`: read first, then reported with the job (`printed`,
    /// its destination) once the job is done (see `print`).
    Print {
        job: u32,
        printed: Option<Box<holdfast_shared::event::Destination>>,
    },
}

/// The app that read a file: where an upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBy {
    /// As the policy's `[[app]]` names it.
    pub app: String,
    pub app_kind: holdfast_shared::policy::AppKind,
    pub process: holdfast_shared::event::Process,
}

/// A file that keeps changing is read anyway once it has waited this many settle times
/// (at least [`MAX_WAIT_MIN`]): touching a file faster than it settles, then deleting it,
/// must not keep it from being read.
const MAX_WAIT_SETTLES: u32 = 5;
/// The shortest such wait.
const MAX_WAIT_MIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Pending {
    /// When the first change of this burst was seen.
    first: Instant,
    /// The order of its last rename among all renames seen (renames are read in the order
    /// they happened).
    renamed: u64,
    last: Instant,
    created: bool,
    old_path: Option<PathBuf>,
}

/// Collapses bursts of watch events into one [`Ready`] per file once it has been quiet for
/// `settle`.
#[derive(Debug)]
pub struct Debouncer {
    settle: Duration,
    max_wait: Duration,
    renames: u64,
    pending: HashMap<PathBuf, Pending>,
    moved_out: HashMap<PathBuf, Instant>,
    ready: Vec<Ready>,
    /// Changes dropped because [`MAX_PENDING`] was reached, not yet reported.
    pub dropped: u64,
    /// Kernel queue overflows seen, not yet reported.
    pub overflows: u64,
}

impl Debouncer {
    pub fn new(settle: Duration) -> Debouncer {
        Debouncer {
            settle,
            max_wait: (settle * MAX_WAIT_SETTLES).max(MAX_WAIT_MIN),
            renames: 0,
            pending: HashMap::new(),
            moved_out: HashMap::new(),
            ready: Vec::new(),
            dropped: 0,
            overflows: 0,
        }
    }

    /// Whether `path` has a change waiting to settle (it is being written).
    pub fn is_pending(&self, path: &Path) -> bool {
        self.pending.contains_key(path)
    }

    /// Files waiting to settle.
    pub fn len(&self) -> usize {
        self.pending.len() + self.moved_out.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn touch(&mut self, path: PathBuf, now: Instant, created: bool) {
        if let Some(p) = self.pending.get_mut(&path) {
            p.last = now;
            p.created |= created;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.pending.insert(
            path,
            Pending {
                first: now,
                renamed: 0,
                last: now,
                created,
                old_path: None,
            },
        );
    }

    /// Whether the file `name` held before this burst was renamed away in it (a pending move
    /// names it as where it came from).
    fn moved_away(&self, name: &Path) -> bool {
        self.pending
            .values()
            .any(|q| q.old_path.as_deref() == Some(name))
    }

    /// Takes one watch event into account.
    pub fn observe(&mut self, ev: WatchEvent, now: Instant) {
        match ev {
            WatchEvent::Created(p) | WatchEvent::MovedTo(p) => self.touch(p, now, true),
            WatchEvent::Touched(p) => self.touch(p, now, false),
            WatchEvent::MovedFrom(p) => {
                self.moved_out.insert(p, now);
            }
            WatchEvent::Renamed { from, to } => {
                self.moved_out.remove(&from);
                let before = self.pending.remove(&from);
                // A move continues the burst it is part of: it is read within `max_wait` of
                // that burst's first change, however often it is renamed meanwhile.
                let burst_began = before.as_ref().map(|p| p.first);
                let (created, old_path) = match before {
                    // Renamed before it ever settled (a download's temporary name): the file
                    // simply appeared under its final name. Whatever `from` held before
                    // this burst (a rename onto it) is gone: a delete, which the pipeline
                    // drops when nothing was ever known there.
                    Some(p) if p.created => {
                        // Unless what `from` held was itself moved away in this burst: it
                        // lives on under the name it went to, reported as that move.
                        if !self.moved_away(&from) {
                            self.ready.push(Ready::new(Action::Deleted, from.clone()));
                        }
                        (true, None)
                    }
                    // Renamed on from a name it was renamed to in this burst: the
                    // move is from its first name, and the middle name is gone too (it
                    // may have held a known file before).
                    Some(Pending {
                        old_path: Some(first),
                        ..
                    }) => {
                        if !self.moved_away(&from) {
                            self.ready.push(Ready::new(Action::Deleted, from.clone()));
                        }
                        (false, Some(first))
                    }
                    Some(_) => (false, Some(from)),
                    None => (false, Some(from)),
                };
                // Renamed away and back: no move at all.
                let old_path = old_path.filter(|o| *o != to);
                // Renamed onto a name that an earlier rename of this burst filled: that
                // earlier file is gone (replaced), and so is the name it came from.
                if let Some(replaced) = self.pending.get(&to).and_then(|p| p.old_path.clone()) {
                    if Some(&replaced) != old_path.as_ref() {
                        self.ready.push(Ready::new(Action::Deleted, replaced));
                    }
                }
                self.touch(to.clone(), now, false);
                self.renames += 1;
                if let Some(p) = self.pending.get_mut(&to) {
                    p.created = created;
                    p.old_path = old_path;
                    p.renamed = self.renames;
                    if let Some(first) = burst_began {
                        p.first = p.first.min(first);
                    }
                }
            }
            WatchEvent::Removed(p) => {
                // Even when created within this burst: it may have replaced a file known
                // before. The pipeline drops deletes of paths it never knew (a temporary
                // file created and deleted within one burst).
                // Renamed here and then deleted: the name it came from is gone too.
                if let Some(old) = self.pending.remove(&p).and_then(|x| x.old_path) {
                    self.ready.push(Ready::new(Action::Deleted, old));
                }
                // What the name held before this burst was moved away (and is reported as
                // that move): only a file of this burst is gone, which was never reported.
                if !self.moved_away(&p) {
                    self.ready.push(Ready::new(Action::Deleted, p));
                }
            }
            WatchEvent::Overflow => self.overflows += 1,
            // Expanded by the rescanner before they get here.
            WatchEvent::DirAppeared(_)
            | WatchEvent::LimitReached(_)
            | WatchEvent::Error(_)
            | WatchEvent::Opened(_)
            | WatchEvent::Read(_)
            | WatchEvent::AppRead(_)
            | WatchEvent::Spooled(_)
            | WatchEvent::Phone(_) => {}
        }
    }

    /// The changes that have settled by `now`, in a stable order.
    pub fn due(&mut self, now: Instant) -> Vec<Ready> {
        let (settle, max_wait) = (self.settle, self.max_wait);
        let quiet = |t: Instant| now.saturating_duration_since(t) >= settle;
        let waited =
            |p: &Pending| quiet(p.last) || now.saturating_duration_since(p.first) >= max_wait;
        let mut out = std::mem::take(&mut self.ready);
        let gone: Vec<PathBuf> = self
            .moved_out
            .iter()
            .filter(|(_, t)| quiet(**t))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            self.moved_out.remove(&p);
            if let Some(old) = self.pending.remove(&p).and_then(|x| x.old_path) {
                out.push(Ready::new(Action::Deleted, old));
            }
            out.push(Ready::new(Action::Deleted, p));
        }
        // A name whose earlier file was moved away in a move still settling waits for it:
        // the move is reported first, then what came to the name after it. Never past
        // `max_wait` from its own first change, though: a chain of renames kept busy must not
        // hold a file back for ever.
        let moving_from: std::collections::HashSet<PathBuf> = self
            .pending
            .values()
            .filter(|p| !waited(p))
            .filter_map(|p| p.old_path.clone())
            .collect();
        let mut settled: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(k, p)| {
                waited(p)
                    && (!moving_from.contains(*k)
                        || now.saturating_duration_since(p.first) >= max_wait)
            })
            .map(|(k, _)| k.clone())
            .collect();
        // Renames first, in the order they happened: a rename away from a name must not undo
        // what a new file at that name reports after it.
        settled.sort_by_key(|p| {
            let x = self.pending.get(p);
            (
                x.is_some_and(|x| x.old_path.is_none()),
                x.map(|x| x.renamed).unwrap_or(0),
                p.clone(),
            )
        });
        let mut named = std::collections::HashSet::new();
        for path in settled {
            if let Some(mut p) = self.pending.remove(&path) {
                // A rename from a name reported in this same round (a swap through a
                // temporary name): that name is not gone, so this is content arriving, not
                // a move.
                if p.old_path.as_ref().is_some_and(|o| named.contains(o)) {
                    p.old_path = None;
                    p.created = true;
                }
                named.insert(path.clone());
                let action = if p.old_path.is_some() {
                    Action::Renamed
                } else if p.created {
                    Action::Created
                } else {
                    Action::Modified
                };
                out.push(Ready {
                    action,
                    path,
                    old_path: p.old_path,
                    via: None,
                });
            }
        }
        out
    }

    /// Notices for drops and overflows seen since the last call (each reported once).
    pub fn take_notices(&mut self) -> Vec<EventBody> {
        let mut out = Vec::new();
        if self.dropped > 0 {
            let message = format!(
                "{} file changes dropped: more than {MAX_PENDING} files waiting to settle",
                self.dropped
            );
            let n = std::mem::take(&mut self.dropped);
            out.push(EventBody::notice("watch_dropped", message, n));
        }
        if self.overflows > 0 {
            out.push(EventBody::notice(
                "watch_overflow",
                "the kernel's file-event queue overflowed; the watched places were rescanned to recover what changed",
                std::mem::take(&mut self.overflows),
            ));
        }
        out
    }
}

/// A described change: the event, and the file as it was just before it was read (for the
/// index: a change after that instant is news again).
#[derive(Debug)]
pub struct Described {
    pub body: EventBody,
    /// `None` for a deleted file or one that is not a regular file; untrusted
    /// ([`crate::tree::Stamp::untrusted`]) when the file changed just before it was read.
    pub stamp: Option<crate::tree::Stamp>,
}

/// Files that appeared and have not settled, held open (at most [`MAX_HELD`]), so that one
/// deleted before it settles can still be read: the descriptor keeps its content alive.
/// Opened through `safe_fs` (a link, a FIFO or a device is never held).
#[derive(Debug, Default)]
pub struct Held(HashMap<PathBuf, std::fs::File>);

/// Descriptors held at most: a burst of new files holds the first ones.
pub const MAX_HELD: usize = 256;

impl Held {
    /// Takes a watch event into account: a new file is opened and held, a rename moves its
    /// descriptor with it.
    pub fn note(&mut self, ev: &WatchEvent) {
        match ev {
            WatchEvent::Created(p) | WatchEvent::MovedTo(p)
                if self.0.len() < MAX_HELD && !self.0.contains_key(p) =>
            {
                if let Ok(opened) = crate::safe_fs::open_regular(p) {
                    self.0.insert(p.clone(), opened.file);
                }
            }
            WatchEvent::Renamed { from, to } => {
                if let Some(f) = self.0.remove(from) {
                    self.0.insert(to.clone(), f);
                }
            }
            _ => {}
        }
    }

    /// The descriptor held for `path`, released from the hold.
    pub fn take(&mut self, path: &Path) -> Option<std::fs::File> {
        self.0.remove(path)
    }
}

/// What reading a settled change found, before any policy: the part of describing a
/// change that costs (hashing, classifying), done by a worker of [`crate::workers`].
#[derive(Debug)]
pub struct FileRead {
    /// The file as it was just before it was read (see [`Described::stamp`]).
    pub stamp: Option<crate::tree::Stamp>,
    pub outcome: ReadOutcome,
}

/// How reading a change ended.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A delete: nothing to read.
    Deleted,
    /// Not worth an event: a directory, or a file gone before it could be read.
    Skip,
    /// Not read, and why (a FIFO, permission denied): the event says so.
    Failed(String),
    /// Read (whole, or up to a limit the summary names).
    Scanned(Box<crate::scan::FileReport>),
}

/// Reads a settled change within `limits`: its stamp first, then its content through
/// `safe_fs` (FIFOs, sockets, devices and links are never opened).
pub fn read_change(
    ready: &Ready,
    edm: Option<std::sync::Arc<holdfast_shared::edm::Matcher>>,
    limits: crate::scan::ScanLimits,
    held: Option<std::fs::File>,
) -> FileRead {
    // Deleted, but held open since it appeared: what it held is read from the descriptor.
    if let Some(file) = held {
        let outcome = match crate::scan::scan_opened_with(file, &ready.path, edm, limits) {
            Ok(r) => ReadOutcome::Scanned(Box::new(r)),
            Err(e) => ReadOutcome::Failed(e.to_string()),
        };
        return FileRead {
            stamp: None,
            outcome,
        };
    }
    if ready.action == Action::Deleted {
        return FileRead {
            stamp: None,
            outcome: ReadOutcome::Deleted,
        };
    }
    let failed = |why: String| FileRead {
        stamp: None,
        outcome: ReadOutcome::Failed(why),
    };
    let stamp = match crate::safe_fs::stat_path(&ready.path) {
        Ok(st) if st.kind == crate::safe_fs::Kind::Regular => {
            let s = crate::tree::Stamp::of_stat(&st);
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(i64::MAX);
            if s.is_racy(now_ns) {
                s.untrusted()
            } else {
                s
            }
        }
        Ok(st) if st.kind == crate::safe_fs::Kind::Directory => {
            return FileRead {
                stamp: None,
                outcome: ReadOutcome::Skip,
            }
        }
        Ok(st) => return failed(crate::safe_fs::FsError::NotRegular(st.kind).to_string()),
        Err(e) if e.is_not_found() => {
            return FileRead {
                stamp: None,
                outcome: ReadOutcome::Skip,
            }
        }
        Err(e) => return failed(e.to_string()),
    };
    let outcome = match crate::scan::scan_file_with(&ready.path, edm, limits) {
        Ok(r) => ReadOutcome::Scanned(Box::new(r)),
        Err(e) => ReadOutcome::Failed(e.to_string()),
    };
    FileRead {
        stamp: Some(stamp),
        outcome,
    }
}

/// Builds a change's event body from what was read: lineage, destination, matched rules.
/// Cheap; done in order on the pipeline thread. `None` for what is not worth an event.
pub fn finish(
    ready: &Ready,
    read: FileRead,
    policies: &PolicySet,
    mounts: &crate::mounts::MountTable,
    lineage: &mut crate::lineage::Lineage,
) -> Option<Described> {
    let path = ready.path.to_string_lossy().to_string();
    let old_path = ready
        .old_path
        .as_ref()
        .map(|p| p.to_string_lossy().to_string());
    // A read by an app goes out through the app, a print job to its printer, wherever the
    // file lies.
    let (destination, process) = match ready.via.as_deref() {
        Some(Via::Upload(u)) => (
            Some(holdfast_shared::event::Destination {
                kind: u.app_kind.destination().into(),
                name: u.app.clone(),
                app_kind: Some(u.app_kind.as_str().into()),
                ..Default::default()
            }),
            Some(Box::new(u.process.clone())),
        ),
        Some(Via::Print { printed, .. }) => (
            Some(printed.as_deref().cloned().unwrap_or_else(|| {
                holdfast_shared::event::Destination {
                    kind: "print".into(),
                    ..Default::default()
                }
            })),
            None,
        ),
        None => (destination_of(&ready.path, &path, policies, mounts), None),
    };
    let mut activity = FileActivity {
        old_path,
        destination: destination.map(Box::new),
        process,
        ..FileActivity::new(ready.action, path)
    };
    let mut headers = Vec::new();
    let mut origin_records = 0;
    match read.outcome {
        ReadOutcome::Skip => return None,
        ReadOutcome::Deleted => {}
        ReadOutcome::Failed(why) => activity.error = Some(why),
        ReadOutcome::Scanned(r) => {
            // A file read only in part has no known hash: no lineage, no content identity.
            if let (true, Some((origin, records))) =
                (ready.via.is_some(), lineage.sighting(&r.sha256))
            {
                // Content read again: it links to where it was first seen, even there. A
                // print job is named for the file it was printed from.
                if matches!(ready.via.as_deref(), Some(Via::Print { .. })) {
                    activity.path.clone_from(&origin.path);
                }
                activity.origin = Some(Box::new(origin));
                origin_records = records;
                activity.sha256 = Some(r.sha256);
            } else if r.complete && matches!(ready.via.as_deref(), Some(Via::Print { .. })) {
                // A print job from content never seen: no place to link later copies to.
                activity.sha256 = Some(r.sha256);
            } else if r.complete {
                let link = lineage.link(
                    &r.sha256,
                    &activity.path,
                    crate::clock::now_ms(),
                    r.summary.records,
                    &r.entries,
                );
                activity.origin = link.origin.map(Box::new);
                origin_records = link.origin_records;
                activity.sha256 = Some(r.sha256);
            }
            activity.size = Some(r.size);
            activity.summary = Some(r.summary);
            headers = r.headers;
        }
    }
    activity.rules = policies.evaluate(&Subject {
        action: activity.action,
        path: &activity.path,
        summary: activity.summary.as_ref(),
        headers: &headers,
        destination: activity.destination.as_ref().map(|d| d.kind.as_str()),
        origin_records,
    });
    // A read by an app, a print job, is news only when what it read holds customer records.
    let customer = activity.summary.as_ref().is_some_and(|s| s.records > 0)
        || origin_records > 0
        || !activity.rules.is_empty();
    if ready.via.is_some() && !customer {
        return None;
    }
    Some(Described {
        body: EventBody::File(activity),
        stamp: read.stamp,
    })
}

/// Reads a settled change and builds its event body: hash, classification, matched rules
/// ([`read_change`] then [`finish`], with the default limits). Returns `None` for what is
/// not worth an event (a directory, a file gone before it could be read after a create).
pub fn describe(
    ready: &Ready,
    policies: &PolicySet,
    edm: Option<std::sync::Arc<holdfast_shared::edm::Matcher>>,
    mounts: &crate::mounts::MountTable,
    lineage: &mut crate::lineage::Lineage,
) -> Option<Described> {
    let read = read_change(ready, edm, crate::scan::ScanLimits::default(), None);
    finish(ready, read, policies, mounts, lineage)
}

/// Where a file is, if that is a way out: removable media or a share (from the mount
/// table), or a cloud-sync folder (from the policy).
pub fn destination_of(
    path: &Path,
    shown: &str,
    policies: &PolicySet,
    mounts: &crate::mounts::MountTable,
) -> Option<holdfast_shared::event::Destination> {
    mounts.destination_of(path).or_else(|| {
        policies
            .cloud_of(shown)
            .map(|name| holdfast_shared::event::Destination {
                kind: "cloud".into(),
                name: name.to_string(),
                ..Default::default()
            })
    })
}

/// True for paths the agent must not report: its own data directory.
pub fn is_own(path: &Path, data_dir: &Path) -> bool {
    path.starts_with(data_dir)
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;
    use WatchEvent::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// Feeds `events` one millisecond apart, then asks what is due `settle` later.
    fn check(events: Vec<WatchEvent>, want: &[(Action, &str, Option<&str>)]) {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(100));
        for (i, e) in events.into_iter().enumerate() {
            d.observe(e, t0 + Duration::from_millis(i as u64));
        }
        // Nothing is due before the burst has been quiet for the settle time...
        // (an outright delete is due at once).
        let mut early = d.due(t0 + Duration::from_millis(50));
        assert!(
            early.iter().all(|r| r.action == Action::Deleted),
            "{early:?}"
        );
        early.extend(d.due(t0 + Duration::from_secs(1)));
        let got: Vec<(Action, PathBuf, Option<PathBuf>)> = early
            .into_iter()
            .map(|r| (r.action, r.path, r.old_path))
            .collect();
        let mut all = got;
        all.sort_by(|a, b| a.1.cmp(&b.1));
        let want: Vec<(Action, PathBuf, Option<PathBuf>)> =
            want.iter().map(|(a, x, o)| (*a, p(x), o.map(p))).collect();
        assert_eq!(all, want);
        assert!(d.is_empty());
    }

    #[test]
    fn bursts_become_one_change() {
        check(
            vec![Created(p("/a")), Touched(p("/a")), Touched(p("/a"))],
            &[(Action::Created, "/a", None)],
        );
        check(
            vec![Touched(p("/a")), Touched(p("/a"))],
            &[(Action::Modified, "/a", None)],
        );
        // A download: temporary name, then renamed to its final name.
        check(
            vec![
                Created(p("/d.part")),
                Touched(p("/d.part")),
                MovedFrom(p("/d.part")),
                MovedTo(p("/d.csv")),
                Renamed {
                    from: p("/d.part"),
                    to: p("/d.csv"),
                },
            ],
            &[
                (Action::Created, "/d.csv", None),
                (Action::Deleted, "/d.part", None),
            ],
        );
        // A rename of a settled file.
        check(
            vec![
                MovedFrom(p("/x")),
                MovedTo(p("/y")),
                Renamed {
                    from: p("/x"),
                    to: p("/y"),
                },
            ],
            &[(Action::Renamed, "/y", Some("/x"))],
        );
        // Moved out of the watched places: a delete. Moved in: a create.
        check(
            vec![MovedFrom(p("/gone"))],
            &[(Action::Deleted, "/gone", None)],
        );
        check(vec![MovedTo(p("/in"))], &[(Action::Created, "/in", None)]);
        check(vec![Removed(p("/old"))], &[(Action::Deleted, "/old", None)]);
        // Created and deleted within a burst: a delete (dropped by the pipeline when the
        // index never knew the path; it may have replaced a known file).
        check(
            vec![Created(p("/tmp1")), Removed(p("/tmp1"))],
            &[(Action::Deleted, "/tmp1", None)],
        );
        check(vec![Overflow, Error("x".into())], &[]);
    }

    /// A file touched faster than it settles is read once it has waited the longest wait,
    /// so touching it every half second and deleting it later does not hide it; the next
    /// burst starts a new wait.
    #[test]
    fn a_file_that_never_settles_is_read_after_the_longest_wait() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(1);
        let mut d = Debouncer::new(settle);
        let half = Duration::from_millis(500);
        let mut read = Vec::new();
        for i in 0..30u32 {
            let now = t0 + half * i;
            d.observe(
                if i == 0 {
                    Created(p("/x"))
                } else {
                    Touched(p("/x"))
                },
                now,
            );
            read.extend(d.due(now).into_iter().map(|r| (i, r.action)));
        }
        // 15 s of touches every 0.5 s: read at 5 s and at 10 s (and at 15 s, the last
        // wait starting at 10.5 s is not over yet).
        assert_eq!(read, vec![(10, Action::Created), (21, Action::Modified)]);
        d.observe(Removed(p("/x")), t0 + half * 30);
        let last = d.due(t0 + half * 30);
        assert_eq!(
            last.iter().map(|r| r.action).collect::<Vec<_>>(),
            vec![Action::Deleted],
            "once read, its delete is news"
        );
    }

    /// Renaming a file back and forth while it is written does not restart its wait: it is
    /// read within the longest wait of its first change, under the name it has then.
    #[test]
    fn renaming_a_busy_file_does_not_restart_its_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::from_secs(1));
        let half = Duration::from_millis(500);
        d.observe(Created(p("/x.part")), t0);
        let mut read = Vec::new();
        for i in 1..20u32 {
            let now = t0 + half * i;
            let (from, to) = if i % 2 == 1 {
                ("/x.part", "/x")
            } else {
                ("/x", "/x.part")
            };
            d.observe(
                Renamed {
                    from: p(from),
                    to: p(to),
                },
                now,
            );
            d.observe(Touched(p(to)), now);
            read.extend(
                d.due(now)
                    .into_iter()
                    .filter(|r| r.action != Action::Deleted)
                    .map(|r| (i, r.action, r.path)),
            );
        }
        // Read at 5 s (the tenth half second), as created: the renames did not reset it.
        assert_eq!(read.first(), Some(&(10, Action::Created, p("/x.part"))));
    }

    #[test]
    fn overflow_and_drops_are_reported_once() {
        let mut d = Debouncer::new(Duration::from_millis(1));
        d.observe(Overflow, Instant::now());
        d.dropped = 3;
        let n = d.take_notices();
        assert_eq!(n.len(), 2);
        assert!(matches!(&n[0], EventBody::Notice(x) if x.kind == "watch_dropped" && x.count == 3));
        assert!(d.take_notices().is_empty());
    }

    #[test]
    fn describe_reads_and_evaluates() {
        let (dir, f) = holdfast_io::testing::scratch("c.csv");
        let body = holdfast_shared::testkit::contacts_csv(60);
        std::fs::write(&f, &body).unwrap();
        let set = PolicySet::default_pack("/home/u").unwrap();
        let ready = Ready::new(Action::Created, f.clone());
        let no_mounts = crate::mounts::MountTable::default();
        let mut lineage = crate::lineage::Lineage::default();
        let Some(Described {
            body: EventBody::File(a),
            stamp,
        }) = describe(&ready, &set, None, &no_mounts, &mut lineage)
        else {
            panic!()
        };
        let meta = std::fs::metadata(&f).unwrap();
        let s = crate::tree::Stamp::of(&meta);
        assert!(
            stamp == Some(s) || stamp == Some(s.untrusted()),
            "the file as it was read: {stamp:?}"
        );
        assert_eq!(a.summary.as_ref().map(|s| s.records), Some(60));
        assert_eq!(
            a.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["crm-export.bulk-contacts"]
        );
        // A directory or a vanished file yields nothing; a delete yields a bare event.
        assert!(describe(
            &Ready::new(Action::Created, dir.path().to_path_buf()),
            &set,
            None,
            &no_mounts,
            &mut lineage
        )
        .is_none());
        std::fs::remove_file(&f).unwrap();
        assert!(describe(&ready, &set, None, &no_mounts, &mut lineage).is_none());
        let del = describe(
            &Ready::new(Action::Deleted, f),
            &set,
            None,
            &no_mounts,
            &mut lineage,
        );
        assert!(matches!(
            del,
            Some(Described {
                body: EventBody::File(FileActivity {
                    action: Action::Deleted,
                    sha256: None,
                    ..
                }),
                stamp: None,
            })
        ));
    }
}
