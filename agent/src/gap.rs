//! What happened while the agent was not running: how the last run ended (a stop, with the
//! signal and its sender, or a crash), and the `agent_gap` notice that names the gap once
//! every file the start's catch-up found has been described. Pure bookkeeping over paths,
//! event bodies and times passed in; the daemon feeds it.

use holdfast_shared::event::{Action, AgentNotice, EventBody};
use holdfast_shared::time::UnixMs;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use holdfast_shared::event::notice::{AGENT_GAP, AGENT_STOPPED};

/// How the last run ended, as the spool remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// The last time the last run was known to be running (its final write when it
    /// stopped cleanly, its last periodic mark when it crashed).
    pub alive_ms: UnixMs,
    /// What stopped it, when it stopped cleanly; `None`: it crashed or was killed.
    pub stopped_by: Option<String>,
}

impl LastRun {
    /// From the spool's status values `alive_ms` and `stopped_by` (empty: no clean stop).
    /// `None` when there was no last run.
    pub fn from_meta(alive_ms: Option<&str>, stopped_by: Option<&str>) -> Option<LastRun> {
        let alive_ms = alive_ms?.parse().ok()?;
        Some(LastRun {
            alive_ms,
            stopped_by: stopped_by.filter(|s| !s.is_empty()).map(str::to_string),
        })
    }
}

/// The catch-up after a gap: the files it found, until each has been described.
#[derive(Debug)]
pub struct Gap {
    last: LastRun,
    now_ms: UnixMs,
    waiting: HashSet<PathBuf>,
    files: u64,
    customer: u64,
    deleted: u64,
}

/// Customer content: records found, or a rule matched.
pub fn customer(body: &EventBody) -> bool {
    match body {
        EventBody::File(f) => {
            f.summary.as_ref().is_some_and(|s| s.records > 0) || !f.rules.is_empty()
        }
        EventBody::Notice(_) => false,
    }
}

impl Gap {
    /// A gap from `last` to `now_ms`, whose catch-up found `paths` (created, changed or
    /// deleted meanwhile).
    pub fn new(last: LastRun, now_ms: UnixMs, paths: impl IntoIterator<Item = PathBuf>) -> Gap {
        Gap {
            last,
            now_ms,
            waiting: paths.into_iter().collect(),
            files: 0,
            customer: 0,
            deleted: 0,
        }
    }

    /// "the agent was not running from … to … (how it ended)".
    fn span(&self) -> String {
        let how = match &self.last.stopped_by {
            Some(by) => format!("stopped: {by}"),
            None => "it crashed or was killed".to_string(),
        };
        format!(
            "the agent was not running from {} to {} ({how})",
            self.last.alive_ms.rfc3339(),
            self.now_ms.rfc3339()
        )
    }

    /// This gap, as kept in the spool until its notice is sealed: if the agent dies before
    /// (a crash during the catch-up), the next start still reports it
    /// ([`Gap::unfinished_notice`]).
    pub fn record(&self) -> String {
        format!(
            "{}|{}|{}",
            self.last.alive_ms,
            self.now_ms,
            self.last.stopped_by.as_deref().unwrap_or("")
        )
    }

    /// The notice for a gap whose run died before it had caught up (`record` from
    /// [`Gap::record`]): its times and how it ended; what changed is counted by the gap
    /// that follows, whose catch-up finds it again. `None` for a record that does not parse.
    pub fn unfinished_notice(record: &str) -> Option<EventBody> {
        let mut parts = record.splitn(3, '|');
        let from: i64 = parts.next()?.parse().ok()?;
        let to: i64 = parts.next()?.parse().ok()?;
        let by = parts.next().unwrap_or("");
        let mut g = Gap::new(
            LastRun {
                alive_ms: UnixMs(from),
                stopped_by: (!by.is_empty()).then(|| by.to_string()),
            },
            UnixMs(to),
            [],
        );
        let Some(EventBody::Notice(mut n)) = g.take_notice(true) else {
            return None;
        };
        n.message = format!(
            "{}; the agent stopped again before it had caught up, so what changed is counted in the next gap",
            g.span()
        );
        n.counts.insert("unfinished".into(), 1);
        Some(EventBody::Notice(n))
    }

