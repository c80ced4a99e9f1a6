//! Nothing exits silently: a stage that fails is restarted and reported. The spool's
//! write-ahead log is made immutable under a running agent (`chattr +i`: even root's writes
//! fail), so the pipeline cannot seal and the uplink cannot acknowledge; the collector shows
//! the device degraded with the reason within a heartbeat, and once the file is writable
//! again the device recovers and the export written meanwhile is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, wait_for};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn chattr(flag: &str, path: &std::path::Path) {
    let out = Command::new("chattr").arg(flag).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "chattr {flag} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clears the immutable flag even when the test fails, so the temporary folder can go.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_spool_that_takes_no_writes_shows_degraded_and_recovers() {
    let (_tmp, collector, mut agent) = holdfast_tests::scene("", "ada", "heartbeat_ms = 500");
    let health = || {
        collector.devices()[0]["health"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = agent.watched.join("report1700000000001.csv");
    std::fs::write(&first, corpus::salesforce_contacts(1, 60)).unwrap();
    wait_for("the first export", DEADLINE, || {
        collector.alert_where("path", &first.display().to_string())
    });
    assert_eq!(health(), "ok");

    let wal = agent.data_dir.join("spool.db-wal");
    assert!(wal.exists(), "the spool runs in WAL mode");
    chattr("+i", &wal);
    let guard = Immutable(wal.clone());
    // An export while the spool takes no writes: the pipeline fails to seal it.
    let second = agent.watched.join("report1700000000002.csv");
    std::fs::write(&second, corpus::salesforce_contacts(2, 60)).unwrap();
    let degraded = wait_for("the device to show degraded", DEADLINE, || {
        let h = health();
        h.starts_with("degraded: ").then_some(h)
    });
    assert!(degraded.contains("pipeline: "), "{degraded}");
    let alert = collector
        .alert_where("rule_id", "holdfast.agent_degraded")
        .expect("an agent_degraded alert");
    assert_eq!(alert["severity"], "high");
    assert!(agent
        .log()
        .contains("the pipeline failed; starting it again"));

    chattr("-i", &wal);
    drop(guard);
    wait_for("the device to recover", DEADLINE, || {
        (health() == "ok").then_some(())
    });
    // The export written while the pipeline was down is reported once it runs again.
    wait_for("the export written meanwhile", DEADLINE, || {
        collector.alert_where("path", &second.display().to_string())
    });
    let alert = collector
        .alert_where("rule_id", "holdfast.agent_degraded")
        .unwrap();
    assert!(
        alert["detail"].as_str().unwrap().contains("recovered at"),
        "{alert}"
    );
    assert!(agent.stop(), "and it still stops cleanly");
}
