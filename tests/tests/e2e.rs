//! End-to-end: real collector and agent processes on loopback, real QUIC with real
//! certificates, real SQLite files, real file-system events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_shared::event::{AgentNotice, EventBody, SealedEvent, GENESIS};
use holdfast_shared::time::UnixMs;
use holdfast_shared::wire::{close, Message};
use holdfast_tests::{corpus, enroll_args, run, run_err, wait_for, Agent, Collector};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn event_for<'a>(events: &'a [serde_json::Value], path: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["path"] == path).collect()
}

#[test]
fn crm_export_becomes_an_alert_and_lookalikes_do_not() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ada", "");

    let export = corpus::salesforce_contacts(7, 240);
    let roster = corpus::colleagues(8, 5);
    let prices = corpus::price_list(9, 300);
    let export_path = agent.watched.join("report1700000000000.csv");
    let roster_path = agent.watched.join("team.csv");
    let prices_path = agent.watched.join("prices-2024.csv");
    std::fs::write(&roster_path, &roster).unwrap();
    std::fs::write(&prices_path, &prices).unwrap();
    std::fs::write(&export_path, &export).unwrap();
    let (export_s, roster_s, prices_s) = (
        export_path.display().to_string(),
        roster_path.display().to_string(),
        prices_path.display().to_string(),
    );

    let events = wait_for("all three files to be stored", DEADLINE, || {
        let ev = collector.events();
        [&export_s, &roster_s, &prices_s]
            .iter()
            .all(|p| !event_for(&ev, p).is_empty())
            .then_some(ev)
    });
    let e = event_for(&events, &export_s);
    assert_eq!(e.len(), 1, "exactly one event for the export: {e:?}");
    assert_eq!(e[0]["sha256"], holdfast_shared::sha256_hex(&export));
    assert_eq!(e[0]["records"], 240);
    assert_eq!(e[0]["size"], export.len() as u64);
    assert_eq!(e[0]["user"], "ada");
    assert_eq!(e[0]["action"], "created");
    assert_eq!(event_for(&events, &roster_s)[0]["records"], 5);
    assert_eq!(event_for(&events, &prices_s)[0]["records"], 0);

    let alerts = collector.alerts();
    let paths: Vec<&str> = alerts.iter().filter_map(|a| a["path"].as_str()).collect();
    assert_eq!(
        paths,
        vec![export_s.as_str()],
        "only the export alerts: {alerts:?}"
    );
    let a = &alerts[0];
    // Recognised by its name and headers: one alert, naming the CRM.
    assert_eq!(a["rule_id"], "crm-export.salesforce");
    assert_eq!(a["severity"], "high");
    assert_eq!(a["status"], "new");
    assert_eq!(a["user"], "ada");
    assert_eq!(a["records"], 240);
    assert_eq!(a["sha256"], holdfast_shared::sha256_hex(&export));

    let devices = holdfast_tests::json_lines(&collector.cli(&["devices", "list", "--json"]));
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["user"], "ada");
    assert_eq!(a["device_id"], devices[0]["id"]);
    assert_eq!(agent.status()["spool_backlog"], 0);
}

#[test]
fn agent_spools_while_collector_is_down_and_delivers_exactly_once() {
    let (_tmp, mut collector, mut agent) = holdfast_tests::scene("", "bob", "");

    // One event through first, so the agent has a live connection that then dies.
    let warmup = agent.watched.join("warmup.txt");
    std::fs::write(&warmup, b"hello").unwrap();
    let warm_s = warmup.display().to_string();
    wait_for("warm-up event", DEADLINE, || {
        (!event_for(&collector.events(), &warm_s).is_empty()).then_some(())
    });

    collector.proc.as_mut().unwrap().kill();
    let export = corpus::salesforce_contacts(11, 300);
    let path = agent.watched.join("contacts_export.csv");
    std::fs::write(&path, &export).unwrap();
    let status = wait_for("the export to be spooled", DEADLINE, || {
        let s = agent.status();
        (s["spool_backlog"].as_u64().unwrap_or(0) >= 1).then_some(s)
    });
    assert!(status["last_seq"].as_u64().unwrap() >= 2);

    // Restart the agent too while offline: the spool survives it.
    let clean = agent
        .proc
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    assert!(clean, "the agent stops cleanly on SIGTERM while offline");
    agent.start();
    assert!(agent.status()["spool_backlog"].as_u64().unwrap() >= 1);

    collector.restart();
    let path_s = path.display().to_string();
    wait_for(
        "the spooled export to alert",
        Duration::from_secs(90),
        || {
            collector
                .alerts()
                .iter()
                .any(|a| a["path"] == path_s.as_str())
                .then_some(())
        },
    );
    wait_for("the spool to drain", DEADLINE, || {
        (agent.status()["spool_backlog"] == 0).then_some(())
    });
    let events = collector.events();
    let e = event_for(&events, &path_s);
    assert_eq!(e.len(), 1, "exactly once: {e:?}");
    assert_eq!(e[0]["sha256"], holdfast_shared::sha256_hex(&export));
    assert_eq!(e[0]["records"], 300);
    let alerts: Vec<_> = collector
        .alerts()
        .into_iter()
        .filter(|a| a["path"] == path_s.as_str())
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["event_count"], 1);
    // Sequence numbers are contiguous and unique per device.
    let mut seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
}

