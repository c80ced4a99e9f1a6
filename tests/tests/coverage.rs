//! No silent misses, with real processes: a burst of 100,000 files in 1,000 new nested
//! folders, written faster than the kernel's event queue holds, is reported file by file,
//! none missed and none twice; a place that is polled instead of watched is still covered;
//! and the agent reports what it covers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, wait_for, Agent, Collector};
use std::collections::HashMap;
use std::time::Duration;

const FILES: usize = 100_000;
const DIRS: usize = 1_000;
/// One file in this many is a customer export; the others are small notes.
const CUSTOMER_EVERY: usize = 100;

#[test]
fn a_burst_of_100k_files_in_new_nested_folders_is_reported_once_each() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ana", "");
    let export = corpus::salesforce_contacts(3, 60);
    let burst = agent.watched.join("burst");
    let dirs: Vec<std::path::PathBuf> = (0..DIRS)
        .map(|d| {
            burst
                .join(format!("a{}", d / 100))
                .join(format!("b{}", d / 10 % 10))
                .join(format!("c{}", d % 10))
        })
        .collect();
    let mut customer = Vec::new();
    let mut write = |dir: &std::path::Path, i: usize| {
        if i.is_multiple_of(CUSTOMER_EVERY) {
            let p = dir.join(format!("contacts-{i:06}.csv"));
            std::fs::write(&p, &export).unwrap();
            customer.push(p.display().to_string());
        } else {
            std::fs::write(dir.join(format!("note-{i:06}.txt")), format!("note {i}\n")).unwrap();
        }
    };
    let per_dir = FILES / DIRS;
    // First half: each new folder gets its files the moment it exists, before the agent can
    // have watched it.
    for (d, dir) in dirs.iter().enumerate() {
        std::fs::create_dir_all(dir).unwrap();
        for k in 0..per_dir / 2 {
            write(dir, d * per_dir + k);
        }
    }
    // Second half with the agent frozen: far more events than the kernel queues (16,384 by
    // default), so the queue overflows for certain.
    let pid = agent.proc.as_ref().unwrap().pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    for (d, dir) in dirs.iter().enumerate() {
        for k in per_dir / 2..per_dir {
            write(dir, d * per_dir + k);
        }
    }
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(customer.len(), FILES / CUSTOMER_EVERY);

    let events = wait_for("every file of the burst", Duration::from_secs(600), || {
        let ev = collector.events();
        let files = ev
            .iter()
            .filter(|e| e["path"].as_str().is_some_and(|p| p.contains("/burst/")))
            .count();
        (files >= FILES).then_some(ev)
    });
    let mut per_path: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    for e in &events {
        if let Some(p) = e["path"].as_str().filter(|p| p.contains("/burst/")) {
            per_path.entry(p).or_default().push(e);
        }
    }
    assert_eq!(per_path.len(), FILES, "every file, under its own path");
    let twice: Vec<_> = per_path
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "reported more than once: {twice:?}");
    for p in &customer {
        let e = per_path[p.as_str()][0];
        assert_eq!(e["action"], "created", "{e}");
        assert_eq!(e["records"], 60, "{e}");
        assert!(!e["rules"].as_array().unwrap().is_empty(), "{e}");
    }
    // The burst really did outrun the kernel's queue, the agent said so, and its rescan
    // recovered what the queue lost.
    let log = agent.log();
    assert!(
        events.iter().any(|e| e["kind"] == "watch_overflow"),
        "no overflow notice: {}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(
        log.contains("rescan found changes"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    let status = agent.status();
    assert_eq!(status["coverage"]["watched_roots"], 1, "{status}");
    assert!(
        status["coverage"]["files"].as_u64().unwrap() >= FILES as u64,
        "{status}"
    );
    assert!(
        status["coverage"]["dirs"].as_u64().unwrap() > DIRS as u64,
        "{status}"
    );
}

#[test]
fn a_polled_place_is_covered_and_the_collector_sees_the_coverage() {
    let (tmp, collector) = Collector::scratch("");
    let share = tmp.path().join("share");
    std::fs::create_dir_all(share.join("old")).unwrap();
    std::fs::write(
        share.join("old/before.csv"),
        corpus::salesforce_contacts(1, 80),
    )
    .unwrap();
    let mut agent = Agent::enroll(
        tmp.path(),
        &collector,
        "ben",
        &format!(
            "poll = [{:?}]\npoll_ms = 500\nheartbeat_ms = 500",
            share.display().to_string()
        ),
    );
    agent.start();
    // What was there before the agent started is its baseline, not news.
    let status = wait_for("the agent's coverage", Duration::from_secs(30), || {
        let s = agent.status();
        s["coverage"].is_object().then_some(s)
    });
    assert_eq!(status["coverage"]["polled_roots"], 1, "{status}");
    assert_eq!(status["coverage"]["watched_roots"], 1, "{status}");
    let dropped = share.join("new/deep/customers.csv");
    std::fs::create_dir_all(dropped.parent().unwrap()).unwrap();
    std::fs::write(&dropped, corpus::salesforce_contacts(2, 90)).unwrap();
    let alert = wait_for("the polled file's alert", Duration::from_secs(30), || {
        collector.alert_where("path", &dropped.display().to_string())
    });
    assert_eq!(alert["records"], 90);
    assert!(
        !collector.events().iter().any(|e| e["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("before.csv"))),
        "the baseline is not reported"
    );
    let device = wait_for("coverage at the collector", Duration::from_secs(30), || {
        collector
            .devices()
            .into_iter()
            .find(|d| d["coverage"]["polled_roots"] == 1)
    });
    assert_eq!(device["coverage"]["watched_roots"], 1);
}

/// The kernel's watch limit, for real: the agent runs in a user namespace of its own whose
/// `user.max_inotify_watches` is 30 (the machine's own limit, and every other test's agent,
/// untouched), under a Downloads of 60 folders. It must say so as an event and in its status,
/// show as partly covered on the collector, and still find an export written deep inside by
/// scanning what it could not watch.
#[test]
fn an_exhausted_watch_limit_is_reported_and_what_is_left_is_polled() {
    let (tmp, collector) = Collector::scratch("");
    let mut agent = Agent::enroll(
        tmp.path(),
        &collector,
        "wen",
        "poll_ms = 500\nheartbeat_ms = 500",
    );
    for d in 0..60 {
        std::fs::create_dir_all(agent.watched.join(format!("clients/c{d:02}"))).unwrap();
    }
    agent.launcher = [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 30 > /proc/sys/user/max_inotify_watches && exec \"$@\"",
        "limited",
    ]
    .map(String::from)
    .to_vec();
    agent.start();
    let notice = wait_for("the watch-limit notice", Duration::from_secs(30), || {
        collector.event_where("kind", "watch_limit")
    });
    let message = notice["message"].as_str().unwrap();
    assert!(
        message.contains("limit on file watches was reached")
            && message.contains("scanned every 500ms instead of watched"),
        "{notice}"
    );
    let status = agent.status();
    assert_eq!(status["coverage"]["limit_reached"], true, "{status}");
    assert!(
        status["coverage"]["polled_roots"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // Written after the limit was hit, in a folder the agent may well not be watching.
    let deep = agent.watched.join("clients/c59/q4/customers.csv");
    std::fs::create_dir_all(deep.parent().unwrap()).unwrap();
    std::fs::write(&deep, corpus::salesforce_contacts(4, 75)).unwrap();
    let alert = wait_for("the export's alert", Duration::from_secs(30), || {
        collector.alert_where("path", &deep.display().to_string())
    });
    assert_eq!(alert["records"], 75);
    let events_for_it = collector
        .events()
        .into_iter()
        .filter(|e| e["path"] == deep.display().to_string())
        .count();
    assert_eq!(events_for_it, 1, "found once, whichever way");
    // The collector shows the device as watching less than its policy asks.
    let api = holdfast_tests::http::Client::new(&collector.url(""))
        .bearer(&collector.api_token("soc", "analyst"));
    let device = wait_for(
        "partial coverage at the collector",
        Duration::from_secs(30),
        || {
            api.get("/api/v1/devices").json()["devices"]
                .as_array()
                .and_then(|ds| ds.first().cloned())
                .filter(|d| d["health"] == "partial_coverage")
        },
    );
    assert_eq!(device["coverage"]["limit_reached"], true, "{device}");
    // And says why in plain words, in the CLI's event list too.
    let listed = collector.cli(&["events", "list"]);
    assert!(
        listed.lines().any(|l| l.contains("watch_limit")
            && l.contains("the kernel's limit on file watches was reached")),
        "{listed}"
    );
    assert!(listed.starts_with("TIME "), "a header row: {listed}");
}