    /// A file was handled: described (`body`) or found not worth an event (`None`).
    pub fn observe(&mut self, path: &Path, body: Option<&EventBody>) {
        if !self.waiting.remove(path) {
            return;
        }
        let Some(body) = body else { return };
        if let EventBody::File(f) = body {
            if f.action == Action::Deleted {
                self.deleted += 1;
                return;
            }
        }
        self.files += 1;
        if customer(body) {
            self.customer += 1;
        }
    }

    /// The notice, once every file found has been handled, or earlier when nothing waits to
    /// be described any more (`idle`: a file dropped for want of room is found by a later
    /// rescan, not here).
    pub fn take_notice(&mut self, idle: bool) -> Option<EventBody> {
        if !self.waiting.is_empty() && !idle {
            return None;
        }
        let unread = std::mem::take(&mut self.waiting).len() as u64;
        let mut counts = BTreeMap::from([
            ("from_ms".to_string(), self.last.alive_ms.ms().max(0) as u64),
            ("to_ms".to_string(), self.now_ms.ms().max(0) as u64),
            ("files".to_string(), self.files),
            ("customer_files".to_string(), self.customer),
            ("deleted".to_string(), self.deleted),
            (
                "crashed".to_string(),
                u64::from(self.last.stopped_by.is_none()),
            ),
        ]);
        if unread > 0 {
            counts.insert("unread".into(), unread);
        }
        let message = format!(
            "{}: {} files created or changed meanwhile, {} with customer content, {} deleted{}",
            self.span(),
            self.files,
            self.customer,
            self.deleted,
            if unread > 0 {
                format!("; {unread} could not be read yet")
            } else {
                String::new()
            }
        );
        Some(EventBody::Notice(AgentNotice {
            kind: AGENT_GAP.into(),
            message,
            count: self.files,
            counts,
        }))
    }
}

/// The notice `holdfast-agent farewell` sends when the agent is removed or disabled.
pub fn removal_notice(reason: &str) -> EventBody {
    let reason: String = reason.chars().take(200).collect();
    EventBody::notice(
        holdfast_shared::event::notice::AGENT_REMOVED,
        format!("the agent is being removed: {reason}"),
        1,
    )
}

/// Whether `systemctl is-enabled`'s word means the service will not start again by itself:
/// disabled or masked. Enabled, static, indirect, generated, aliased or unknown units are not.
pub fn is_disabled(is_enabled: &str) -> bool {
    matches!(is_enabled, "disabled" | "masked" | "masked-runtime")
}