fn notice_batch() -> Message {
    let body = EventBody::Notice(AgentNotice {
        kind: "forged".into(),
        message: "should never be stored".into(),
        count: 1,
        counts: Default::default(),
    });
    Message::EventBatch {
        events: vec![SealedEvent::seal(1, UnixMs(0), "mallory", GENESIS, &body).unwrap()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_agents_without_a_valid_certificate() {
    let (tmp, collector) = Collector::scratch("");
    let ca = collector.ca_der();

    // 1. No client certificate: the connection is closed as unauthenticated.
    let cfg = holdfast_agent::tls::anonymous_client(&ca).unwrap();
    let (endpoint, conn) = holdfast_agent::uplink::connect(&collector.addr(), cfg)
        .await
        .unwrap();
    let err = holdfast_agent::uplink::exchange(&conn, &notice_batch())
        .await
        .unwrap_err();
    let reason = conn.closed().await;
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, close::UNAUTHENTICATED.into())
        }
        other => panic!("expected an application close, got {other:?} ({err})"),
    }
    endpoint.close(0u32.into(), b"");

    // 2. A certificate from another CA: the handshake itself fails.
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = ca_params.self_signed(&other_ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &other_ca_key);
    let dev_key = rcgen::KeyPair::generate().unwrap();
    let mut dev_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    dev_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let dev_cert = dev_params.signed_by(&dev_key, &issuer).unwrap();
    let _ = other_ca;
    let cfg = holdfast_agent::tls::agent_client(
        &ca,
        vec![dev_cert.der().clone()],
        &dev_key.serialize_der(),
    )
    .unwrap();
    // TLS 1.3 lets the client finish its side before the server has checked the client
    // certificate, so the refusal shows either at connect or on the first request; either
    // way the collector closes the connection with a TLS alert (QUIC crypto error 0x1XX).
    let closed = match holdfast_agent::uplink::connect(&collector.addr(), cfg).await {
        Err(holdfast_agent::uplink::UplinkError::Connection(e)) => e,
        Err(other) => panic!("unexpected connect error: {other}"),
        Ok((ep, conn)) => {
            let _ = holdfast_agent::uplink::exchange(&conn, &notice_batch())
                .await
                .unwrap_err();
            let reason = conn.closed().await;
            ep.close(0u32.into(), b"");
            reason
        }
    };
    match &closed {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            assert!(
                (0x100..0x200).contains(&code),
                "expected a TLS alert, got {closed:?}"
            );
        }
        other => panic!("expected the collector to close with a TLS alert, got {other:?}"),
    }

    // 3. A real agent process that never enrolled refuses to run, naming the fix.
    let cfg_path = tmp.path().join("unenrolled.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = {:?}\nwatch = [{:?}]\n",
            tmp.path().join("nobody").display().to_string(),
            tmp.path().display().to_string()
        ),
    )
    .unwrap();
    let err = run_err(
        "holdfast-agent",
        &["run", "--config", &cfg_path.display().to_string()],
    );
    assert!(err.contains("not enrolled"), "{err}");

    // Nothing from any of them was stored.
    let events = tokio::task::spawn_blocking(move || collector.events())
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn enrollment_tokens_are_single_use_and_pin_the_ca() {
    let (tmp, collector) = Collector::scratch("");
    let token = collector.token("carol");
    let addr = collector.addr();
    let d1 = tmp.path().join("d1").display().to_string();
    let d2 = tmp.path().join("d2").display().to_string();
    holdfast_tests::run_ok("holdfast-agent", &enroll_args(&addr, &token, &d1));
    let again = run_err("holdfast-agent", &enroll_args(&addr, &token, &d2));
    assert!(again.contains("token already used"), "{again}");
    // A token whose CA fingerprint is not this collector's: the agent refuses to talk.
    let fresh = collector.token("carol");
    let forged = format!("{}{}", &fresh[..fresh.len() - 64], "0".repeat(64));
    let err = run_err("holdfast-agent", &enroll_args(&addr, &forged, &d2));
    assert!(err.contains("collector CA does not match"), "{err}");
    // The un-forged token was not spent by the refused attempt.
    holdfast_tests::run_ok("holdfast-agent", &enroll_args(&addr, &fresh, &d2));
    let devices = holdfast_tests::json_lines(&collector.cli(&["devices", "list", "--json"]));
    assert_eq!(devices.len(), 2);
}

