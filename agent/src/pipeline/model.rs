//! Model-based test of the debouncer: random creates, writes, renames and deletes of a few
//! names, as the watcher reports them, with time moving on by random amounts, against a
//! model of the folder.
//!
//! The pipeline reads a file when the debouncer says it settled, so what has been reported
//! is the folder as it was at each `Ready`. The properties: once everything is quiet, what was
//! reported is exactly the folder (every file with its last content, nothing that is gone);
//! nothing is read while it is still being written (less than `settle` since its last change)
//! unless it has waited `max_wait` since its burst's first; nothing waits longer than that; a
//! move is from a name that was reported, and a modification is of a file that was.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const SETTLE: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Write(u8),
    Rename(u8, u8),
    Delete(u8),
    /// Time passes and the pipeline asks what settled.
    Wait(u64),
    /// A file written every 400 ms, this many times (longer than `max_wait` at the most):
    /// expanded into writes and waits.
    Burst(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4).prop_map(Op::Create),
        5 => (0u8..4).prop_map(Op::Write),
        2 => (0u8..4, 0u8..4).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0u8..4).prop_map(Op::Delete),
        // Mostly less than a settle (a file being written), sometimes long quiet.
        5 => (50u64..900).prop_map(Op::Wait),
        1 => (900u64..3000).prop_map(Op::Wait),
        1 => (0u8..4, 2u8..20).prop_map(|(n, k)| Op::Burst(n, k)),
    ]
}

/// The operations as they happen, bursts spelled out.
fn spelled(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .flat_map(|op| match *op {
            Op::Burst(n, k) => (0..k).flat_map(|_| [Op::Write(n), Op::Wait(400)]).collect(),
            ref other => vec![other.clone()],
        })
        .collect()
}

fn name(n: u8) -> PathBuf {
    PathBuf::from(format!("/w/f{n}"))
}

/// The folder (name → version of its content) and when each name's current burst began
/// and last changed.
#[derive(Debug, Default)]
struct World {
    files: BTreeMap<PathBuf, u64>,
    version: u64,
    /// Name → (first change of the burst not yet read, last change).
    busy: BTreeMap<PathBuf, (Instant, Instant)>,
}

impl World {
    fn change(&mut self, p: &Path, now: Instant) {
        self.version += 1;
        self.files.insert(p.to_path_buf(), self.version);
        let e = self.busy.entry(p.to_path_buf()).or_insert((now, now));
        e.1 = now;
    }
}

/// What the pipeline has reported: applies each settled change as it would, reading the
/// folder as it is at that moment.
fn apply(reported: &mut BTreeMap<PathBuf, u64>, world: &World, r: &Ready) {
    let read = |reported: &mut BTreeMap<PathBuf, u64>, p: &Path| match world.files.get(p) {
        Some(v) => {
            reported.insert(p.to_path_buf(), *v);
        }
        // Gone by the time it is read: the pipeline reports no content for it.
        None => {
            reported.remove(p);
        }
    };
    match r.action {
        Action::Deleted => {
            // A delete of a name that holds a file again is not the file's end: the
            // pipeline reads what is there.
            if world.files.contains_key(&r.path) {
                read(reported, &r.path);
            } else {
                reported.remove(&r.path);
            }
        }
        Action::Renamed => {
            if let Some(old) = &r.old_path {
                if !world.files.contains_key(old) {
                    reported.remove(old);
                }
            }
            read(reported, &r.path);
        }
        _ => read(reported, &r.path),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn what_settles_is_what_the_folder_holds(ops in prop::collection::vec(op(), 1..150)) {
        let mut d = Debouncer::new(SETTLE);
        let max_wait = d.max_wait;
        let start = Instant::now();
        let mut now = start;
        let mut world = World::default();
        let mut reported: BTreeMap<PathBuf, u64> = BTreeMap::new();
        for op in &spelled(&ops) {
            match *op {
                Op::Create(n) if !world.files.contains_key(&name(n)) => {
                    world.change(&name(n), now);
                    d.observe(WatchEvent::Created(name(n)), now);
                }
                Op::Write(n) if world.files.contains_key(&name(n)) => {
                    world.change(&name(n), now);
                    d.observe(WatchEvent::Touched(name(n)), now);
                }
                Op::Rename(a, b) if a != b && world.files.contains_key(&name(a)) => {
                    let v = world.files.remove(&name(a)).unwrap_or_default();
                    world.files.insert(name(b), v);
                    // The burst goes on under the new name, from its first change.
                    let began = world.busy.get(&name(a)).map(|x| x.0);
                    let e = world.busy.entry(name(b)).or_insert((now, now));
                    e.1 = now;
                    if let Some(first) = began {
                        e.0 = e.0.min(first);
                    }
                    world.busy.entry(name(a)).or_insert((now, now)).1 = now;
                    d.observe(WatchEvent::Renamed { from: name(a), to: name(b) }, now);
                }
                Op::Delete(n) if world.files.contains_key(&name(n)) => {
                    world.files.remove(&name(n));
                    world.busy.entry(name(n)).or_insert((now, now)).1 = now;
                    d.observe(WatchEvent::Removed(name(n)), now);
                }
                Op::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    for r in d.due(now) {
                        // Not read while still being written, unless it waited long enough.
                        if r.action != Action::Deleted && world.files.contains_key(&r.path) {
                            if let Some(&(first, last)) = world.busy.get(&r.path) {
                                prop_assert!(
                                    now.duration_since(last) >= SETTLE
                                        || now.duration_since(first) >= max_wait,
                                    "{:?} read {:?} after its last change", r, now.duration_since(last)
                                );
                            }
                        }
                        // A move is from a name that was reported; a modification is of a
                        // file that was (a file first seen in this burst is created).
                        if let Some(o) = &r.old_path {
                            prop_assert!(reported.contains_key(o), "{:?} from a name never reported", r);
                        }
                        if r.action == Action::Modified {
                            prop_assert!(reported.contains_key(&r.path), "{:?} of a file never reported", r);
                        }
                        // Read: its burst is over. A delete ends the burst of a name only
                        // when nothing is there now (a new file at it is still being written).
                        if r.action != Action::Deleted || !world.files.contains_key(&r.path) {
                            world.busy.remove(&r.path);
                        }
                        // The name a move came from is done with, unless a new file is there.
                        if let Some(o) = r.old_path.as_ref().filter(|o| !world.files.contains_key(*o)) {
                            world.busy.remove(o);
                        }
                        apply(&mut reported, &world, &r);
                    }
                    // Nothing waits past max_wait from the first change of its burst (a
                    // burst goes on through renames), so no sequence of writes and renames
                    // keeps a file from being read.
                    for (p, first) in d.pending.iter().map(|(k, v)| (k, v.first)) {
                        prop_assert!(
                            now.duration_since(first) < max_wait,
                            "{} still waiting after {:?}", p.display(), now.duration_since(first)
                        );
                    }
                }
                // An operation that does not apply to the folder as it is (create over an
                // existing name, write to a missing one, ...): nothing happens.
                _ => {}
            }
        }
        // Quiet for as long as anything can wait: everything has settled and been read.
        now += max_wait + SETTLE;
        for r in d.due(now) {
            apply(&mut reported, &world, &r);
        }
        prop_assert!(d.is_empty(), "still pending after the quiet: {}", d.len());
        prop_assert_eq!(reported, world.files);
    }
}
