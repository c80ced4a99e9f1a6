//! Nothing missed across stops and crashes, end to end with real processes: an agent stopped
//! (SIGTERM) or killed (SIGKILL) while exports are written reports every one of them once at
//! its next start, and each stop or crash shows at the collector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, wait_for, Agent, Collector};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// File events by path: how many, and the SHA-256 of each.
fn file_events(c: &Collector) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in c.events() {
        if e["kind"] == "file" && e["action"] != "deleted" {
            out.entry(e["path"].as_str().unwrap().to_string())
                .or_default()
                .push(e["sha256"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

/// [`write_export_in`] the agent's watched folder.
fn write_export(agent: &Agent, i: usize) -> (String, String) {
    write_export_in(&agent.watched, i)
}

/// The burst the kill tests run against: `files` exports into `dir`, one every 20 ms, on a
/// thread of their own; joined, it gives each export's path and SHA-256.
fn burst(
    dir: std::path::PathBuf,
    files: usize,
) -> std::thread::JoinHandle<BTreeMap<String, String>> {
    std::thread::spawn(move || {
        (0..files)
            .map(|i| {
                let out = write_export_in(&dir, i);
                std::thread::sleep(Duration::from_millis(20));
                out
            })
            .collect()
    })
}

/// A burst of 1,000 exports into `dir` while `disrupt` runs 20 times at random points
/// (from `seed`); gives each export's path and SHA-256 once the burst is over.
fn burst_disrupted(
    dir: std::path::PathBuf,
    seed: u64,
    mut disrupt: impl FnMut(),
) -> BTreeMap<String, String> {
    let writer = burst(dir, 1000);
    for pause in pauses(seed, CYCLES) {
        std::thread::sleep(pause);
        disrupt();
    }
    writer.join().unwrap()
}

/// How many times the kill tests disrupt their burst.
const CYCLES: usize = 20;

/// `cycles` pauses of 0.1 to 1.1 s, from `seed` (a xorshift): random kill points that a
/// failing run can replay.
fn pauses(mut seed: u64, cycles: usize) -> Vec<Duration> {
    (0..cycles)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            Duration::from_millis(100 + seed % 1000)
        })
        .collect()
}

fn notices(c: &Collector, kind: &str) -> Vec<serde_json::Value> {
    c.events()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Writes the `i`-th export (distinct content) into `dir` and returns its path and SHA-256.
fn write_export_in(dir: &std::path::Path, i: usize) -> (String, String) {
    let body = corpus::salesforce_contacts(1000 + i as u64, 60);
    let path = dir.join(format!("report{:013}.csv", 1_700_000_000_000 + i));
    std::fs::write(&path, &body).unwrap();
    (
        path.display().to_string(),
        holdfast_shared::sha256_hex(&body),
    )
}

/// Waits until every file of `want` is stored, then asserts each was reported exactly once
/// with its content.
fn reported_once(c: &Collector, want: &BTreeMap<String, String>) {
    let got = wait_for("every export to be stored", DEADLINE, || {
        let got = file_events(c);
        want.keys().all(|p| got.contains_key(p)).then_some(got)
    });
    for (path, sha) in want {
        assert_eq!(
            got[path],
            vec![sha.clone()],
            "{path}: reported exactly once, with its content"
        );
    }
}

#[test]
fn exports_written_while_the_agent_was_stopped_are_reported_once_at_its_start() {
    let _t = turn();
    let (_tmp, collector, mut agent) = holdfast_tests::scene("", "ada", "");
    let already = write_export(&agent, 999);
    wait_for("the first export", DEADLINE, || {
        file_events(&collector)
            .contains_key(&already.0)
            .then_some(())
    });

    assert!(agent.stop(), "a clean stop");
    // The stop notice reached the collector before the agent exited: who sent the signal.
    let stopped = notices(&collector, "agent_stopped");
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let message = stopped[0]["message"].as_str().unwrap();
    assert!(message.contains("SIGTERM from pid"), "{message}");
    let alert = collector
        .alert_where("rule_id", "holdfast.agent_stopped")
        .expect("an agent_stopped alert");
    assert_eq!(alert["severity"], "medium");
    assert!(collector.devices()[0]["last_stop"]
        .as_str()
        .unwrap()
        .contains("SIGTERM"));

    let want: BTreeMap<String, String> = (0..10).map(|i| write_export(&agent, i)).collect();
    agent.start();
    let mut all = want.clone();
    all.insert(already.0, already.1);
    reported_once(&collector, &all);
    let alerts = collector.alerts();
    for path in want.keys() {
        assert!(
            alerts
                .iter()
                .any(|a| a["path"] == path.as_str() && a["rule_id"] == "crm-export.salesforce"),
            "{path} raised its alert"
        );
    }
    // The gap is named: a clean stop, ten files, ten with customer content.
    let gap = wait_for("the gap notice", DEADLINE, || {
        notices(&collector, "agent_gap").into_iter().next()
    });
    let message = gap["message"].as_str().unwrap();
    assert!(message.contains("stopped: SIGTERM from pid"), "{message}");
    assert!(
        message.contains("10 files created or changed meanwhile, 10 with customer content"),
        "{message}"
    );
    let alert = collector
        .alert_where("rule_id", "holdfast.coverage_gap")
        .expect("a coverage_gap alert");
    assert_eq!(
        (alert["severity"].as_str(), alert["records"].as_u64()),
        (Some("high"), Some(10))
    );
    assert_eq!(collector.devices()[0]["last_gap"].as_str(), Some(message));
}

#[test]
fn twenty_kill_9_cycles_during_a_burst_report_every_export_once() {
    let _t = turn();
    let (_tmp, collector, mut agent) = holdfast_tests::scene("", "ada", "");
    // The burst: 1,000 exports over about 20 s while the agent is killed and started again.
    let want = burst_disrupted(agent.watched.clone(), 0x2545_f491_4f6c_dd1d, || {
        agent.kill();
        agent.start();
    });
    reported_once(&collector, &want);
    // Every crash shows as a gap notice naming it a crash.
    let gaps = wait_for("a gap notice for every crash", DEADLINE, || {
        let g = notices(&collector, "agent_gap");
        (g.len() >= CYCLES).then_some(g)
    });
    assert_eq!(gaps.len(), CYCLES, "one per crash");
    for g in &gaps {
        let m = g["message"].as_str().unwrap();
        assert!(m.contains("it crashed or was killed"), "{m}");
    }
}

#[test]
fn twenty_kill_9_cycles_of_the_collector_during_a_burst_lose_and_double_nothing() {
    let _t = turn();
    let (_tmp, mut collector, agent) = holdfast_tests::scene("", "ada", "");
    let want = burst_disrupted(agent.watched.clone(), 0x9e37_79b9_7f4a_7c15, || {
        collector.kill();
        collector.restart();
    });
    reported_once(&collector, &want);
    // The agent never stopped: no gap, no stop.
    assert!(notices(&collector, "agent_gap").is_empty());
    assert!(notices(&collector, "agent_stopped").is_empty());
}

/// Timing cannot hide an export: one written and deleted before it settles is still read
/// (through the descriptor taken when it appeared) and reported, created then deleted; one
/// touched every half second and then deleted is read after the longest wait. A plain
/// temporary file created and deleted the same way is not reported.
#[test]
fn exports_deleted_before_they_settle_or_kept_busy_are_still_reported() {
    let _t = turn();
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ada", "");
    let quick = agent.watched.join("report1700000000001.csv");
    let body = corpus::salesforce_contacts(11, 80);
    std::fs::write(&quick, &body).unwrap();
    let temp = agent.watched.join("scratch.tmp");
    std::fs::write(&temp, b"nothing to see").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(&quick).unwrap();
    std::fs::remove_file(&temp).unwrap();
    // Kept busy: rewritten every 0.5 s for 8 s (the settle time is 0.3 s), then deleted.
    let busy = agent.watched.join("report1700000000002.csv");
    for i in 0..16 {
        std::fs::write(&busy, corpus::salesforce_contacts(20 + i, 80)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::remove_file(&busy).unwrap();
    let (quick_s, busy_s) = (quick.display().to_string(), busy.display().to_string());
    let events = wait_for("both exports and their deletes", DEADLINE, || {
        let ev = collector.events();
        let has =
            |p: &str, action: &str| ev.iter().any(|e| e["path"] == p && e["action"] == action);
        (has(&quick_s, "created") && has(&quick_s, "deleted") && has(&busy_s, "deleted"))
            .then_some(ev)
    });
    let created = events
        .iter()
        .find(|e| e["path"] == quick_s.as_str() && e["action"] == "created")
        .unwrap();
    assert_eq!(created["sha256"], holdfast_shared::sha256_hex(&body));
    assert_eq!(created["records"], 80);
    assert!(
        events
            .iter()
            .any(|e| e["path"] == busy_s.as_str() && e["records"] == 80),
        "the busy export was read while it was being rewritten"
    );
    assert!(
        !events.iter().any(|e| e["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("scratch.tmp"))),
        "a temporary file is not news"
    );
    let alerts = collector.alerts();
    for p in [&quick_s, &busy_s] {
        assert!(
            alerts.iter().any(|a| a["path"] == p.as_str()),
            "{p} raised its alert: {alerts:?}"
        );
    }
}