#[test]
fn policy_typo_is_reported_with_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = holdfast_tests::policy_dir(
        tmp.path(),
        "exports.toml",
        "[[rule]]\nid = \"x\"\nseverity = \"high\"\n[rule.content]\nmin_record = 50\n",
    );
    let d = dir.display().to_string();
    let out = run("holdfast-collector", &["policy", "check", &d]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:5:1: unknown field `min_record`, expected one of `min_records`, `min_findings`, `customer_table`",
        dir.join("exports.toml").display()
    );
    assert!(err.contains(&want), "{err}");
    // The agent refuses the same broken pack with the same message.
    let f = tmp.path().join("a.csv");
    std::fs::write(&f, "x\n").unwrap();
    let err = run_err(
        "holdfast-agent",
        &["scan", "--policies", &d, &f.display().to_string()],
    );
    assert!(err.contains(&want), "{err}");
    // The shipped pack is valid.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let ok = holdfast_tests::run_ok(
        "holdfast-collector",
        &["policy", "check", &shipped.display().to_string()],
    );
    assert!(
        ok.contains(" bulk-read rule(s), ") && ok.contains(" cloud service(s) OK (version "),
        "{ok}"
    );
    assert!(
        !ok.contains(" 0 bulk-read"),
        "the shipped pack monitors reads: {ok}"
    );
}

