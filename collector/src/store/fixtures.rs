//! Test fixtures for the store's modules: a device, event bodies, a correctly chained run
//! of events, an empty store, a configured one, an opened store with its device, the system alerts, a heartbeat.
#![allow(clippy::unwrap_used)]

use super::*;
use holdfast_shared::event::{Action, ContentSummary, FileActivity, RuleMatch, GENESIS};
use holdfast_shared::event::{EventBody, SealedEvent, Severity};
use holdfast_shared::time::UnixMs;

pub fn device() -> Device {
    Device {
        id: "dev-1".into(),
        user: "ada".into(),
        hostname: "h".into(),
        os: "linux".into(),
        agent_version: "0".into(),
        cert_sha256: "ff".into(),
        cert_serial: "01".into(),
        cert_issued_ms: UnixMs(0),
        cert_expires_ms: UnixMs(90),
        enrolled_ms: UnixMs(1),
        last_seen_ms: None,
        revoked_ms: None,
        last_seq: 0,
        spool_backlog: None,
        first_seq: 1,
        policy_version: String::new(),
        clock_skew_ms: None,
        offline_since_ms: None,
        removed_ms: None,
        removed: None,
        ..Default::default()
    }
}

pub fn file_body(path: &str, rules: &[(&str, Severity)]) -> EventBody {
    EventBody::File(FileActivity {
        size: Some(10),
        sha256: Some("ab".repeat(32)),
        summary: Some(ContentSummary {
            file_type: "csv".into(),
            records: 200,
            ..Default::default()
        }),
        rules: rules
            .iter()
            .map(|(id, s)| RuleMatch {
                id: (*id).into(),
                severity: *s,
            })
            .collect(),
        ..FileActivity::new(Action::Created, path)
    })
}

/// A correctly chained run of events, seq 1..=n, as an agent would send them.
pub fn chain(bodies: &[EventBody]) -> Vec<SealedEvent> {
    let mut prev = GENESIS;
    let mut out = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let seq = i as u64 + 1;
        let e = SealedEvent::seal(seq, UnixMs(seq as i64 * 1000), "ada", prev, b).unwrap();
        prev = e.hash();
        out.push(e);
    }
    out
}

/// An empty store in a fresh temporary folder (kept alive by the guard).
pub fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("c.db")).unwrap();
    (dir, s)
}

/// A default config whose data folder is a fresh temporary folder, and its store.
pub fn configured() -> (tempfile::TempDir, crate::config::Config, Store) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::with_data_dir(dir.path().to_path_buf());
    let s = Store::open(&config.db_path()).unwrap();
    (dir, config, s)
}

pub fn open_with_device() -> (tempfile::TempDir, Store, Device) {
    let (dir, s) = open();
    let d = device();
    s.add_device(&d).unwrap();
    (dir, s, d)
}

/// The alerts of one rule.
pub fn alerts_of(s: &Store, rule: &str) -> Vec<Alert> {
    let mut v = s.alerts(100).unwrap();
    v.retain(|a| a.rule_id == rule);
    v
}

pub fn system_alerts(s: &Store) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = s
        .alerts(100)
        .unwrap()
        .into_iter()
        .filter(|a| a.rule_id.starts_with("holdfast."))
        .map(|a| (a.rule_id, a.detail))
        .collect();
    v.sort();
    v
}

pub fn beat(skew_ms: i64) -> Beat {
    Beat {
        agent_version: "9".into(),
        hostname: "laptop".into(),
        os: "linux".into(),
        policy_version: "pv".into(),
        edm_version: String::new(),
        skew_ms,
        backlog: 4,
        coverage: Some(holdfast_shared::event::Coverage {
            watched_roots: 1,
            files: 12,
            ..Default::default()
        }),
        health: Vec::new(),
    }
}

/// The actions of the last ten audit entries, newest first.
pub fn audit_actions(s: &Store) -> Vec<String> {
    s.audit_log(10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}
