//! What is wrong with the agent right now, stage by stage: the supervisors set and clear
//! it, every heartbeat carries it (the collector shows the device as degraded, with the
//! reason) and `holdfast-agent status` prints it. Empty means healthy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The stages' current failures, shared by the supervisors and the uplink.
///
/// A failure stays listed until a heartbeat has carried it to the collector, even when its
/// stage recovered before the next heartbeat: a stage that fails and restarts within a
/// second is still reported, as `… (recovered)`.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, Problem>>>);

#[derive(Debug, Clone)]
struct Problem {
    reason: String,
    /// A heartbeat the collector answered has listed it.
    carried: bool,
    /// Its stage runs again.
    recovered: bool,
}

impl Problem {
    fn line(&self, stage: &str) -> String {
        let recovered = if self.recovered { " (recovered)" } else { "" };
        format!("{stage}: {}{recovered}", self.reason)
    }
}

impl Health {
    /// `stage` failed for `reason` (and is being restarted).
    pub fn fail(&self, stage: &'static str, reason: String) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                stage,
                Problem {
                    reason,
                    carried: false,
                    recovered: false,
                },
            );
        }
    }

    /// `stage` runs again: its failure goes once a heartbeat has carried it.
    pub fn ok(&self, stage: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(stage) {
                Some(p) if p.carried => {
                    m.remove(stage);
                }
                Some(p) => p.recovered = true,
                None => {}
            }
        }
    }

    /// The failures as `stage: reason` lines, in stage order (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(s, p)| p.line(s)).collect())
            .unwrap_or_default()
    }

    /// The collector answered a heartbeat that listed `lines`: those failures are reported,
    /// and the ones whose stage recovered are done.
    pub fn delivered(&self, lines: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|s, p| {
                if lines.contains(&p.line(s)) {
                    p.carried = true;
                    !p.recovered
                } else {
                    true
                }
            });
        }
    }
}

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs a stage's `body` on this thread until it returns, starting it again with backoff
/// (0.5 s doubling to 30 s) when it panics; each failure is logged and set on `health` as
/// `stage`. The body says it runs well again with [`Health::ok`].
pub fn keep_running(
    stage: &'static str,
    health: &Health,
    stop: &std::sync::atomic::AtomicBool,
    mut body: impl FnMut(),
) {
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(panic) => {
                let why = panic_message(panic.as_ref());
                tracing::error!(stage, error = %why, retry_in = ?backoff, "a stage failed; starting it again");
                health.fail(stage, format!("failed ({why}); restarting"));
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_listed_until_a_heartbeat_carried_them_and_their_stage_runs_again() {
        let h = Health::default();
        assert!(h.problems().is_empty());
        h.fail("uplink", "spool database: readonly".into());
        h.fail("pipeline", "spool database: disk I/O error".into());
        h.fail("pipeline", "spool database: readonly".into());
        let lines = h.problems();
        assert_eq!(
            lines,
            [
                "pipeline: spool database: readonly",
                "uplink: spool database: readonly"
            ]
        );
        // Recovered before any heartbeat carried it: still listed, once, as recovered.
        let shared = h.clone();
        shared.ok("pipeline");
        assert_eq!(
            h.problems(),
            [
                "pipeline: spool database: readonly (recovered)",
                "uplink: spool database: readonly"
            ]
        );
        h.delivered(&h.problems());
        assert_eq!(h.problems(), ["uplink: spool database: readonly"]);
        // Carried already: gone as soon as its stage runs again.
        h.ok("uplink");
        assert!(h.problems().is_empty());
        // A heartbeat that listed an older reason does not carry the new one.
        h.fail("reads", "one".into());
        h.fail("reads", "two".into());
        h.delivered(&["reads: one".to_string()]);
        h.ok("reads");
        assert_eq!(h.problems(), ["reads: two (recovered)"]);
    }

    /// A stage that panics is started again, and the failure shows until it recovers.
    #[test]
    fn a_panicking_stage_is_started_again_and_reported() {
        let h = Health::default();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut runs = 0;
        let mut seen = Vec::new();
        keep_running("reads", &h, &stop, || {
            runs += 1;
            seen.push(h.problems());
            if runs < 3 {
                panic!("fanotify queue gone {runs}");
            }
            h.ok("reads");
        });
        assert_eq!(runs, 3);
        assert_eq!(
            seen,
            [
                vec![],
                vec!["reads: failed (fanotify queue gone 1); restarting".to_string()],
                vec!["reads: failed (fanotify queue gone 2); restarting".to_string()],
            ]
        );
        assert_eq!(
            h.problems(),
            ["reads: failed (fanotify queue gone 2); restarting (recovered)"]
        );
    }
}