#[test]
fn scan_json_follows_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let export = corpus::salesforce_contacts(3, 120);
    let e = tmp.path().join("export.csv");
    let p = tmp.path().join("prices.csv");
    std::fs::write(&e, &export).unwrap();
    std::fs::write(&p, corpus::price_list(4, 50)).unwrap();
    let missing = tmp.path().join("missing.csv");
    let out = run(
        "holdfast-agent",
        &[
            "scan",
            "--json",
            &e.display().to_string(),
            &p.display().to_string(),
            &missing.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "a file could not be read");
    let lines = holdfast_tests::json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["sha256"], holdfast_shared::sha256_hex(&export));
    assert_eq!(lines[0]["size"], export.len() as u64);
    assert_eq!(lines[0]["records"], 120);
    assert_eq!(lines[0]["findings"]["email"], 120);
    assert_eq!(lines[0]["findings"]["phone"], 240);
    assert_eq!(lines[0]["rules"][0]["id"], "crm-export.salesforce");
    assert_eq!(lines[0]["rules"].as_array().map(Vec::len), Some(1));
    assert_eq!(lines[0]["customer_table"], true);
    assert_eq!(lines[0]["encoding"], "utf-8");
    assert_eq!(lines[0]["rules"][0]["severity"], "high");
    assert_eq!(lines[1]["records"], 0);
    assert_eq!(lines[1]["rules"].as_array().map(Vec::len), Some(0));
    assert!(lines[2]["error"].as_str().is_some_and(|s| !s.is_empty()));
    let ok = run(
        "holdfast-agent",
        &["scan", "--json", &e.display().to_string()],
    );
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn quickstart_runs_collector_and_agent_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("Documents")).unwrap();
    let data = tmp.path().join("qs");
    let port = holdfast_tests::free_udp_port();
    let http_port = holdfast_tests::free_tcp_port();
    let log = tmp.path().join("quickstart.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(holdfast_tests::bin("holdfast-collector"))
        .args([
            "quickstart",
            "--data-dir",
            &data.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            &format!("127.0.0.1:{http_port}"),
        ])
        .env("HOME", &home)
        .env("USER", "dana")
        .env("NO_COLOR", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("quickstart to be ready", DEADLINE, || {
        read_log().contains("Press Ctrl-C to stop").then_some(())
    });
    let out = read_log();
    assert!(
        out.contains(&home.join("Documents").display().to_string()),
        "{out}"
    );
    assert!(out.contains("alerts list --data-dir"), "{out}");
    // The console, with a one-time admin login that works once.
    assert!(
        out.contains(&format!("http://127.0.0.1:{http_port}/")),
        "{out}"
    );
    let login = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time admin login: "))
        .expect("a one-time login")
        .to_string();
    let console = holdfast_tests::http::Client::new(&format!("http://127.0.0.1:{http_port}"));
    let cookie = console.login(&login).expect("the one-time login logs in");
    assert_eq!(
        console.session(&cookie, None).get("/api/v1/me").json()["role"],
        "admin"
    );
    assert!(console.login(&login).is_none(), "a one-time login is spent");

    let export = corpus::salesforce_contacts(21, 150);
    let path = home.join("Documents").join("hubspot-contacts.csv");
    std::fs::write(&path, &export).unwrap();
    let d = data.display().to_string();
    let alerts = wait_for("the quickstart alert", DEADLINE, || {
        let a = holdfast_tests::json_lines(&holdfast_tests::run_ok(
            "holdfast-collector",
            &["alerts", "list", "--json", "--data-dir", &d],
        ));
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(alerts[0]["path"], path.display().to_string());
    assert_eq!(alerts[0]["user"], "dana");
    assert_eq!(alerts[0]["records"], 150);

    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = wait_for("quickstart to stop", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(
        status.success(),
        "quickstart exit: {status}\n{}",
        read_log()
    );
    assert!(read_log().contains("agent stopped"));
}

#[test]
fn revoked_device_is_cut_off_within_seconds_and_refused_after() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "erin", "");
    let first = agent.watched.join("before.txt");
    std::fs::write(&first, b"before revocation").unwrap();
    let first_s = first.display().to_string();
    wait_for("the first event", DEADLINE, || {
        (!event_for(&collector.events(), &first_s).is_empty()).then_some(())
    });
    let device = agent.status()["device_id"].as_str().unwrap().to_string();

    let out = collector.cli(&["devices", "revoke", &device]);
    assert!(out.contains("revoked"), "{out}");
    // Idempotent, and an unknown id is a clear error.
    collector.cli(&["devices", "revoke", &device]);
    let cfg = collector.config.display().to_string();
    let unknown = run(
        "holdfast-collector",
        &["devices", "revoke", "dev-nope", "--config", &cfg],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no device `dev-nope`"));

    // The open connection is closed by the collector, and reconnects are refused.
    wait_for(
        "the agent to be told it is revoked",
        Duration::from_secs(20),
        || {
            let s = agent.status();
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("revoked"))
                .then_some(())
        },
    );
    let after = agent.watched.join("contacts_after.csv");
    std::fs::write(&after, corpus::salesforce_contacts(5, 80)).unwrap();
    wait_for("the new event to be spooled", DEADLINE, || {
        (agent.status()["spool_backlog"].as_u64().unwrap_or(0) >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let after_s = after.display().to_string();
    assert!(
        event_for(&collector.events(), &after_s).is_empty(),
        "a revoked device's event was stored"
    );
    assert!(collector.alerts().is_empty());
    let devices = holdfast_tests::json_lines(&collector.cli(&["devices", "list", "--json"]));
    assert!(devices[0]["revoked_ms"].as_i64().is_some());
}

#[test]
fn a_busy_device_is_cut_off_too() {
    let (tmp, collector) = Collector::scratch("");
    // Heartbeats every 300 ms and a file every 200 ms: the connection is never idle.
    let agent = Agent::started(tmp.path(), &collector, "fay", "heartbeat_ms = 300");
    let device = agent.status()["device_id"].as_str().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (dir, s) = (agent.watched.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut i = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::write(dir.join(format!("n{i}.txt")), format!("note {i}"));
            i += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    collector.cli(&["devices", "revoke", &device]);
    wait_for(
        "the busy agent to be told it is revoked",
        Duration::from_secs(15),
        || {
            agent.status()["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("revoked"))
                .then_some(())
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}
