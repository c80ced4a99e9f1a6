//! The collector against a local user on its server and a guessing client, with real
//! processes: its files are its own, every state change and failed login is audited under
//! the OS user who ran the command, token guessing is rate-limited, listings cannot be
//! rewritten by escape sequences in file names, and enrollment takes its secret from a file
//! or standard input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::http::Client;
use holdfast_tests::{bin, corpus, json_lines, wait_for, Agent, Collector};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

/// Runs a collector subcommand with `USER` set to someone else: the audit must not care.
fn cli_as_spoofed(c: &Collector, args: &[&str]) -> String {
    let cfg = c.config.display().to_string();
    holdfast_tests::succeed(
        Command::new(bin("holdfast-collector"))
            .args(args)
            .args(["--config", &cfg])
            .env("USER", "mallory")
            .env_remove("SUDO_USER"),
    )
}

fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn files_audit_logins_and_listings_hold_against_local_users() {
    let (tmp, c) = Collector::scratch("");
    // Its files are its own: 0700 folder, 0600 database and keys.
    assert_eq!(mode(&c.dir), 0o700);
    for f in ["collector.db", "ca.key", "signing.key"] {
        let p = c.dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&c.dir.join("collector.db")), 0o600);

    // Every state change from the CLI is audited, under the OS user, whatever $USER says.
    cli_as_spoofed(&c, &["token", "create", "--user", "kim"]);
    let a = Agent::enroll_and_start(tmp.path(), &c, "kim");
    // The default pack, published (so the agent keeps raising CRM alerts).
    let pdir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    cli_as_spoofed(&c, &["policy", "publish", &pdir.display().to_string()]);
    let master = tmp.path().join("master.csv");
    std::fs::write(&master, corpus::salesforce_contacts(1, 50)).unwrap();
    cli_as_spoofed(
        &c,
        &[
            "edm",
            "import",
            &master.display().to_string(),
            "--columns",
            "email",
        ],
    );
    // A file whose name rewrites the terminal line above it.
    let evil = a.watched.join("x\x1b[1A\x1b[2Kreport1700000000000.csv");
    std::fs::write(&evil, corpus::salesforce_contacts(2, 120)).unwrap();
    wait_for("the alert on the odd name", Duration::from_secs(60), || {
        c.alerts()
            .iter()
            .any(|al| al["path"].as_str().is_some_and(|p| p.contains('\x1b')))
            .then_some(())
    });
    let device = a.status()["device_id"].as_str().unwrap().to_string();
    cli_as_spoofed(&c, &["devices", "revoke", &device]);

    // Guessing API tokens: ten wrong ones answer 401, then the address waits (429).
    let http = Client::new(&c.url(""));
    let mut codes = Vec::new();
    for i in 0..14 {
        let r = http
            .bearer(&format!("hfa_wrong{i:02}"))
            .get("/api/v1/alerts");
        codes.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
    }
    assert_eq!(&codes[..10], &[401; 10], "{codes:?}");
    assert_eq!(&codes[10..], &[429; 4], "{codes:?}");

    let audit = json_lines(&c.cli(&["audit", "list", "--json"]));
    let by = |action: &str| -> Vec<&serde_json::Value> {
        audit.iter().filter(|e| e["action"] == action).collect()
    };
    let who = format!("cli:{}", me());
    for action in [
        "token.create",
        "policy.publish",
        "edm.import",
        "device.revoke",
    ] {
        let lines = by(action);
        assert!(!lines.is_empty(), "no {action} in {audit:?}");
        assert!(
            lines
                .iter()
                .all(|e| e["actor"].as_str().unwrap().starts_with(&who)),
            "{action}: {lines:?}"
        );
    }
    assert!(audit.iter().all(|e| e["actor"] != "cli:mallory"));
    let failed = by("login.failed");
    assert_eq!(failed.len(), 10, "one line per checked failure: {failed:?}");
    assert!(failed.iter().all(|e| e["origin"] == "http 127.0.0.1"));

    // Human listings show the escape, never the raw byte.
    for args in [
        &["alerts", "list"][..],
        &["events", "list"][..],
        &["audit", "list"][..],
    ] {
        let text = c.cli(args);
        assert!(
            !text.contains('\x1b'),
            "{args:?} printed a raw ESC:\n{text}"
        );
    }
    assert!(c
        .cli(&["alerts", "list"])
        .contains("x\\x1b[1A\\x1b[2Kreport"));
}

#[test]
fn enrollment_takes_its_token_from_a_file_or_standard_input() {
    let (tmp, c) = Collector::scratch("");
    let token = c.token("ana");
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nwatch = []\n",
            tmp.path().join("a").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin("holdfast-agent"))
        .args(["enroll", "--collector", &c.addr(), "--token-file", "-"])
        .args(["--config", &cfg.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = holdfast_tests::checked("enroll", child.wait_with_output().unwrap());
    assert!(out.contains("enrolled as device"));
    // An empty file is a clear error naming the flag and file.
    let empty = tmp.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let out = Command::new(bin("holdfast-agent"))
        .args(["enroll", "--collector", &c.addr(), "--token-file"])
        .arg(&empty)
        .args(["--config", &cfg.display().to_string(), "--force"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--token-file {}: no token in it", empty.display())),
        "{err}"
    );
}
