//! Nothing missed: a bounded index of every file under the watched places (a stamp per
//! path hash), taken at start; a scan of each folder that appears (its files may predate its
//! watch); a rescan against the index when the kernel dropped events; and polling of the
//! places the kernel would not let us watch. What it finds becomes ordinary watch events for
//! the debouncer, so a file found twice is still reported once.

use crate::spool::{fingerprint, IndexChange};
use crate::tree::{self, ChangeClock, Limits, Stamp};
use crate::watch::WatchEvent;
use holdfast_shared::event::{Action, AgentNotice, Coverage, EventBody};
use std::collections::{HashMap, HashSet};
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

/// The index key of a path: a hash, so the index holds 40 bytes per file in memory.
pub fn key(path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// The file index and the places it covers.
#[derive(Debug)]
pub struct Rescanner {
    /// Key → the file as last reported or indexed, and a fingerprint of the content last
    /// reported (0: never read).
    index: HashMap<u64, (Stamp, u64)>,
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
    /// What the start found against the index kept from the last run.
    catch_up: Option<CatchUp>,
    /// The first start's baseline, to be kept as the persistent index.
    fresh: Option<Fresh>,
}

/// What a first start found: the baseline, and what changed after the watch began.
#[derive(Debug, Default)]
pub struct Fresh {
    /// The baseline as index rows, for the spool.
    pub rows: Vec<IndexChange>,
    /// Files changed at or after the moment the watch began (`Created`): news, though the
    /// first look found them. Left out of the index, so their own watch events are news too.
    pub arrived: Vec<WatchEvent>,
}

/// What changed on disk while the agent was not running: the start's walk against the
/// index kept from the last run.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// Files created (`Created`) or changed (`Touched`) since they were last reported.
    pub events: Vec<WatchEvent>,
    /// Index keys of every file the walk found.
    pub seen: HashSet<u64>,
    /// A walk stopped at a limit: what it did not reach is not known to be deleted.
    pub truncated: bool,
}

