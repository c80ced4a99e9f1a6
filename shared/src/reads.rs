//! Read monitoring's judgement, as a pure state machine over opens and a `now` passed in:
//! which opens to report, and when one process (or user) has opened more customer files
//! within a bulk-read rule's window than the rule allows.
//!
//! The agent feeds it every open its platform reports under the rules' folders; the state is
//! bounded (a window per process or user, at most [`MAX_KEYS`] of them, each holding at most
//! a little more than its rule's `min_files` entries).

use crate::event::{Action, EventBody};
use crate::event::{BulkRead, FileActivity, Process, RuleMatch};
use crate::policy::{PolicySet, ReadsBy};
use crate::time::UnixMs;
use std::collections::{HashMap, VecDeque};

/// Most processes or users followed at once; beyond, the stalest is forgotten.
pub const MAX_KEYS: usize = 4096;
/// Most opens remembered as reported (one report per file and opener per window).
pub const MAX_REPORTED: usize = 100_000;

/// One open, as the platform reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub path: String,
    pub process: Process,
    pub time_ms: UnixMs,
}

/// Who counts: a rule and a process or user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: usize,
    who: String,
}

#[derive(Debug, Default)]
struct Window {
    /// (time, path) of distinct files, oldest first.
    files: VecDeque<(UnixMs, String)>,
    /// When the rule last fired for this key: it fires once per window.
    fired_ms: Option<UnixMs>,
    last_ms: UnixMs,
}

/// The state: windows per rule and opener, and the opens already reported.
#[derive(Debug, Default)]
pub struct BulkReads {
    windows: HashMap<Key, Window>,
    /// (path, opener) → when reported.
    reported: HashMap<(String, String), UnixMs>,
}

impl BulkReads {
    /// Judges one open: the events to report (the open itself, once per file and opener per
    /// window, and the bulk read when this open crossed a rule's threshold). Opens outside
    /// every rule's folders, or by an excluded executable, give nothing.
    pub fn observe(&mut self, set: &PolicySet, open: &Open) -> Vec<EventBody> {
        let mut out = Vec::new();
        let mut report = false;
        let mut hits: Vec<(RuleMatch, BulkRead)> = Vec::new();
        for (i, rule) in set.bulk_reads.iter().enumerate() {
            let Some(folder) = rule.folder_of(&open.path) else {
                continue;
            };
            if rule.excludes(&open.process) {
                continue;
            }
            let within_ms = i64::try_from(rule.within.as_millis()).unwrap_or(i64::MAX);
            let who = opener(rule.by, &open.process);
            let reported_at = self
                .reported
                .get(&(open.path.clone(), who.clone()))
                .copied();
            if reported_at.is_none_or(|t| open.time_ms.since(t) >= within_ms) {
                report = true;
            }
            self.make_room();
            let w = self
                .windows
                .entry(Key {
                    rule: i,
                    who: who.clone(),
                })
                .or_default();
            w.last_ms = open.time_ms;
            let horizon = open.time_ms - within_ms;
            while w.files.front().is_some_and(|(t, _)| *t < horizon) {
                w.files.pop_front();
            }
            if let Some(pos) = w.files.iter().position(|(_, p)| *p == open.path) {
                w.files.remove(pos);
            }
            w.files.push_back((open.time_ms, open.path.clone()));
            let cap = usize::try_from(rule.min_files)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            while w.files.len() > cap {
                w.files.pop_front();
            }
            let count = w.files.len() as u64;
            let quiet = w
                .fired_ms
                .is_none_or(|t| open.time_ms.since(t) >= within_ms);
            if count >= rule.min_files && quiet {
                w.fired_ms = Some(open.time_ms);
                hits.push((
                    RuleMatch {
                        id: rule.id.clone(),
                        severity: rule.severity,
                    },
                    BulkRead {
                        files: count,
                        within_s: rule.within.as_secs(),
                        by: rule.by.as_str().to_string(),
                        folder: folder.to_string(),
                    },
                ));
            }
        }
        if report || !hits.is_empty() {
            if self.reported.len() >= MAX_REPORTED {
                self.reported.clear();
            }
            for rule in &set.bulk_reads {
                let who = opener(rule.by, &open.process);
                self.reported.insert((open.path.clone(), who), open.time_ms);
            }
            let (rules, bulk) = match hits.into_iter().max_by_key(|(m, _)| m.severity) {
                Some((m, b)) => (vec![m], Some(Box::new(b))),
                None => (Vec::new(), None),
            };
            out.push(EventBody::File(FileActivity {
                action: Action::Opened,
                path: open.path.clone(),
                old_path: None,
                size: None,
                sha256: None,
                summary: None,
                error: None,
                rules,
                destination: None,
                origin: None,
                process: Some(Box::new(open.process.clone())),
                bulk,
            }));
        }
        out
    }

    /// Forgets the stalest opener when [`MAX_KEYS`] are followed.
    fn make_room(&mut self) {
        if self.windows.len() < MAX_KEYS {
            return;
        }
        if let Some(stalest) = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.last_ms)
            .map(|(k, _)| k.clone())
        {
            self.windows.remove(&stalest);
        }
    }
}

