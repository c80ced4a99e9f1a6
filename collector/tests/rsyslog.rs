//! Lossless SIEM forwarding against a real rsyslog (Debian's `rsyslogd`, started here on
//! loopback with `imtcp`, and `imtcp` over TLS with the gtls driver): 1,000 alerts raised
//! through the real ingest path while the plain receiver is restarted mid-stream all arrive;
//! an alert escalated to critical after it was first forwarded reaches the critical-only TLS
//! forwarder; `/metrics` shows each forwarder's lag and failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_collector::store::{Device, Store};
use holdfast_shared::event::{
    Action, ContentSummary, EventBody, FileActivity, RuleMatch, SealedEvent, Severity, GENESIS,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real rsyslogd in the foreground, writing each message's structured data to a file.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

impl Rsyslog {
    fn start(dir: PathBuf, tls: bool) -> Rsyslog {
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Rsyslog {
            port: free_port(),
            dir,
            tls,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let d = self.dir.display();
        let (global_tls, module_tls) = if self.tls {
            (
                format!(
                    " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" DefaultNetstreamDriverCertFile=\"{d}/cert.pem\" DefaultNetstreamDriverKeyFile=\"{d}/key.pem\""
                ),
                " StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\"",
            )
        } else {
            (String::new(), "")
        };
        std::fs::write(
            self.dir.join("rsyslog.conf"),
            format!(
                "global(workDirectory=\"{d}\"{global_tls})\n\
                 module(load=\"imtcp\"{module_tls})\n\
                 input(type=\"imtcp\" port=\"{}\" address=\"127.0.0.1\")\n\
                 template(name=\"sd\" type=\"string\" string=\"%structured-data%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{d}/received.log\" template=\"sd\")\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("rsyslogd.out")).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-gnutls)");
        self.child = Some(child);
        let port = self.port;
        wait_for("rsyslogd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
    }

    /// SIGTERM (rsyslog's own shutdown, closing its sessions), then a new process on the
    /// same port.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Every message received: (alert id, version, severity).
    fn received(&self) -> Vec<(i64, i64, String)> {
        let text = std::fs::read_to_string(self.dir.join("received.log")).unwrap_or_default();
        let field = |line: &str, k: &str| {
            let at = line.find(&format!(" {k}=\""))? + k.len() + 3;
            let end = line[at..].find('"')? + at;
            Some(line[at..end].to_string())
        };
        text.lines()
            .filter_map(|l| {
                Some((
                    field(l, "id")?.parse().ok()?,
                    field(l, "version")?.parse().ok()?,
                    field(l, "severity")?,
                ))
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test CA and a certificate for 127.0.0.1, in PEM, for the TLS receiver.
fn tls_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "holdfast test SIEM CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// A device whose events the test seals and ingests itself, through the real ingest path.
struct Chain {
    device: Device,
    seq: u64,
    prev: [u8; 32],
}

impl Chain {
    fn event(&mut self, path: &str, severity: Severity) -> SealedEvent {
        self.seq += 1;
        let body = EventBody::File(FileActivity {
            size: Some(1000),
            sha256: Some(format!("{:064x}", self.seq)),
            summary: Some(ContentSummary {
                file_type: "csv".into(),
                records: 200,
                customer_table: true,
                ..Default::default()
            }),
            rules: vec![RuleMatch {
                id: "crm-export.bulk-contacts".into(),
                severity,
            }],
            ..FileActivity::new(Action::Created, path)
        });
        let now = holdfast_collector::now_ms();
        let e = SealedEvent::seal(self.seq, now, &self.device.user, self.prev, &body).unwrap();
        self.prev = e.hash();
        e
    }
}

fn metric(text: &str, name: &str, forwarder: &str) -> Option<f64> {
    let prefix = format!("{name}{{forwarder=\"{forwarder}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_real_rsyslog_restarted_mid_stream_gets_all_1000_alerts_and_escalations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut plain = Rsyslog::start(tmp.path().join("rsyslog-plain"), false);
    let tls_dir = tmp.path().join("rsyslog-tls");
    tls_files(&tls_dir);
    let tls = Rsyslog::start(tls_dir.clone(), true);
    let http_port = free_port();
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\n\n\
             [[forward]]\nname = \"siem\"\nsyslog = \"127.0.0.1:{}\"\nmin_severity = \"low\"\n\n\
             [[forward]]\nname = \"soc-critical\"\nsyslog_tls = \"127.0.0.1:{}\"\nca_file = {:?}\nmin_severity = \"critical\"\n",
            tmp.path().join("data").display().to_string(),
            free_port(),
            plain.port,
            tls.port,
            tls_dir.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("serve.log")).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_holdfast-collector"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let serve_log = tmp.path().join("serve.log");
    wait_for("the collector to listen", || {
        std::fs::read_to_string(&serve_log)
            .unwrap_or_default()
            .contains("collector listening")
            .then_some(())
    });
    // Give both forwarders their cursor (at the newest alert: none yet).
    std::thread::sleep(Duration::from_secs(1));
    let mut store = Store::open(&tmp.path().join("data/collector.db")).unwrap();
    let device = Device {
        id: "dev-siem-test".into(),
        user: "ana".into(),
        hostname: "laptop".into(),
        os: "linux".into(),
        cert_sha256: "ab".repeat(32),
        cert_serial: "01".into(),
        first_seq: 1,
        ..Default::default()
    };
    store.add_device(&device).unwrap();
    let mut chain = Chain {
        device: device.clone(),
        seq: 0,
        prev: GENESIS,
    };
    // 1,000 alerts in batches of 50, the plain receiver restarted halfway.
    for batch in 0..20 {
        let events: Vec<SealedEvent> = (0..50)
            .map(|i| {
                chain.event(
                    &format!("/home/ana/Downloads/export-{:04}.csv", batch * 50 + i),
                    Severity::High,
                )
            })
            .collect();
        store
            .ingest(&device, &events, holdfast_collector::now_ms())
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        if batch == 10 {
            plain.restart();
        }
    }
    let ids: BTreeSet<i64> = store
        .alerts(5000)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids.len(), 1000);
    let got = wait_for("all 1,000 alerts at the plain receiver", || {
        let got: BTreeSet<i64> = plain.received().into_iter().map(|(id, _, _)| id).collect();
        ids.is_subset(&got).then_some(got)
    });
    assert_eq!(got, ids, "nothing else arrives");
    assert!(
        tls.received().is_empty(),
        "no alert was critical yet: {:?}",
        tls.received()
    );

    // An alert already forwarded as high is escalated by a later event: the critical-only
    // TLS forwarder gets it, and the plain one gets its new version.
    let before = store
        .alerts(5000)
        .unwrap()
        .into_iter()
        .find(|a| a.path == "/home/ana/Downloads/export-0005.csv")
        .unwrap();
    let e = chain.event("/home/ana/Downloads/export-0005.csv", Severity::Critical);
    store
        .ingest(&device, &[e], holdfast_collector::now_ms())
        .unwrap();
    let escalated = wait_for("the escalation at the critical-only TLS receiver", || {
        tls.received()
            .into_iter()
            .find(|(id, _, _)| *id == before.id)
    });
    assert_eq!(escalated.2, "critical");
    wait_for("the escalation at the plain receiver too", || {
        plain
            .received()
            .into_iter()
            .any(|(id, _, sev)| id == before.id && sev == "critical")
            .then_some(())
    });
    assert_eq!(tls.received().len(), 1, "{:?}", tls.received());

    // The forwarders' lag and failures, as /metrics shows them.
    let metrics = wait_for("the lag to drain", || {
        let text = ureq::get(&format!("http://127.0.0.1:{http_port}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        // Both cursors move only once their last delivery is confirmed (300 ms after it).
        let drained = |f: &str| metric(&text, "holdfast_forward_lag_alerts", f) == Some(0.0);
        (drained("siem") && drained("soc-critical")).then_some(text)
    });
    assert!(
        metric(&metrics, "holdfast_forward_delivered_total", "siem").unwrap() >= 1001.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "holdfast_forward_failures_total", "siem").is_some(),
        "{metrics}"
    );
    let _ = serve.kill();
    let _ = serve.wait();
}