/// The notice sent before the agent exits on a signal.
pub fn stop_notice(by: &str) -> EventBody {
    EventBody::notice(AGENT_STOPPED, format!("the agent is stopping: {by}"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_shared::event::{ContentSummary, FileActivity};

    #[test]
    fn only_a_disabled_or_masked_unit_is_a_removal() {
        for (word, removal) in [
            ("disabled", true),
            ("masked", true),
            ("masked-runtime", true),
            ("enabled", false),
            ("enabled-runtime", false),
            ("static", false),
            ("indirect", false),
            ("generated", false),
            ("alias", false),
            ("", false),
        ] {
            assert_eq!(is_disabled(word), removal, "{word:?}");
        }
    }

    fn file(path: &str, action: Action, records: u64) -> EventBody {
        EventBody::File(FileActivity {
            summary: Some(ContentSummary {
                records,
                ..Default::default()
            }),
            ..FileActivity::new(action, path)
        })
    }

    fn counts(n: &EventBody) -> (String, BTreeMap<String, u64>) {
        match n {
            EventBody::Notice(n) => (n.message.clone(), n.counts.clone()),
            _ => panic!("not a notice"),
        }
    }

    /// Each case: how the last run ended, the files found and how they were handled (`None`:
    /// not handled yet), whether the pipeline is idle, and the counts the notice must carry
    /// (`None`: no notice yet).
    fn check(
        stopped_by: Option<&str>,
        handled: &[(&str, Option<(Action, u64)>)],
        idle: bool,
        want: Option<[u64; 4]>,
    ) {
        let last = LastRun {
            alive_ms: UnixMs(1_000_000),
            stopped_by: stopped_by.map(str::to_string),
        };
        let mut g = Gap::new(
            last,
            UnixMs(2_000_000),
            handled.iter().map(|(p, _)| PathBuf::from(p)),
        );
        for (p, how) in handled {
            if let Some((action, records)) = how {
                g.observe(Path::new(p), Some(&file(p, *action, *records)));
            }
        }
        // A path that was not found by the catch-up changes nothing.
        g.observe(
            Path::new("/other"),
            Some(&file("/other", Action::Created, 9)),
        );
        let got = g.take_notice(idle);
        match (got, want) {
            (None, None) => {}
            (Some(n), Some([files, customer, deleted, crashed])) => {
                let (message, c) = counts(&n);
                assert_eq!(
                    [c["files"], c["customer_files"], c["deleted"], c["crashed"]],
                    [files, customer, deleted, crashed],
                    "{message}"
                );
                assert_eq!((c["from_ms"], c["to_ms"]), (1_000_000, 2_000_000));
                assert!(message.contains("1970-01-01T00:16:40Z"), "{message}");
                assert!(g.take_notice(true).is_some(), "a second call still answers");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn the_gap_notice_counts_what_the_catch_up_found() {
        // Crashed, three files: one customer export, one plain file, one deleted.
        check(
            None,
            &[
                ("/a.csv", Some((Action::Created, 200))),
                ("/b.txt", Some((Action::Modified, 0))),
                ("/c.csv", Some((Action::Deleted, 0))),
            ],
            false,
            Some([2, 1, 1, 1]),
        );
        // Stopped cleanly, nothing changed meanwhile: the notice still names the gap.
        check(Some("SIGTERM from pid 1"), &[], false, Some([0, 0, 0, 0]));
        // One file not described yet, and work still waiting: no notice yet.
        check(
            None,
            &[("/a.csv", Some((Action::Created, 5))), ("/b.csv", None)],
            false,
            None,
        );
        // ...but an idle pipeline will not describe it here: the notice goes now.
        check(
            None,
            &[("/a.csv", Some((Action::Created, 5))), ("/b.csv", None)],
            true,
            Some([1, 1, 0, 1]),
        );
    }

    #[test]
    fn a_gap_whose_run_died_before_catching_up_still_gets_its_notice() {
        for stopped_by in [None, Some("SIGTERM from pid 4 (uid 0)")] {
            let g = Gap::new(
                LastRun {
                    alive_ms: UnixMs(1_000_000),
                    stopped_by: stopped_by.map(str::to_string),
                },
                UnixMs(2_000_000),
                [PathBuf::from("/a.csv")],
            );
            let Some(n) = Gap::unfinished_notice(&g.record()) else {
                panic!("no notice")
            };
            let (message, c) = counts(&n);
            assert_eq!(
                (c["from_ms"], c["to_ms"], c["unfinished"], c["crashed"]),
                (1_000_000, 2_000_000, 1, u64::from(stopped_by.is_none())),
            );
            assert!(
                message.contains("stopped again before it had caught up"),
                "{message}"
            );
            if let Some(by) = stopped_by {
                assert!(message.contains(by), "{message}");
            }
        }
        assert!(Gap::unfinished_notice("junk").is_none());
    }

    #[test]
    fn the_last_run_is_read_from_the_spool_status() {
        assert_eq!(LastRun::from_meta(None, None), None, "a first start");
        assert_eq!(
            LastRun::from_meta(Some("12"), Some("")),
            Some(LastRun {
                alive_ms: UnixMs(12),
                stopped_by: None
            })
        );
        assert_eq!(
            LastRun::from_meta(Some("12"), Some("SIGTERM")),
            Some(LastRun {
                alive_ms: UnixMs(12),
                stopped_by: Some("SIGTERM".into())
            })
        );
        assert_eq!(LastRun::from_meta(Some("junk"), None), None);
    }
}
