//! What is wrong with the agent right now, stage by stage: the supervisors set and clear
//! it, every heartbeat carries it (the collector shows the device as degraded, with the
//! reason) and `holdfast-agent status` prints it. Empty means healthy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The stages' current failures, shared by the supervisors and the uplink.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Health {
    /// `stage` failed for `reason` (and is being restarted).
    pub fn fail(&self, stage: &'static str, reason: String) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(stage, reason);
        }
    }

    /// `stage` runs again.
    pub fn ok(&self, stage: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(stage);
        }
    }

    /// The failures as `stage: reason` lines, in stage order (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(s, r)| format!("{s}: {r}")).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_listed_until_their_stage_runs_again() {
        let h = Health::default();
        assert!(h.problems().is_empty());
        h.fail("uplink", "spool database: readonly".into());
        h.fail("pipeline", "spool database: disk I/O error".into());
        h.fail("pipeline", "spool database: readonly".into());
        assert_eq!(
            h.problems(),
            [
                "pipeline: spool database: readonly",
                "uplink: spool database: readonly"
            ]
        );
        let shared = h.clone();
        shared.ok("pipeline");
        assert_eq!(h.problems(), ["uplink: spool database: readonly"]);
    }
}
