//! The trustworthy channel, end to end with real processes: kill -9 of either side mid-send,
//! large offline backlogs, the spool bound and its drop report, tampering, signed policies,
//! certificate renewal, clock skew, liveness and hostile network input.
//!
//! These tests are heavy (tens of thousands of files and events), so they take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_shared::event::{Action, EventBody, FileActivity};
use holdfast_shared::wire::close;
use holdfast_tests::{corpus, enroll_args, run_err, wait_for, Agent, Collector};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the stream tests wait for what the collector should show.
const DEADLINE: Duration = Duration::from_secs(60);

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

const LONG: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(60);

/// Stored events grouped by device, in the order the collector stored them.
fn by_device(c: &Collector) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut events = c.events();
    // The listing is newest first; storage order is its reverse.
    events.reverse();
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for e in events {
        out.entry(e["device_id"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    out
}

/// Asserts a device's events are seq 1..=n exactly once, stored in ascending order, and
/// returns the paths of its file events whose name starts with `prefix`.
fn exactly_once(events: &[serde_json::Value], prefix: &str) -> Vec<String> {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "seqs must be 1..=n, stored in order, no gap, no duplicate"
    );
    let paths: Vec<String> = events
        .iter()
        .filter_map(|e| e["path"].as_str())
        .filter(|p| {
            std::path::Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(str::to_string)
        .collect();
    let unique: BTreeSet<&String> = paths.iter().collect();
    assert_eq!(unique.len(), paths.len(), "a file reported twice");
    paths
}

fn system_alerts(c: &Collector) -> Vec<serde_json::Value> {
    c.alerts()
        .into_iter()
        .filter(|a| a["rule_id"].as_str().unwrap().starts_with("holdfast."))
        .collect()
}

/// Waits until the agent spooled at least `n` events.
fn spooled(a: &Agent, n: u64) {
    wait_for(&format!("{n} events spooled"), LONG, || {
        (a.status()["last_seq"].as_u64().unwrap() >= n).then_some(())
    });
}

/// Waits until the agent's spool is empty and the collector holds its last seq.
fn drained(a: &Agent, c: &Collector) {
    wait_for("the spool to drain", LONG, || {
        let s = a.status();
        let last = s["last_seq"].as_u64().unwrap();
        let id = s["device_id"].as_str().unwrap().to_string();
        (s["spool_backlog"] == 0 && c.last_seqs().get(&id) == Some(&last)).then_some(())
    });
}

fn device_id(a: &Agent) -> String {
    a.status()["device_id"].as_str().unwrap().to_string()
}

#[test]
fn collector_killed_mid_burst_stores_exactly_20000_events() {
    let _t = turn();
    let tmp = tempfile::tempdir().unwrap();
    // A per-connection rate keeps the burst going for seconds, so the kill lands inside it.
    let mut c = Collector::start_with(tmp.path(), "max_events_per_sec = 2000");
    let agents: Vec<Agent> = ["ann", "ben", "cat"]
        .iter()
        .map(|u| Agent::enroll_and_start(tmp.path(), &c, u))
        .collect();
    let counts = [6667usize, 6667, 6666];
    for (a, n) in agents.iter().zip(counts) {
        a.write_files("burst", n);
    }
    let committed = wait_for("part of the burst to be committed", LONG, || {
        let total: u64 = c.last_seqs().values().sum();
        (total >= 3000).then_some(total)
    });
    c.kill();
    assert!(
        committed < 20_000,
        "the kill must land mid-burst ({committed} committed)"
    );
    std::thread::sleep(Duration::from_millis(500));
    c.restart();
    for (a, n) in agents.iter().zip(counts) {
        spooled(a, n as u64);
        drained(a, &c);
    }
    let stored = by_device(&c);
    let mut total = 0;
    for (a, n) in agents.iter().zip(counts) {
        let paths = exactly_once(&stored[&device_id(a)], "burst-");
        assert_eq!(paths.len(), n);
        total += paths.len();
    }
    assert_eq!(total, 20_000);
    assert_eq!(system_alerts(&c), Vec::<serde_json::Value>::new());
}

#[test]
fn agent_killed_mid_send_loses_and_doubles_nothing() {
    let _t = turn();
    let (_tmp, mut c, mut a) = holdfast_tests::scene("max_events_per_sec = 1000", "dan", "");
    let id = device_id(&a);
    c.kill();
    a.write_files("send", 3000);
    spooled(&a, 3000);
    c.restart();
    let at_kill = wait_for("the first batches to commit", LONG, || {
        c.last_seqs().get(&id).copied().filter(|&s| s > 0)
    });
    a.kill();
    assert!(
        at_kill < 3000,
        "the kill must land mid-send ({at_kill} committed)"
    );
    a.start();
    drained(&a, &c);
    let paths = exactly_once(&by_device(&c)[&id], "send-");
    assert_eq!(paths.len(), 3000);
    assert_eq!(system_alerts(&c), Vec::<serde_json::Value>::new());
}

#[test]
fn fifty_thousand_offline_events_drain_in_order() {
    let _t = turn();
    let (tmp, mut c) = Collector::scratch("");
    let agents: Vec<Agent> = ["eve", "fay", "gus"]
        .iter()
        .map(|u| Agent::enroll_and_start(tmp.path(), &c, u))
        .collect();
    c.kill();
    let counts = [16_667usize, 16_667, 16_666];
    // In slices, as a busy laptop would: the kernel's event queue is never the limit here.
    for chunk in 0..10 {
        for (a, n) in agents.iter().zip(counts) {
            a.write_files(&format!("off{chunk}"), n / 10 + usize::from(chunk < n % 10));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (a, n) in agents.iter().zip(counts) {
        spooled(a, n as u64);
        assert_eq!(a.status()["spool_backlog"], n as u64);
    }
    let started = Instant::now();
    c.restart();
    for a in &agents {
        drained(a, &c);
    }
    eprintln!("50,000 events drained in {:?}", started.elapsed());
    let stored = by_device(&c);
    let mut total = 0;
    for (a, n) in agents.iter().zip(counts) {
        let paths = exactly_once(&stored[&device_id(a)], "off");
        assert_eq!(paths.len(), n);
        total += n;
    }
    assert_eq!(total, 50_000);
    assert_eq!(system_alerts(&c), Vec::<serde_json::Value>::new());
}

#[test]
fn a_small_spool_holds_its_bound_keeps_exports_and_reports_drops_exactly() {
    let _t = turn();
    let (_tmp, mut c, a) = holdfast_tests::scene("", "hal", "spool_max = \"64KiB\"");
    let id = device_id(&a);
    c.kill();
    a.write_files("low", 1000);
    let decided = |a: &Agent| {
        let s = a.status();
        let dropped: u64 = s["spool_dropped_unreported"]
            .as_object()
            .map(|m| m.values().map(|v| v.as_u64().unwrap()).sum())
            .unwrap_or(0);
        (s["last_seq"].as_u64().unwrap(), dropped, s)
    };
    wait_for("1000 files decided", LONG, || {
        let (kept, dropped, _) = decided(&a);
        (kept + dropped == 1000).then_some(())
    });
    // Customer exports arrive while the spool is full: they go into the reserve.
    for i in 0..5 {
        std::fs::write(
            a.watched.join(format!("export-{i}.csv")),
            corpus::salesforce_contacts(100 + i, 120),
        )
        .unwrap();
    }
    let (kept, dropped, status) = wait_for("the exports decided", LONG, || {
        let d = decided(&a);
        (d.0 + d.1 == 1005).then_some(d)
    });
    assert!(dropped > 0, "the bound must have been reached");
    assert!(status["spool_bytes"].as_u64().unwrap() <= 64 * 1024);
    assert_eq!(
        status["spool_dropped_unreported"],
        serde_json::json!({"created/none": dropped})
    );
    c.restart();
    wait_for("the drop report to arrive", LONG, || {
        let s = a.status();
        (s["spool_backlog"] == 0
            && s["spool_dropped_unreported"] == serde_json::json!({})
            && c.last_seqs().get(&id) == s["last_seq"].as_u64().as_ref())
        .then_some(())
    });
    let events = &by_device(&c)[&id];
    let lows = exactly_once(events, "low-");
    let exports = exactly_once(events, "export-");
    assert_eq!(exports.len(), 5, "every high-severity export is kept");
    let others: Vec<_> = events
        .iter()
        .filter(|e| {
            let p = e["path"].as_str().unwrap_or("");
            !p.contains("/low-") && !p.contains("/export-") && e["kind"] != "spool_dropped"
        })
        .collect();
    assert!(others.is_empty(), "unexpected events: {others:?}");
    assert_eq!(lows.len() as u64 + dropped, 1000);
    assert_eq!(lows.len() as u64 + 5, kept);
    let reports: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "spool_dropped")
        .collect();
    assert_eq!(reports.len(), 1);
    let overflow: Vec<_> = system_alerts(&c)
        .into_iter()
        .filter(|a| a["rule_id"] == "holdfast.spool_overflow")
        .collect();
    assert_eq!(overflow.len(), 1);
    assert_eq!(overflow[0]["records"], dropped);
    assert_eq!(
        overflow[0]["detail"],
        format!(
            "the agent's spool was full and it dropped {dropped} events (created/none={dropped})"
        )
    );
}

#[test]
fn tampered_spool_rows_and_expired_tokens_are_caught() {
    let _t = turn();
    let (tmp, mut c) = Collector::scratch("");

    // An expired token is refused by name.
    let token = c
        .cli(&["token", "create", "--user", "old", "--ttl", "1s"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let late = tmp.path().join("late").display().to_string();
    let err = run_err("holdfast-agent", &enroll_args(&c.addr(), &token, &late));
    assert!(err.contains("token expired"), "{err}");

    // A leaver edits one spooled event and deletes another while the collector is away.
    let mut a = Agent::enroll_and_start(tmp.path(), &c, "ivy");
    c.kill();
    a.write_files("t", 6);
    spooled(&a, 6);
    assert!(a.stop());
    let db = rusqlite::Connection::open(a.data_dir.join("spool.db")).unwrap();
    let innocent = EventBody::File(FileActivity {
        size: Some(1),
        ..FileActivity::new(Action::Created, "/home/ivy/Downloads/holiday.jpg")
    });
    db.execute(
        "UPDATE spool SET body = ?1 WHERE seq = 2",
        [innocent.to_bytes().unwrap()],
    )
    .unwrap();
    db.execute("DELETE FROM spool WHERE seq = 5", []).unwrap();
    drop(db);
    c.restart();
    a.start();
    drained(&a, &c);
    let mut found: Vec<(String, String)> = system_alerts(&c)
        .into_iter()
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap().to_string(),
                a["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    // The stop before the tampering is reported as a stop (who sent the signal).
    let stop = found.remove(0);
    assert_eq!(stop.0, "holdfast.agent_stopped");
    assert!(stop.1.contains("SIGTERM from pid"), "{stop:?}");
    assert_eq!(
        found,
        vec![
            (
                "holdfast.chain_broken".to_string(),
                "event 3 does not link to event 2: an event was edited on the device".to_string()
            ),
            (
                "holdfast.sequence_gap".to_string(),
                "events 5..5 never arrived".to_string()
            ),
        ]
    );
}

#[test]
fn signed_policies_reach_agents_and_stale_devices_show() {
    let _t = turn();
    let (tmp, c, mut a) = holdfast_tests::scene("", "jon", "heartbeat_ms = 300");
    let id = device_id(&a);
    wait_for("the first heartbeat", SHORT, || {
        c.devices()[0]["policy_version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(|_| ())
    });
    a.stop();
    let pdir = holdfast_tests::policy_dir(
        tmp.path(),
        "notes.toml",
        "[[rule]]\nid = \"notes-watch\"\nseverity = \"medium\"\nactions = [\"created\"]\npaths = [\"~/Downloads/**/*.txt\"]\n",
    );
    let published: serde_json::Value = serde_json::from_str(
        c.cli(&["policy", "publish", &pdir.display().to_string(), "--json"])
            .trim(),
    )
    .unwrap();
    assert_eq!(published["changed"], true);
    let version = published["version"].as_str().unwrap().to_string();
    // Publishing again is a no-op.
    let again = c.cli(&["policy", "publish", &pdir.display().to_string()]);
    assert!(again.contains("already the published one"), "{again}");
    let status = |c: &Collector| -> serde_json::Value {
        serde_json::from_str(c.cli(&["policy", "status", "--json"]).trim()).unwrap()
    };
    assert_eq!(status(&c)["stale_devices"][0]["device_id"], id.as_str());
    assert_eq!(c.devices()[0]["policy_stale"], true);

    a.start();
    wait_for("the agent to run the signed bundle", SHORT, || {
        let s = a.status();
        (s["policy_source"] == "collector" && s["policy_version"] == version.as_str()).then_some(())
    });
    wait_for("no stale device", SHORT, || {
        (status(&c)["stale_devices"] == serde_json::json!([])).then_some(())
    });
    assert_eq!(c.devices()[0]["policy_stale"], false);
    std::fs::write(a.watched.join("minutes.txt"), "meeting notes").unwrap();
    wait_for("the new rule to alert", SHORT, || {
        c.alerts()
            .iter()
            .any(|al| al["rule_id"] == "notes-watch")
            .then_some(())
    });

    // A saved bundle edited on disk is not trusted; the collector's copy is fetched again.
    a.stop();
    let saved = a.data_dir.join("policy.signed");
    let mut bytes = std::fs::read(&saved).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&saved, bytes).unwrap();
    a.start();
    assert!(a.log().contains("ignoring the saved policy bundle"));
    wait_for("the bundle to be fetched again", SHORT, || {
        let s = a.status();
        (s["policy_source"] == "collector" && s["policy_version"] == version.as_str()).then_some(())
    });
}

#[test]
fn certificates_renew_before_they_expire() {
    let _t = turn();
    let (tmp, c) = Collector::scratch("cert_lifetime = \"12s\"");
    let mut a = Agent::enroll(tmp.path(), &c, "kim", "heartbeat_ms = 500");
    let enrolled = Instant::now();
    a.start();
    let first = c.devices()[0]["cert_serial"].as_str().unwrap().to_string();
    wait_for("a renewal", SHORT, || {
        (c.devices()[0]["cert_serial"].as_str() != Some(first.as_str())).then_some(())
    });
    // The collector records the new serial before its answer reaches the agent, so the
    // agent's own word that it saved the certificate may come a moment later.
    wait_for("the agent to save the renewed certificate", SHORT, || {
        a.log().contains("device certificate renewed").then_some(())
    });
    // Past the first certificate's expiry, a fresh start still connects and reports.
    let expiry = Duration::from_secs(13);
    if let Some(left) = expiry.checked_sub(enrolled.elapsed()) {
        std::thread::sleep(left);
    }
    a.stop();
    a.start();
    let path = a.write_files("after-expiry", 1).remove(0);
    wait_for("an event over the renewed certificate", SHORT, || {
        c.events()
            .iter()
            .any(|e| e["path"] == path.as_str())
            .then_some(())
    });
}

#[test]
fn skewed_clocks_are_flagged_and_do_not_misplace_events() {
    let _t = turn();
    let (tmp, c) = Collector::scratch("");
    let mut a = Agent::enroll(tmp.path(), &c, "lea", "");
    let two_hours: i64 = 2 * 3600 * 1000;
    a.env = vec![("HOLDFAST_CLOCK_SKEW_MS".into(), two_hours.to_string())];
    a.start();
    let skew = wait_for("the skew to be measured", SHORT, || {
        c.devices()[0]["clock_skew_ms"].as_i64()
    });
    assert!((skew - two_hours).abs() < 10_000, "skew {skew}");
    let alert = wait_for("a clock-skew alert", SHORT, || {
        system_alerts(&c)
            .into_iter()
            .find(|a| a["rule_id"] == "holdfast.clock_skew")
    });
    assert!(alert["detail"]
        .as_str()
        .unwrap()
        .contains("ahead of the collector's"));
    let path = a.write_files("skewed", 1).remove(0);
    let e = wait_for("the event", SHORT, || {
        c.events().into_iter().find(|e| e["path"] == path.as_str())
    });
    let (t, r, k) = (
        e["time_ms"].as_i64().unwrap(),
        e["received_ms"].as_i64().unwrap(),
        e["corrected_ms"].as_i64().unwrap(),
    );
    assert!(
        t - r > two_hours - 60_000,
        "device time is in the future: {e}"
    );
    assert!(
        k <= r && r - k < 60_000,
        "corrected time is near receipt: {e}"
    );
}

#[test]
fn silent_agents_raise_an_offline_alert_and_their_return_is_noted() {
    let _t = turn();
    let (_tmp, c, mut a) =
        holdfast_tests::scene("offline_after = \"2s\"", "max", "heartbeat_ms = 300");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        system_alerts(&c).is_empty(),
        "a heartbeating agent is not offline"
    );
    a.kill();
    wait_for("an offline alert", SHORT, || {
        system_alerts(&c)
            .into_iter()
            .find(|a| a["rule_id"] == "holdfast.agent_offline")
    });
    a.start();
    let back = wait_for("the return to be noted", SHORT, || {
        system_alerts(&c)
            .into_iter()
            .find(|a| a["detail"].as_str().unwrap().contains("back at"))
    });
    assert!(
        back["detail"].as_str().unwrap().starts_with("silent since"),
        "{back}"
    );
}

#[test]
fn hostile_frames_close_the_connection_and_udp_junk_disturbs_nobody() {
    let _t = turn();
    let (_tmp, c, a) = holdfast_tests::scene("", "ned", "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(hostile_frames(&c, &a));
    junk_udp(&c, &a);
}

/// An unknown message type and an oversized frame each close the connection with PROTOCOL.
async fn hostile_frames(c: &Collector, a: &Agent) {
    let identity = holdfast_agent::identity::Identity::load(&a.data_dir).unwrap();

    // An unknown message type and an oversized frame each close with PROTOCOL.
    let unknown: Vec<u8> = {
        // MessagePack {"launch_missiles": {}} in a version-1 frame.
        let mut body = vec![1u8, 0x81, 0xaf];
        body.extend_from_slice(b"launch_missiles");
        body.push(0x80);
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    };
    let oversized: Vec<u8> = {
        let mut f = ((5 * 1024 * 1024) as u32).to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n(0u8, 64 * 1024));
        f
    };
    for frame in [unknown, oversized] {
        let cfg = holdfast_agent::tls::identity_client(&identity).unwrap();
        let (endpoint, conn) = holdfast_agent::uplink::connect(&c.addr(), cfg)
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
        match tokio::time::timeout(SHORT, conn.closed()).await.unwrap() {
            quinn::ConnectionError::ApplicationClosed(cl) => {
                assert_eq!(cl.error_code, close::PROTOCOL.into())
            }
            other => panic!("expected a PROTOCOL close, got {other:?}"),
        }
        endpoint.close(0u32.into(), b"");
    }
}

/// Junk datagrams at the collector's port while a real agent reports: nothing is lost.
fn junk_udp(c: &Collector, a: &Agent) {
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = c.addr();
    let flood = std::thread::spawn(move || {
        let mut sent = 0;
        for i in 0..20_000u32 {
            let len = 1 + (i as usize * 7919) % 1400;
            let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            if junk.send_to(&bytes, &target).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    let before = a.status()["last_seq"].as_u64().unwrap();
    let paths = a.write_files("amid-junk", 300);
    assert!(flood.join().unwrap() > 19_000);
    let id = device_id(a);
    // Every file spooled first (they settle while the flood runs), then every one delivered.
    spooled(a, before + 300);
    drained(a, c);
    let stored = exactly_once(&by_device(c)[&id], "amid-junk-");
    assert_eq!(stored.len(), paths.len());
}

/// Writes a master list of `n` customers (an email and a mobile each, then one broken row)
/// under `dir` and imports it with `edm import` (the set also written to `dir/set.edm`);
/// returns the import's JSON report.
fn import_customers(c: &Collector, dir: &std::path::Path, n: usize) -> serde_json::Value {
    let list = dir.join("customers.csv");
    let mut text = String::from("Company,Email,Phone\n");
    for i in 0..n {
        text.push_str(&format!("Client {i},client{i}@example.com,139{i:08}\n"));
    }
    text.push_str("Broken,not-an-email,12\n");
    std::fs::write(&list, text).unwrap();
    let out = dir.join("set.edm");
    serde_json::from_str(
        c.cli(&[
            "edm",
            "import",
            &list.display().to_string(),
            "--columns",
            "email,phone",
            "--out",
            &out.display().to_string(),
            "--json",
        ])
        .trim(),
    )
    .unwrap()
}

/// How long the held file's header is (magic, length, signed manifest).
fn held_header_len(held: &[u8]) -> usize {
    12 + u32::from_be_bytes([held[8], held[9], held[10], held[11]]) as usize
}

/// A set over the old 4 MiB signed-body cap (1.2 M identifiers, three 2 MiB pieces) reaches
/// the agent piece by piece. An interrupted fetch resumes: a good first piece already in
/// `edm.partial` is not fetched again, a corrupted second one is. A restart loads the held
/// set and fetches nothing. Real customers in an export are counted, online and offline.
#[test]
fn customer_sets_reach_agents_in_pieces_and_count_real_customers() {
    const PIECE: usize = 2 * 1024 * 1024;
    let _t = turn();
    let (tmp, c) = Collector::scratch("");
    let mut a = Agent::enroll(tmp.path(), &c, "olga", "heartbeat_ms = 300");
    let imported = import_customers(&c, tmp.path(), 600_000);
    assert_eq!(imported["customers"], 600_000);
    assert_eq!(imported["identifiers"], 1_200_000);
    assert_eq!(imported["skipped_rows"], 1);
    assert_eq!(imported["skipped"][0]["line"], 600_002);
    let version = imported["version"].as_str().unwrap().to_string();
    // A fetch that stopped after the first piece, with the second torn by a bad disk.
    let held = std::fs::read(tmp.path().join("set.edm")).unwrap();
    let head = held_header_len(&held);
    let size = (held.len() - head) as f64;
    assert!(
        size > 4.0 * 1024.0 * 1024.0 && size <= 3.0 * PIECE as f64,
        "{size}"
    );
    let mut partial = held[..head + 2 * PIECE].to_vec();
    partial[head + PIECE + 17] ^= 0x40;
    std::fs::write(a.data_dir.join("edm.partial"), &partial).unwrap();
    a.start();
    wait_for("the agent to hold the set", LONG, || {
        (a.status()["edm_version"] == version.as_str()).then_some(())
    });
    assert_eq!(
        c.metric("holdfast_edm_bytes_served_total"),
        Some(size - PIECE as f64),
        "the first piece came from edm.partial"
    );
    assert!(a
        .log()
        .contains("resuming the customer set where it stopped"));
    assert_eq!(std::fs::read(a.data_dir.join("edm.held")).unwrap(), held);
    assert!(!a.data_dir.join("edm.partial").exists());
    // An export: 80 real customers, 40 strangers.
    let mut export = String::from("Account Name,Email,Phone\n");
    for i in 0..80 {
        export.push_str(&format!(
            "Client {i},CLIENT{i}@example.com,139 {:04} {:04}\n",
            i / 10000,
            i % 10000
        ));
    }
    for i in 0..40 {
        export.push_str(&format!("Stranger {i},stranger{i}@example.org,137{i:08}\n"));
    }
    let path = a.watched.join("accounts.csv");
    std::fs::write(&path, &export).unwrap();
    let alert = wait_for("a real-customers alert", SHORT, || {
        c.alert_where("rule_id", "customer-data.real-customers")
    });
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["records"], 120);
    // A restart loads the held set and fetches nothing more.
    a.stop();
    let restarted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    a.start();
    wait_for("the restarted agent to connect", SHORT, || {
        (a.status()["last_connected_ms"].as_i64()? >= restarted).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500)); // five heartbeats
    assert_eq!(a.status()["edm_version"], version.as_str());
    assert_eq!(
        c.metric("holdfast_edm_bytes_served_total"),
        Some(size - PIECE as f64)
    );
    // The same count offline, with the set `edm import --out` wrote.
    let scanned = holdfast_tests::json_lines(&holdfast_tests::run_ok(
        "holdfast-agent",
        &[
            "scan",
            "--json",
            "--edm",
            &tmp.path().join("set.edm").display().to_string(),
            &path.display().to_string(),
        ],
    ));
    // The 40 strangers' emails are 40 lookups at 32 bits against 600,000 customers: each is a
    // false match with chance 1 in 7,158 (the deployment key is new in every run), so one
    // in about 180 runs counts 81. Three or more false matches would take odds of 1 in 10⁷.
    let counted = scanned[0]["findings"]["edm"].as_u64().unwrap();
    assert!(
        (80..=82).contains(&counted),
        "{counted} real customers counted"
    );
}

/// Waits until every one of `paths` is stored.
fn all_stored(c: &Collector, paths: &[String], what: &str) {
    wait_for(what, DEADLINE, || {
        let got = stored_paths(c);
        paths.iter().all(|p| got.contains_key(p)).then_some(())
    });
}

/// The paths of the collector's stored events, with how often each was stored.
fn stored_paths(c: &Collector) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in c.events() {
        if let Some(p) = e["path"].as_str() {
            *out.entry(p.to_string()).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn a_spool_that_starts_over_is_a_new_stream_and_loses_nothing() {
    let (_tmp, c, mut a) = holdfast_tests::scene("", "gus", "heartbeat_ms = 300");
    let first = a.write_files("first", 5);
    all_stored(&c, &first, "the first files");
    // The spool is wiped (a reinstall, a disk restore): the next events start at seq 1 again,
    // below the collector's highest sequence number for this device.
    a.stop();
    for f in ["spool.db", "spool.db-wal", "spool.db-shm"] {
        let _ = std::fs::remove_file(a.data_dir.join(f));
    }
    a.start();
    let second = a.write_files("second", 3);
    // Under a loaded CI machine the restarted agent has taken over a minute to send (two CI
    // runs of four); the wait is for correctness, so it is long, and a timeout says why.
    let end = std::time::Instant::now() + LONG;
    let alert = loop {
        if let Some(alert) = c.alert_where("rule_id", "holdfast.spool_reset") {
            break alert;
        }
        assert!(
            std::time::Instant::now() < end,
            "no spool-reset alert after {LONG:?}; the agent logged:\n{}\nthe collector:\n{}",
            a.log(),
            c.proc.as_ref().map(|p| p.output()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        alert["detail"].as_str().unwrap().contains("started over"),
        "{alert}"
    );
    wait_for("every file of both spools, once", DEADLINE, || {
        let got = stored_paths(&c);
        first
            .iter()
            .chain(&second)
            .all(|p| got.get(p) == Some(&1))
            .then_some(())
    });
    // And nothing waits in the spool: the new chain's events were acknowledged, not dropped.
    wait_for("the spool to drain", DEADLINE, || {
        (a.status()["spool_backlog"].as_u64() == Some(0)).then_some(())
    });
    a.stop();
}

#[test]
fn two_agents_on_one_identity_are_detected_and_both_kept() {
    let (tmp, c, mut a) = holdfast_tests::scene("", "hal", "heartbeat_ms = 300");
    let early = a.write_files("early", 2);
    all_stored(&c, &early, "the early files");
    a.stop();
    // Its whole data directory (identity, key, spool) copied to a second machine.
    let mut twin = Agent::configured(tmp.path(), "twin", "heartbeat_ms = 300");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a.data_dir)
        .arg(&twin.data_dir)
        .status()
        .unwrap();
    assert!(out.success());
    a.start();
    twin.start();
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..3 {
        mine.extend(a.write_files(&format!("mine{round}"), 2));
        theirs.extend(twin.write_files(&format!("theirs{round}"), 2));
        std::thread::sleep(Duration::from_millis(700));
    }
    let alert = wait_for("the cloned-identity alert", DEADLINE, || {
        c.alert_where("rule_id", "holdfast.identity_cloned")
    });
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("two agents are sending as this device"),
        "{alert}"
    );
    wait_for("every file of both agents, once", DEADLINE, || {
        let got = stored_paths(&c);
        mine.iter()
            .chain(&theirs)
            .chain(&early)
            .all(|p| got.get(p) == Some(&1))
            .then_some(())
    });
    a.stop();
    twin.stop();
}

/// A customer set the agent refuses (here: signed with a key other than the one pinned at
/// enrollment, as a replaced or impostor collector would) is refused once and not fetched
/// again at every heartbeat; the refusal shows in `status`.
#[test]
fn a_refused_customer_set_is_not_fetched_again_at_every_heartbeat() {
    let _t = turn();
    let (tmp, c, a) = holdfast_tests::scene("", "olga", "heartbeat_ms = 300");
    // The collector's signing key is replaced after the agent pinned the old one.
    let key = c.dir.join("signing.key");
    std::fs::remove_file(&key).unwrap();
    import_customers(&c, tmp.path(), 1000);
    assert!(key.exists(), "a new signing key");
    let error = wait_for("the refusal", LONG, || {
        a.status()["last_update_error"].as_str().map(str::to_string)
    });
    assert_eq!(
        error,
        "customer set manifest refused: signature does not verify"
    );
    // Ten heartbeats later, still one refusal in the log and nothing fetched.
    std::thread::sleep(Duration::from_secs(3));
    let refusals = a.log().matches("customer set refused").count();
    assert_eq!(refusals, 1, "refused once: {error}");
    assert!(a.status()["edm_version"].is_null(), "no set applied");
    assert_eq!(c.metric("holdfast_edm_bytes_served_total"), Some(0.0));
}