impl Rescanner {
    /// Indexes what is there. With `saved` (the index kept by the last run), what differs
    /// from it is the catch-up ([`Rescanner::take_catch_up`]): created or changed while the
    /// agent was not running. Without it (a first start), what is there is the baseline,
    /// silently: it was there before us ([`Rescanner::take_fresh`]), unless it changed at or
    /// after `watching` (when the watch began).
    pub fn start(
        watched: Vec<PathBuf>,
        polled: Vec<PathBuf>,
        failed: Vec<PathBuf>,
        skip: PathBuf,
        poll_every: Duration,
        (now, watching): (Instant, ChangeClock),
        saved: Option<HashMap<u64, (Stamp, u64)>>,
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
            catch_up: None,
            fresh: None,
        };
        let roots: Vec<PathBuf> = r.watched.iter().chain(r.polled.iter()).cloned().collect();
        match saved {
            None => {
                let mut fresh = Fresh::default();
                for root in &roots {
                    let arrived = r.baseline_into(root, watching, Some(&mut fresh.rows));
                    fresh.arrived.extend(arrived);
                }
                r.fresh = Some(fresh);
            }
            Some(saved) => {
                r.index = saved;
                let mut c = CatchUp::default();
                for root in &roots {
                    let (dirs, truncated) = tree::visit(root, &r.skip, WALK, |p, s| {
                        let k = key(&p);
                        c.seen.insert(k);
                        match r.index.get(&k) {
                            None => c.events.push(WatchEvent::Created(p)),
                            Some((old, _)) if *old != s => c.events.push(WatchEvent::Touched(p)),
                            Some(_) => {}
                        }
                    });
                    r.dirs += dirs;
                    c.truncated |= truncated;
                }
                r.index_full = r.index.len() >= MAX_INDEX;
                r.catch_up = Some(c);
            }
        }
        r
    }

    /// The first start's baseline, once: the caller keeps its rows in the spool and
    /// reports what arrived.
    pub fn take_fresh(&mut self) -> Option<Fresh> {
        self.fresh.take()
    }

    /// What changed while the agent was not running, once (`None` on a first start).
    pub fn take_catch_up(&mut self) -> Option<CatchUp> {
        self.catch_up.take()
    }

    /// Of the indexed files the start's walk did not find (`unseen`, from the spool), those
    /// under the places walked: deleted while the agent was not running. None when a walk
    /// was cut short by a limit.
    pub fn vanished(&self, truncated: bool, unseen: Vec<(u64, PathBuf)>) -> Vec<WatchEvent> {
        if truncated {
            return Vec::new();
        }
        unseen
            .into_iter()
            .filter(|(_, p)| self.under(p).is_some())
            .map(|(_, p)| WatchEvent::Removed(p))
            .collect()
    }

    /// Indexes what is under `root` now, silently, and lists the rows taken in `rows`.
    /// What changed at or after `since` is not indexed but returned, as `Created`: news.
    fn baseline_into(
        &mut self,
        root: &Path,
        since: ChangeClock,
        mut rows: Option<&mut Vec<IndexChange>>,
    ) -> Vec<WatchEvent> {
        let skip = self.skip.clone();
        let (mut found, mut arrived) = (Vec::new(), Vec::new());
        let (dirs, _) = tree::visit_all(root, &skip, WALK, |p, st| {
            if st.kind == crate::safe_fs::Kind::Regular {
                if since.changed_since(st) {
                    arrived.push(WatchEvent::Created(p));
                } else {
                    found.push((p, Stamp::of_stat(st)));
                }
            }
        });
        self.dirs += dirs;
        for (p, s) in found {
            let k = key(&p);
            if self.index.len() >= MAX_INDEX && !self.index.contains_key(&k) {
                self.index_full = true;
                continue;
            }
            self.index.insert(k, (s, 0));
            if let Some(rows) = rows.as_deref_mut() {
                rows.push(IndexChange::Put {
                    key: k,
                    path: p,
                    stamp: s,
                    sha256: None,
                });
            }
        }
        arrived
    }

    /// What is under `root` that the index does not know, or knows in another state.
    fn changes_under(&self, root: &Path) -> (u64, Vec<WatchEvent>) {
        let mut out = Vec::new();
        let (dirs, _) = tree::visit(root, &self.skip, WALK, |p, s| {
            match self.index.get(&key(&p)) {
                None => out.push(WatchEvent::Created(p)),
                Some((old, _)) if *old != s => out.push(WatchEvent::Touched(p)),
                Some(_) => {}
            }
        });
        (dirs, out)
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
    /// baseline; changes from now on are news, and so is what changed at or after `since`
    /// (the last moment it was known not to be there: a file copied onto a stick the moment
    /// it was plugged in), returned as `Created`. `polled` when it cannot be watched.
    pub fn add_root(&mut self, root: PathBuf, polled: bool, since: ChangeClock) -> Vec<WatchEvent> {
        if self.watched.contains(&root) || self.polled.contains(&root) {
            return Vec::new();
        }
        let arrived = self.baseline_into(&root, since, None);
        if polled {
            self.polled.push(root);
        } else {
            self.watched.push(root);
        }
        arrived
    }

    /// Whether `path` is as it was when last reported (or indexed): then a late or repeated
    /// watch event about it is not news. The kernel can deliver a file's events long after
    /// they happened (a queue drained after a stall), and a rescan may have reported the
    /// file meanwhile.
    pub fn unchanged(&self, path: &Path) -> bool {
        match (self.index.get(&key(path)), crate::safe_fs::stat_path(path)) {
            (Some((old, _)), Ok(st)) if st.kind == crate::safe_fs::Kind::Regular => {
                *old == Stamp::of_stat(&st)
            }
            _ => false,
        }
    }

    /// Whether anything is indexed at `path`: a delete there is news only then (a file
    /// never reported nor there at the start was never known).
    pub fn knows(&self, path: &Path) -> bool {
        self.index.contains_key(&key(path))
    }

    /// Whether a described change only repeats what was last reported for its path: a
    /// create or change whose content is the one last reported (a file rewritten as it
    /// was, one read again because its stamp could not be trusted, one found again by a
    /// catch-up). Renames and deletes are always news.
    pub fn is_repeat(&self, body: &EventBody) -> bool {
        let EventBody::File(f) = body else {
            return false;
        };
        let fp = fingerprint(f.sha256.as_deref());
        f.old_path.is_none()
            && matches!(f.action, Action::Created | Action::Modified)
            && fp != 0
            && self
                .index
                .get(&key(Path::new(&f.path)))
                .is_some_and(|(_, c)| *c == fp)
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

    /// Notes what a described change left on disk (`stamp`: the file as it was before it
    /// was read, `None` when it is gone or not a regular file), so later rescans skip it.
    /// Returns the same changes for the persistent index, to be sealed with the event.
    pub fn record(&mut self, body: &EventBody, stamp: Option<Stamp>) -> Vec<IndexChange> {
        let EventBody::File(f) = body else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(old) = &f.old_path {
            let k = key(Path::new(old));
            self.index.remove(&k);
            out.push(IndexChange::Remove { key: k });
        }
        let path = PathBuf::from(&f.path);
        let k = key(&path);
        match stamp {
            Some(s) if self.index.len() < MAX_INDEX || self.index.contains_key(&k) => {
                self.index.insert(k, (s, fingerprint(f.sha256.as_deref())));
                out.push(IndexChange::Put {
                    key: k,
                    path,
                    stamp: s,
                    sha256: f.sha256.clone(),
                });
            }
            Some(_) => self.index_full = true,
            None => {
                self.index.remove(&k);
                out.push(IndexChange::Remove { key: k });
            }
        }
        out
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

    /// A rescanner of `root` alone (watched, no polled roots, nothing skipped) keeping its
    /// index in `data`, with a full rescan every `every`.
    fn watching(root: &Path, data: PathBuf, every: Duration, t0: Instant) -> Rescanner {
        Rescanner::start(
            vec![root.to_path_buf()],
            vec![],
            vec![],
            data,
            every,
            (t0, a_tick_later()),
            None,
        )
    }

    /// The change clock a tick after what was just written: the kernel's file times are
    /// coarse, so a file written in the same tick as the clock was read counts as after.
    pub(super) fn a_tick_later() -> ChangeClock {
        std::thread::sleep(Duration::from_millis(20));
        ChangeClock::now()
    }

    #[test]
    fn a_first_look_keeps_as_baseline_only_what_changed_before_the_watch_began() {
        let (dir, root) = holdfast_io::testing::scratch("Downloads");
        write(&root, "there.csv", "a");
        write(&root, "touched.csv", "b");
        let began = a_tick_later();
        // Between the watch's start and the first look: a new file, and one whose inode
        // changed (its modification time set back cannot hide it: the change time is the
        // kernel's).
        write(&root, "sub/arrived.csv", "c");
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("touched.csv"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let mut r = Rescanner::start(
            vec![root.clone()],
            vec![],
            vec![],
            dir.path().join("data"),
            Duration::from_secs(30),
            (Instant::now(), began),
            None,
        );
        let fresh = r.take_fresh().unwrap();
        assert_eq!(
            names(&fresh.arrived, &root),
            ["+sub/arrived.csv", "+touched.csv"]
        );
        assert_eq!(
            fresh.rows.len(),
            1,
            "the baseline is what was there: {:?}",
            fresh.rows
        );
        assert!(r.unchanged(&root.join("there.csv")));
        assert!(
            !r.unchanged(&root.join("sub/arrived.csv")),
            "its own watch event is news too"
        );
        // A place that appears: what was copied onto it since the last look at the mounts
        // is news; what it held before is its baseline.
        let (_d2, stick) = holdfast_io::testing::scratch("stick");
        write(&stick, "old.csv", "o");
        let looked = a_tick_later();
        write(&stick, "copied.csv", "c");
        let got = r.add_root(stick.clone(), false, looked);
        assert_eq!(names(&got, &stick), ["+copied.csv"]);
        assert!(r.unchanged(&stick.join("old.csv")));
        assert!(r.add_root(stick, false, looked).is_empty(), "once");
    }

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
        let (dir, root) = holdfast_io::testing::scratch("watched");
        write(&root, "old.csv", "a");
        let t0 = Instant::now();
        let mut r = watching(&root, dir.path().join("data"), Duration::from_secs(30), t0);
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
            let stamp = Stamp::of(&std::fs::metadata(root.join(p)).unwrap());
            r.record(
                &EventBody::File(holdfast_shared::event::FileActivity::new(
                    holdfast_shared::event::Action::Created,
                    root.join(p).display().to_string(),
                )),
                Some(stamp),
            );
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
        let (dir, root) = holdfast_io::testing::scratch("w");
        std::fs::create_dir_all(&root).unwrap();
        let t0 = Instant::now();
        let mut r = watching(&root, dir.path().join("d"), Duration::from_secs(30), t0);
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
        let (dir, root) = holdfast_io::testing::scratch("share");
        write(&root, "a.csv", "a");
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut r = watching(&root, dir.path().join("d"), every, t0);
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

/// The index and its catch-up against a model: random creates, writes, renames and deletes,
/// with crashes (whatever was not sealed is lost) and restarts (catch-up from the spool's
/// index), checked against what must have been reported.
#[cfg(test)]
mod model {
    use super::*;
    use crate::pipeline::{describe, Debouncer};
    use crate::spool::Spool;
    use holdfast_shared::policy::PolicySet;
    use holdfast_shared::time::UnixMs;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u8),
        Rename(u8, u8),
        Delete(u8),
        /// The running agent reads what settled and seals it.
        Settle,
        /// kill -9: pending changes are lost with the process.
        Crash,
        /// Start again (no-op while running).
        Start,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6).prop_map(Op::Write),
            1 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => (0u8..6).prop_map(Op::Delete),
            2 => Just(Op::Settle),
            1 => Just(Op::Crash),
            1 => Just(Op::Start),
        ]
    }

    /// One agent run: its index, its debouncer and the watch events it has been told.
    struct Run {
        rescanner: Rescanner,
        debouncer: Debouncer,
        queue: Vec<WatchEvent>,
    }

    struct World {
        _dir: tempfile::TempDir,
        root: PathBuf,
        skip: PathBuf,
        spool_path: PathBuf,
        run: Option<Run>,
        writes: usize,
        set: PolicySet,
        /// Every sealed file event: (path, old path, SHA-256 or none for a delete).
        sealed: Vec<(PathBuf, Option<PathBuf>, Option<String>)>,
        /// When the first run's watch began: after the baseline was written.
        began: ChangeClock,
    }

    impl World {
        fn new() -> World {
            let (dir, root) = holdfast_io::testing::scratch("Downloads");
            std::fs::create_dir_all(&root).unwrap();
            // Files there before the first start are the baseline, never reported.
            std::fs::write(root.join("before.txt"), "old").unwrap();
            World {
                began: super::tests::a_tick_later(),
                root,
                skip: dir.path().join("data"),
                spool_path: dir.path().join("spool.db"),
                _dir: dir,
                run: None,
                writes: 0,
                set: PolicySet::default_pack("/home/u").unwrap(),
                sealed: Vec::new(),
            }
        }

        fn path(&self, n: u8) -> PathBuf {
            self.root.join(format!("f{n}.csv"))
        }

        fn tell(&mut self, evs: Vec<WatchEvent>) {
            if let Some(run) = self.run.as_mut() {
                run.queue.extend(evs);
            }
        }

        fn start(&mut self) {
            if self.run.is_some() {
                return;
            }
            let spool = Spool::open(&self.spool_path).unwrap();
            let saved = spool.index_load().unwrap();
            let mut rescanner = Rescanner::start(
                vec![self.root.clone()],
                vec![],
                vec![],
                self.skip.clone(),
                Duration::from_secs(30),
                (Instant::now(), self.began),
                saved,
            );
            let mut queue = Vec::new();
            if let Some(fresh) = rescanner.take_fresh() {
                spool.index_replace(&fresh.rows).unwrap();
                queue.extend(fresh.arrived);
            }
            if let Some(c) = rescanner.take_catch_up() {
                let unseen = spool.index_unseen(&c.seen).unwrap();
                queue.extend(c.events);
                queue.extend(rescanner.vanished(c.truncated, unseen));
            }
            self.run = Some(Run {
                rescanner,
                debouncer: Debouncer::new(Duration::from_millis(10)),
                queue,
            });
        }

        /// What the daemon's loop does with settled changes, in one sealed transaction.
        fn settle(&mut self) {
            let Some(run) = self.run.as_mut() else { return };
            let spool = Spool::open(&self.spool_path).unwrap();
            let now = Instant::now();
            for ev in std::mem::take(&mut run.queue) {
                for ev in run.rescanner.expand(ev) {
                    run.debouncer.observe(ev, now);
                }
            }
            let mounts = crate::mounts::MountTable::default();
            let mut lineage = crate::lineage::Lineage::default();
            let (mut batch, mut index, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
            for ready in run.debouncer.due(now + Duration::from_secs(3600)) {
                if matches!(ready.action, Action::Created | Action::Modified)
                    && run.rescanner.unchanged(&ready.path)
                    || ready.action == Action::Deleted && !run.rescanner.knows(&ready.path)
                {
                    continue;
                }
                let Some(d) = describe(&ready, &self.set, None, &mounts, &mut lineage) else {
                    continue;
                };
                let repeat = run.rescanner.is_repeat(&d.body);
                index.extend(run.rescanner.record(&d.body, d.stamp));
                if repeat {
                    continue;
                }
                if let EventBody::File(f) = &d.body {
                    sealed.push((
                        PathBuf::from(&f.path),
                        f.old_path.as_ref().map(PathBuf::from),
                        f.sha256.clone(),
                    ));
                }
                batch.push((UnixMs(0), d.body));
            }
            spool.seal(&batch, &index, &[]).unwrap();
            self.sealed.extend(sealed);
        }

        fn apply(&mut self, op: &Op) {
            match op {
                Op::Write(n) => {
                    let p = self.path(*n);
                    let existed = p.exists();
                    self.writes += 1;
                    // Distinct content each time; often the same size as the last.
                    std::fs::write(&p, format!("name,email\nw{:04},a@b.c\n", self.writes)).unwrap();
                    let mut evs = vec![WatchEvent::Touched(p.clone())];
                    if !existed {
                        evs.insert(0, WatchEvent::Created(p));
                    }
                    self.tell(evs);
                }
                Op::Rename(a, b) => {
                    let (from, to) = (self.path(*a), self.path(*b));
                    if a == b || !from.exists() {
                        return;
                    }
                    std::fs::rename(&from, &to).unwrap();
                    self.tell(vec![
                        WatchEvent::MovedFrom(from.clone()),
                        WatchEvent::MovedTo(to.clone()),
                        WatchEvent::Renamed { from, to },
                    ]);
                }
                Op::Delete(n) => {
                    let p = self.path(*n);
                    if std::fs::remove_file(&p).is_ok() {
                        self.tell(vec![WatchEvent::Removed(p)]);
                    }
                }
                Op::Settle => self.settle(),
                Op::Crash => self.run = None,
                Op::Start => self.start(),
            }
        }

        /// What each path's reports say it holds now: its last report's content, `None`
        /// when it was last reported deleted or renamed away.
        fn reported(&self) -> HashMap<PathBuf, Option<String>> {
            let mut now = HashMap::new();
            for (path, old, sha) in &self.sealed {
                if let Some(old) = old {
                    now.insert(old.clone(), None);
                }
                now.insert(path.clone(), sha.clone());
            }
            now
        }
    }

    fn sha_of(p: &Path) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever happened, once the agent is running and has settled: every file is
        /// reported as it is (path and SHA-256), every file gone is reported gone, the
        /// baseline is never reported, and no report repeats the one before it for its path.
        #[test]
        fn every_change_is_reported_once_across_crashes_and_restarts(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let mut w = World::new();
            w.start();
            for op in &ops {
                w.apply(op);
            }
            w.start();
            w.settle();
            let reported = w.reported();
            let mut on_disk = HashMap::new();
            for n in 0..6u8 {
                let p = w.path(n);
                if p.exists() {
                    on_disk.insert(p.clone(), sha_of(&p));
                }
            }
            for (p, sha) in &on_disk {
                let got = reported.get(p).cloned().flatten();
                prop_assert_eq!(got.as_ref(), Some(sha), "{} as it is", p.display());
            }
            for (p, sha) in &reported {
                if !on_disk.contains_key(p) {
                    prop_assert!(sha.is_none(), "{} is gone but was last reported as {:?}", p.display(), sha);
                }
            }
            prop_assert!(!reported.contains_key(&w.root.join("before.txt")), "the baseline is not news");
            // No report repeats its path's previous one.
            let mut last: HashMap<&PathBuf, &Option<String>> = HashMap::new();
            for (path, old, sha) in &w.sealed {
                if sha.is_some() {
                    prop_assert_ne!(last.get(path).copied(), Some(sha), "{} reported twice as {:?}", path.display(), sha);
                }
                if let Some(old) = old {
                    last.insert(old, &None);
                }
                last.insert(path, sha);
            }
        }
    }
}
