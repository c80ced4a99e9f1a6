//! SIEM forwarding against real receivers: a TCP listener that reads RFC 5424 frames, and a
//! local webhook endpoint; by severity, signed, once each across a collector restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::hook::{signed_json, Hook};
use holdfast_tests::{corpus, wait_for, Agent, Collector};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// A syslog receiver: accepts connections one after another and keeps every byte.
struct Syslog {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Syslog {
    fn start() -> Syslog {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Syslog { port, bytes }
    }

    /// The messages received so far, unframed (RFC 6587 octet counting), checking each
    /// frame's length.
    fn messages(&self) -> Vec<String> {
        let bytes = self.bytes.lock().unwrap().clone();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Some(sp) = rest.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            if rest.len() < sp + 1 + len {
                break; // a frame still arriving
            }
            out.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
            rest = &rest[sp + 1 + len..];
        }
        out
    }
}

#[test]
fn alerts_reach_syslog_and_a_webhook_by_severity_once_each_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let syslog = Syslog::start();
    let hook = Hook::start(vec![200], "ok");
    let secret = "soar-secret-0123456789";
    let mut collector = Collector::start_with(
        tmp.path(),
        &format!(
            "[[forward]]\nname = \"siem\"\nsyslog = \"127.0.0.1:{}\"\nmin_severity = \"high\"\n\n\
             [[forward]]\nname = \"soar\"\nwebhook = \"http://127.0.0.1:{}/alerts\"\nsecret = \"{secret}\"\nmin_severity = \"critical\"\n",
            syslog.port, hook.port
        ),
    );
    let agent = Agent::enroll_and_start(tmp.path(), &collector, "ana");
    let export = agent.watched.join("report1700000000000.csv");
    std::fs::write(&export, corpus::salesforce_contacts(7, 240)).unwrap();

    // A high alert: to syslog, not to the critical-only webhook.
    let msgs = wait_for("the high alert on syslog", DEADLINE, || {
        let m = syslog.messages();
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let m = &msgs[0];
    assert!(m.starts_with("<35>1 "), "facility 4, severity error: {m}");
    let fields: Vec<&str> = m.splitn(8, ' ').collect();
    assert_eq!(
        fields[3..7],
        ["holdfast-collector", "-", "alert", "[holdfast@32473"],
        "{m}"
    );
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "RFC 3339 time: {m}"
    );
    for part in [
        "rule=\"crm-export.salesforce\"",
        "severity=\"high\"",
        "user=\"ana\"",
        "records=\"240\"",
        &format!("path=\"{}\"]", export.display()),
    ] {
        assert!(m.contains(part), "{m} lacks {part}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        hook.requests.lock().unwrap().is_empty(),
        "a high alert is below the webhook's threshold"
    );

    // Offboard ana; her next customer file raises a critical alert: to both.
    collector.cli(&["offboard", "ana", "--reason", "left"]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        agent.watched.join("after-leaving.csv"),
        corpus::salesforce_contacts(9, 80),
    )
    .unwrap();
    let got = wait_for("the critical alert on the webhook", DEADLINE, || {
        let r = hook.requests.lock().unwrap().clone();
        (!r.is_empty()).then_some(r)
    });
    let (line, headers, body) = &got[0];
    assert_eq!(line, "POST /alerts HTTP/1.1");
    let v = signed_json(headers, body, secret);
    assert_eq!(v["source"], "holdfast");
    assert_eq!(v["alert"]["severity"], "critical");
    assert_eq!(v["alert"]["user"], "ana");
    let critical = wait_for("the critical alert on syslog", DEADLINE, || {
        let m = syslog.messages();
        m.iter().find(|m| m.starts_with("<34>1 ")).cloned()
    });
    assert!(
        critical.contains("holdfast.offboarded_access")
            || critical.contains("severity=\"critical\""),
        "{critical}"
    );

    // A crash and restart replay nothing once deliveries are confirmed (a syslog write is
    // confirmed when its connection is still open 300 ms later; a crash inside that window
    // resends: at least once). The cursors are durable.
    std::thread::sleep(Duration::from_secs(1));
    let (before_syslog, before_hook) =
        (syslog.messages().len(), hook.requests.lock().unwrap().len());
    collector.kill();
    collector.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        syslog.messages().len(),
        before_syslog,
        "{:#?}",
        syslog.messages()
    );
    assert_eq!(hook.requests.lock().unwrap().len(), before_hook);
    drop(agent);
}
