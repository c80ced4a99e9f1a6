//! Nothing missed: a bounded index of every file under the watched places (a stamp per
//! path hash), taken at start; a scan of each folder that appears (its files may predate its
//! watch); a rescan against the index when the kernel dropped events; and polling of the
//! places the kernel would not let us watch. What it finds becomes ordinary watch events for
//! the debouncer, so a file found twice is still reported once.

use crate::tree::{self, Limits, Stamp};
use crate::watch::WatchEvent;
use holdfast_shared::event::{AgentNotice, Coverage, EventBody};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files indexed, at most (about 40 bytes each).
pub const MAX_INDEX: usize = 2_000_000;
/// One walk, at most.
const WALK: Limits = Limits {
    max_files: MAX_INDEX,
    max_depth: 64,
};
/// Rescans after overflows, at most this often (a burst overflows again and again).
const RESCAN_GAP: Duration = Duration::from_millis(500);
/// A new folder is scanned again this long after it appeared: the watcher reports a folder
/// before it has watched it, so files written in between are found only by a second look.
const RECHECK_AFTER: Duration = Duration::from_millis(300);
/// New folders waiting for their second look, at most; beyond, a rescan of everything.
const MAX_RECHECK: usize = 10_000;

fn key(path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// The file index and the places it covers.
#[derive(Debug)]
pub struct Rescanner {
    index: HashMap<u64, Stamp>,
    watched: Vec<PathBuf>,
    polled: Vec<PathBuf>,
    failed: Vec<PathBuf>,
    skip: PathBuf,
    poll_every: Duration,
    last_poll: Instant,
    rescan_due: bool,
    last_rescan: Option<Instant>,
    dirs: u64,
    index_full: bool,
    limit_noticed: bool,
    limit_pending: Option<PathBuf>,
    /// Rescans done after overflows.
    pub rescans: u64,
    /// A rescan ran: the watches should be renewed too (folders made while events were
    /// lost are not watched yet).
    renew_watches: bool,
    /// New folders to look at again, and when.
    recheck: std::collections::VecDeque<(PathBuf, Instant)>,
}

impl Rescanner {
    /// Indexes what is already there (silently: it was there before us).
    pub fn start(
        watched: Vec<PathBuf>,
        polled: Vec<PathBuf>,
        failed: Vec<PathBuf>,
        skip: PathBuf,
        poll_every: Duration,
        now: Instant,
    ) -> Rescanner {
        let mut r = Rescanner {
            index: HashMap::new(),
            watched,
            polled,
            failed,
            skip,
            poll_every,
            last_poll: now,
            rescan_due: false,
            last_rescan: None,
            dirs: 0,
            index_full: false,
            limit_noticed: false,
            limit_pending: None,
            rescans: 0,
            renew_watches: false,
            recheck: std::collections::VecDeque::new(),
        };
        for root in r.watched.clone().iter().chain(r.polled.clone().iter()) {
            r.baseline(root);
        }
        r
    }

    /// Indexes what is under `root` now, silently.
    fn baseline(&mut self, root: &Path) {
        let skip = self.skip.clone();
        let mut found = Vec::new();
        let (dirs, _) = tree::visit(root, &skip, WALK, |p, s| found.push((key(&p), s)));
        self.dirs += dirs;
        for (k, s) in found {
            if self.index.len() >= MAX_INDEX && !self.index.contains_key(&k) {
                self.index_full = true;
                continue;
            }
            self.index.insert(k, s);
        }
    }

    /// What is under `root` that the index does not know, or knows in another state.
    fn changes_under(&self, root: &Path) -> (u64, Vec<WatchEvent>) {
        let mut out = Vec::new();
        let (dirs, _) = tree::visit(root, &self.skip, WALK, |p, s| {
            match self.index.get(&key(&p)) {
                None => out.push(WatchEvent::Created(p)),
                Some(old) if *old != s => out.push(WatchEvent::Touched(p)),
                Some(_) => {}
            }
        });
        (dirs, out)
    }

    fn put(&mut self, path: &Path, s: Stamp) {
        if self.index.len() >= MAX_INDEX && !self.index.contains_key(&key(path)) {
            self.index_full = true;
            return;
        }
        self.index.insert(key(path), s);
    }

    fn under(&self, p: &Path) -> Option<PathBuf> {
        self.watched
            .iter()
            .chain(self.polled.iter())
            .find(|r| p.starts_with(r))
            .cloned()
    }

    /// One watch event in, the events it stands for out: a folder that appeared brings the
    /// files already in it; an overflow schedules a rescan; a watch limit turns its root
    /// over to polling.
    pub fn expand(&mut self, ev: WatchEvent) -> Vec<WatchEvent> {
        match &ev {
            WatchEvent::DirAppeared(dir) => {
                let (dirs, found) = self.changes_under(dir);
                self.dirs += dirs;
                if self.recheck.len() < MAX_RECHECK {
                    self.recheck
                        .push_back((dir.clone(), Instant::now() + RECHECK_AFTER));
                } else {
                    self.rescan_due = true;
                }
                found
            }
            WatchEvent::MovedTo(p) | WatchEvent::Renamed { to: p, .. } if p.is_dir() => {
                let (dirs, found) = self.changes_under(p);
                self.dirs += dirs;
                let mut out = vec![ev.clone()];
                out.extend(found);
                out
            }
            WatchEvent::Overflow => {
                self.rescan_due = true;
                vec![ev]
            }
            WatchEvent::LimitReached(at) => {
                if let Some(root) = self.under(at) {
                    if let Some(i) = self.watched.iter().position(|r| *r == root) {
                        self.watched.remove(i);
                        self.polled.push(root);
                    }
                }
                self.limit_pending = Some(at.clone());
                // What was created while watches were failing is found by the rescan.
                self.rescan_due = true;
                Vec::new()
            }
            _ => vec![ev],
        }
    }

    /// Takes on a place that appeared (a USB stick, a share): what is on it now is its
    /// baseline; changes from now on are news. `polled` when it cannot be watched.
    pub fn add_root(&mut self, root: PathBuf, polled: bool) {
        if self.watched.contains(&root) || self.polled.contains(&root) {
            return;
        }
        self.baseline(&root);
        if polled {
            self.polled.push(root);
        } else {
            self.watched.push(root);
        }
    }

    /// Whether `path` is as it was when last reported (or indexed): then a late or repeated
    /// watch event about it is not news. The kernel can deliver a file's events long after
    /// they happened (a queue drained after a stall), and a rescan may have reported the
    /// file meanwhile.
    pub fn unchanged(&self, path: &Path) -> bool {
        match (self.index.get(&key(path)), crate::safe_fs::stat_path(path)) {
            (Some(old), Ok(st)) if st.kind == crate::safe_fs::Kind::Regular => {
                *old == Stamp::of_stat(&st)
            }
            _ => false,
        }
    }

    /// Whether `path` lies in a place already covered.
    pub fn covers(&self, path: &Path) -> bool {
        self.under(path).is_some()
    }

    /// Lets go of a place that went away (unmounted).
    pub fn remove_root(&mut self, root: &Path) {
        self.watched.retain(|r| r != root);
        self.polled.retain(|r| r != root);
    }

    /// The watched roots whose watches should be renewed now (once per rescan).
    pub fn take_renewal(&mut self) -> Option<Vec<PathBuf>> {
        if std::mem::take(&mut self.renew_watches) && !self.watched.is_empty() {
            Some(self.watched.clone())
        } else {
            None
        }
    }

    /// Asks for a rescan of everything (changes were dropped for want of room).
    pub fn request_rescan(&mut self) {
        self.rescan_due = true;
    }

    /// Work that is due by `now`: a rescan of everything after an overflow, a poll of the
    /// places that cannot be watched.
    pub fn due(&mut self, now: Instant) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        while self.recheck.front().is_some_and(|(_, t)| *t <= now) {
            if let Some((dir, _)) = self.recheck.pop_front() {
                out.extend(self.changes_under(&dir).1);
            }
        }
        let rescan_allowed = self
            .last_rescan
            .is_none_or(|t| now.saturating_duration_since(t) >= RESCAN_GAP);
        if self.rescan_due && rescan_allowed {
            self.rescan_due = false;
            self.last_rescan = Some(now);
            self.rescans += 1;
            self.renew_watches = true;
            for root in self
                .watched
                .clone()
                .iter()
                .chain(self.polled.clone().iter())
            {
                out.extend(self.changes_under(root).1);
            }
            self.last_poll = now;
        } else if !self.polled.is_empty()
            && now.saturating_duration_since(self.last_poll) >= self.poll_every
        {
            self.last_poll = now;
            for root in self.polled.clone() {
                out.extend(self.changes_under(&root).1);
            }
        }
        out
    }

    /// How long the pipeline may sleep before [`Rescanner::due`] has work: `None` when only
    /// an event can create work.
    pub fn next_wake(&self, now: Instant) -> Option<Duration> {
        let recheck = self
            .recheck
            .front()
            .map(|(_, t)| t.saturating_duration_since(now));
        let other = self.next_other(now);
        match (recheck, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_other(&self, now: Instant) -> Option<Duration> {
        if self.rescan_due {
            return Some(
                RESCAN_GAP.saturating_sub(
                    self.last_rescan
                        .map(|t| now.saturating_duration_since(t))
                        .unwrap_or(RESCAN_GAP),
                ),
            );
        }
        if self.polled.is_empty() {
            return None;
        }
        Some(
            self.poll_every
                .saturating_sub(now.saturating_duration_since(self.last_poll)),
        )
    }

    /// Notes what a described change left on disk, so later rescans skip it.
    pub fn record(&mut self, body: &EventBody) {
        let EventBody::File(f) = body else { return };
        if let Some(old) = &f.old_path {
            self.index.remove(&key(Path::new(old)));
        }
        let path = Path::new(&f.path);
        match crate::safe_fs::stat_path(path) {
            Ok(st) if st.kind == crate::safe_fs::Kind::Regular => {
                self.put(path, Stamp::of_stat(&st))
            }
            _ => {
                self.index.remove(&key(path));
            }
        }
    }

    /// Notices to send: the watch limit (once per agent run), a full index.
    pub fn take_notices(&mut self) -> Vec<EventBody> {
        let mut out = Vec::new();
        if let Some(at) = self.limit_pending.take() {
            if !self.limit_noticed {
                self.limit_noticed = true;
                out.push(EventBody::Notice(AgentNotice {
                    kind: "watch_limit".into(),
                    message: format!(
                        "the kernel's limit on file watches was reached at {}; {} place(s) are now scanned every {} instead of watched",
                        at.display(),
                        self.polled.len(),
                        humantime::format_duration(self.poll_every)
                    ),
                    count: 1,
                    counts: Default::default(),
                }));
            }
        }
        out
    }

    /// What is watched, polled and indexed, for the status and the heartbeat.
    pub fn coverage(&self) -> Coverage {
        Coverage {
            watched_roots: self.watched.len() as u32,
            polled_roots: self.polled.len() as u32,
            failed_roots: self.failed.len() as u32,
            dirs: self.dirs,
            files: self.index.len() as u64,
            limit_reached: self.limit_noticed || self.limit_pending.is_some(),
            index_full: self.index_full,
            reads: String::new(),
            reads_dropped: 0,
            reads_unmarked: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(evs: &[WatchEvent], root: &Path) -> Vec<String> {
        let mut v: Vec<String> = evs
            .iter()
            .map(|e| match e {
                WatchEvent::Created(p) => format!("+{}", p.strip_prefix(root).unwrap().display()),
                WatchEvent::Touched(p) => format!("~{}", p.strip_prefix(root).unwrap().display()),
                other => format!("{other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn folders_that_appear_and_overflows_find_exactly_what_is_new_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("watched");
        write(&root, "old.csv", "a");
        let t0 = Instant::now();
        let mut r = Rescanner::start(
            vec![root.clone()],
            vec![],
            vec![],
            dir.path().join("data"),
            Duration::from_secs(30),
            t0,
        );
        assert_eq!(r.coverage().files, 1);
        assert!(r.unchanged(&root.join("old.csv")), "indexed as it is");
        assert!(!r.unchanged(&root.join("missing.csv")));
        // A folder appears with files already in it.
        write(&root, "new/a/1.csv", "x");
        write(&root, "new/a/b/2.csv", "y");
        let got = r.expand(WatchEvent::DirAppeared(root.join("new")));
        assert_eq!(names(&got, &root), ["+new/a/1.csv", "+new/a/b/2.csv"]);
        // Described and recorded: a later rescan does not report them again.
        for p in ["new/a/1.csv", "new/a/b/2.csv", "old.csv"] {
            r.record(&EventBody::File(holdfast_shared::event::FileActivity {
                action: holdfast_shared::event::Action::Created,
                path: root.join(p).display().to_string(),
                old_path: None,
                size: None,
                sha256: None,
                summary: None,
                error: None,
                rules: vec![],
                destination: None,
                origin: None,
                process: None,
                bulk: None,
            }));
        }
        // Events were lost: one new file, one changed, the rest unchanged.
        write(&root, "lost.csv", "z");
        write(&root, "old.csv", "changed");
        assert!(!r.unchanged(&root.join("old.csv")), "changed since");
        assert_eq!(r.expand(WatchEvent::Overflow), vec![WatchEvent::Overflow]);
        assert_eq!(r.next_wake(t0), Some(Duration::ZERO));
        let got = r.due(t0);
        assert_eq!(names(&got, &root), ["+lost.csv", "~old.csv"]);
        assert_eq!(r.rescans, 1);
        assert_eq!(
            r.take_renewal(),
            Some(vec![root.clone()]),
            "watches renewed once"
        );
        assert_eq!(r.take_renewal(), None);
        // A second overflow right away waits for the gap.
        r.expand(WatchEvent::Overflow);
        assert!(r.due(t0).is_empty());
        assert_eq!(
            r.due(t0 + RESCAN_GAP).len(),
            2,
            "not recorded yet: found again"
        );
    }

    #[test]
    fn a_new_folder_gets_a_second_look_for_files_written_before_its_watch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("w");
        std::fs::create_dir_all(&root).unwrap();
        let t0 = Instant::now();
        let mut r = Rescanner::start(
            vec![root.clone()],
            vec![],
            vec![],
            dir.path().join("d"),
            Duration::from_secs(30),
            t0,
        );
        write(&root, "new/first.csv", "1");
        let got = r.expand(WatchEvent::DirAppeared(root.join("new")));
        assert_eq!(names(&got, &root), ["+new/first.csv"]);
        // Written after the first look, before the watcher watched the folder.
        write(&root, "new/late.csv", "2");
        let wake = r.next_wake(Instant::now()).unwrap();
        assert!(wake <= RECHECK_AFTER, "{wake:?}");
        let got = r.due(Instant::now() + RECHECK_AFTER);
        assert_eq!(
            names(&got, &root),
            ["+new/first.csv", "+new/late.csv"],
            "not recorded yet: both"
        );
        assert!(
            r.due(Instant::now() + RECHECK_AFTER * 2).is_empty(),
            "one second look"
        );
        assert_eq!(r.next_wake(Instant::now()), None);
    }

    #[test]
    fn a_watch_limit_turns_the_root_over_to_polling_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        write(&root, "a.csv", "a");
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut r = Rescanner::start(
            vec![root.clone()],
            vec![],
            vec![],
            dir.path().join("d"),
            every,
            t0,
        );
        assert_eq!(r.next_wake(t0), None, "watched only: events wake us");
        assert!(r
            .expand(WatchEvent::LimitReached(root.join("deep/dir")))
            .is_empty());
        let c = r.coverage();
        assert_eq!(
            (c.watched_roots, c.polled_roots, c.limit_reached),
            (0, 1, true)
        );
        let n = r.take_notices();
        assert_eq!(n.len(), 1);
        assert!(matches!(&n[0], EventBody::Notice(x) if x.kind == "watch_limit"));
        r.expand(WatchEvent::LimitReached(root.join("other")));
        assert!(r.take_notices().is_empty(), "once per run");
        // Rescan now (what was created meanwhile), then polling on its period.
        assert!(r.due(t0).is_empty());
        write(&root, "b.csv", "b");
        assert!(r.due(t0 + Duration::from_secs(1)).is_empty(), "not yet");
        assert_eq!(
            r.next_wake(t0 + Duration::from_secs(1)),
            Some(Duration::from_secs(9))
        );
        assert_eq!(names(&r.due(t0 + every), &root), ["+b.csv"]);
    }
}