/// The opener a rule counts for: a process (pid and executable, since pids are reused) or a
/// user (uid; the name when the uid is unknown).
fn opener(by: ReadsBy, p: &Process) -> String {
    match by {
        ReadsBy::Process => format!("{}:{}", p.pid, p.exe.as_deref().unwrap_or("?")),
        ReadsBy::User => match (p.uid, &p.user) {
            (Some(uid), _) => format!("uid:{uid}"),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => "user:?".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[bulk_read]]
id = "reads.bulk"
severity = "high"
folders = ["/srv/customers", "~/Customers"]
min_files = 3
within = "10m"
exclude_executables = ["/usr/bin/updatedb", "/usr/bin/rsync"]

[[bulk_read]]
id = "reads.user"
severity = "medium"
folders = ["/srv/customers"]
min_files = 5
within = "1h"
by = "user"
"#;

    fn set() -> PolicySet {
        PolicySet::compile(&[("r.toml", POLICY)], "/home/ada").unwrap()
    }

    fn open(path: &str, pid: u32, exe: &str, t_s: i64) -> Open {
        Open {
            path: path.into(),
            process: Process {
                pid,
                uid: Some(1000),
                user: Some("ada".into()),
                exe: Some(exe.into()),
                exe_trusted: Some(true),
                exe_sha256: None,
            },
            time_ms: UnixMs(t_s * 1000),
        }
    }

    /// Feeds opens in order; returns, per open, (reported?, the rule that fired, files).
    fn check(opens: &[Open]) -> Vec<(bool, Option<(String, u64)>)> {
        let set = set();
        let mut b = BulkReads::default();
        opens
            .iter()
            .map(|o| {
                let out = b.observe(&set, o);
                assert!(out.len() <= 1);
                match out.first() {
                    Some(EventBody::File(f)) => (
                        true,
                        f.rules
                            .first()
                            .map(|r| (r.id.clone(), f.bulk.as_ref().map_or(0, |b| b.files))),
                    ),
                    _ => (false, None),
                }
            })
            .collect()
    }

    #[test]
    fn the_third_distinct_file_within_the_window_fires_once() {
        let got = check(&[
            open("/srv/customers/a.csv", 7, "/usr/bin/cat", 0),
            open("/srv/customers/a.csv", 7, "/usr/bin/cat", 1), // same file: not again
            open("/srv/customers/b.csv", 7, "/usr/bin/cat", 2),
            open("/home/ada/Customers/c.csv", 7, "/usr/bin/cat", 3),
            open("/srv/customers/d.csv", 7, "/usr/bin/cat", 4), // already fired
            open("/srv/other/e.csv", 7, "/usr/bin/cat", 5),     // not a customer folder
        ]);
        assert_eq!(
            got,
            vec![
                (true, None),
                (false, None),
                (true, None),
                (true, Some(("reads.bulk".into(), 3))),
                (true, None),
                (false, None),
            ]
        );
    }

    #[test]
    fn windows_expire_and_are_per_process_or_user() {
        // Spread over more than 10 minutes: never three within the window.
        let got = check(&[
            open("/srv/customers/a", 1, "/usr/bin/cat", 0),
            open("/srv/customers/b", 1, "/usr/bin/cat", 400),
            open("/srv/customers/c", 1, "/usr/bin/cat", 800),
        ]);
        assert!(got.iter().all(|(_, fired)| fired.is_none()), "{got:?}");
        // Three processes of one user: the per-process rule stays quiet, the per-user rule
        // (five files) fires on the fifth.
        let opens: Vec<Open> = (0..5)
            .map(|i| {
                open(
                    &format!("/srv/customers/{i}"),
                    100 + i,
                    "/usr/bin/less",
                    i as i64,
                )
            })
            .collect();
        let got = check(&opens);
        assert_eq!(got[4].1, Some(("reads.user".into(), 5)));
        assert!(got[..4].iter().all(|(_, f)| f.is_none()));
    }

    #[test]
    fn excluded_executables_count_for_nothing() {
        // updatedb is excluded by the per-process rule, not by the per-user one.
        let opens: Vec<Open> = (0..10)
            .map(|i| open(&format!("/srv/customers/{i}"), 9, "/usr/bin/updatedb", i))
            .collect();
        let got = check(&opens);
        assert!(got
            .iter()
            .all(|(_, f)| f.as_ref().is_none_or(|(id, _)| id != "reads.bulk")));
        assert_eq!(got[4].1, Some(("reads.user".into(), 5)));
        // Under ~/Customers only the per-process rule applies: nothing is reported at all.
        let opens: Vec<Open> = (0..10)
            .map(|i| open(&format!("/home/ada/Customers/{i}"), 9, "/usr/bin/rsync", i))
            .collect();
        assert!(check(&opens).iter().all(|(reported, _)| !reported));
    }

    #[test]
    fn memory_is_bounded_by_the_keys_followed() {
        let set = set();
        let mut b = BulkReads::default();
        for pid in 0..(MAX_KEYS as u32 + 500) {
            b.observe(
                &set,
                &open("/srv/customers/x", pid, "/usr/bin/cat", i64::from(pid)),
            );
        }
        assert!(b.windows.len() <= MAX_KEYS);
    }
}
