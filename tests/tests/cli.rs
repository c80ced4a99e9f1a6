//! The CLIs as a new user meets them: output piped into a reader that stops early, the data
//! found after a quickstart (or the exact flag to add), and every command the product prints
//! working when pasted into a shell.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{bin, wait_for, Collector};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `exe args` with stdout a pipe whose reader is already closed (as `… | head` leaves it).
fn into_closed_pipe(exe: &str, args: &[&str], home: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(bin(exe))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// `holdfast-collector args` with `HOME` at `home` (so the default data dirs are under it),
/// run in `cwd`.
fn in_home(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin("holdfast-collector"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A printed command, run by a shell as the user would paste it.
fn pasted(command: &str, home: &Path) -> Output {
    Command::new("sh")
        .args(["-c", command])
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("contacts.csv");
    std::fs::write(&file, holdfast_tests::corpus::salesforce_contacts(3, 60)).unwrap();
    let f = file.display().to_string();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let p = policies.display().to_string();
    for (exe, args) in [
        ("holdfast-agent", vec!["scan", f.as_str(), "--json"]),
        ("holdfast-agent", vec!["scan", f.as_str(), "--explain"]),
        ("holdfast-collector", vec!["policy", "check", p.as_str()]),
    ] {
        let out = into_closed_pipe(exe, &args, tmp.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{exe} {args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{exe} {args:?}: {err}"
        );
    }
}

#[test]
fn after_a_quickstart_the_cli_finds_its_data_or_names_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // Nothing anywhere: the error says which flags reach a collector's data.
    let none = in_home(&home, tmp.path(), &["alerts", "list"]);
    assert_eq!(none.status.code(), Some(2));
    let err = text(&none.stderr);
    assert!(
        err.contains("no collector database here; add --config with the server's collector.toml, or --data-dir with its data_dir"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // A collector in quickstart's data dir (what quickstart leaves behind).
    let quick = home.join(".local/share/holdfast/quickstart");
    let log = tmp.path().join("serve.log");
    let serve_toml = tmp.path().join("serve.toml");
    std::fs::write(
        &serve_toml,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{}\"\nhttp_listen = \"off\"\n",
            quick.display().to_string(),
            holdfast_tests::free_udp_port()
        ),
    )
    .unwrap();
    let mut serve = Command::new(bin("holdfast-collector"))
        .args(["serve", "--config", &serve_toml.display().to_string()])
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the collector to listen", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("collector listening")
            .then_some(())
    });
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(quick.join("collector.db").is_file());

    // No flag: quickstart's data is found.
    let found = in_home(&home, tmp.path(), &["alerts", "list"]);
    assert!(found.status.success(), "{}", text(&found.stderr));
    assert_eq!(text(&found.stdout).trim(), "no alerts");
    let users = in_home(&home, tmp.path(), &["users", "list", "--json"]);
    assert!(users.status.success(), "{}", text(&users.stderr));

    // README's `--config collector.toml`, which quickstart does not write: one line, the
    // cause once, and the flag that works.
    let missing = in_home(
        &home,
        tmp.path(),
        &["alerts", "list", "--config", "collector.toml"],
    );
    assert_eq!(missing.status.code(), Some(2));
    let err = text(&missing.stderr);
    let want = format!(
        "error: --config collector.toml: no such file (quickstart writes none: add --data-dir {} for its data, or write one as README's \"Running it for real\" shows)",
        quick.display()
    );
    assert_eq!(err.trim(), want);

    // A config that is there but unreadable names the cause once.
    let dir_as_config = in_home(&home, tmp.path(), &["alerts", "list", "--config", "home"]);
    let err = text(&dir_as_config.stderr);
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn the_commands_the_collector_prints_work_when_pasted() {
    let (tmp, c) = Collector::scratch("");
    let home = tmp.path();
    c.token("kim");
    let cfg = c.config.display().to_string();

    // After an offboarding: the follow-up command, pasted from any folder.
    let out = holdfast_tests::run_ok("holdfast-collector", &["offboard", "kim", "--config", &cfg]);
    let follow = out
        .lines()
        .find_map(|l| l.strip_prefix("follow it with: "))
        .unwrap_or_else(|| panic!("no follow-up command: {out}"));
    assert!(follow.contains("--config"), "{follow}");
    let status = pasted(follow, home);
    assert!(
        status.status.success(),
        "{follow}: {}",
        text(&status.stderr)
    );
    assert!(
        text(&status.stdout).contains("kim"),
        "{}",
        text(&status.stdout)
    );

    // Sent again with another effective date: refused, saying why, by the CLI and the API;
    // sent again as it was: unchanged.
    let moved = holdfast_tests::run(
        "holdfast-collector",
        &[
            "offboard",
            "kim",
            "--effective",
            "2030-01-01T00:00:00Z",
            "--config",
            &cfg,
        ],
    );
    assert_eq!(moved.status.code(), Some(2));
    assert!(
        text(&moved.stderr).contains("`kim` is already being offboarded, effective "),
        "{}",
        text(&moved.stderr)
    );
    let api = holdfast_tests::http::Client::new(&c.url("")).bearer(&c.api_token("it", "it_admin"));
    let body = |effective: Option<&str>| match effective {
        Some(e) => serde_json::json!({"user": "kim", "effective": e}),
        None => serde_json::json!({"user": "kim"}),
    };
    let conflict = api.send(
        "POST",
        "/api/v1/offboardings",
        &body(Some("2030-01-01T00:00:00Z")),
    );
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert!(
        conflict
            .error()
            .contains("the new effective time 2030-01-01T00:00:00Z is not applied"),
        "{}",
        conflict.body
    );
    let same = api.send("POST", "/api/v1/offboardings", &body(None));
    assert_eq!(
        (same.status, &same.json()["started"]),
        (200, &serde_json::json!(false))
    );

    // The console's login page: the command that makes a token for this collector.
    let page = holdfast_tests::http::Client::new(&c.url(""))
        .get("/login")
        .body;
    let create = page
        .split("<code>")
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .unwrap_or_else(|| panic!("no command on the login page: {page}"))
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("NAME", "pasted-analyst");
    let made = pasted(&create, home);
    assert!(made.status.success(), "{create}: {}", text(&made.stderr));
    assert!(
        text(&made.stdout).trim().starts_with("hfa_"),
        "{}",
        text(&made.stdout)
    );
    let tokens = c.cli(&["api-token", "list", "--json"]);
    assert!(tokens.contains("pasted-analyst"), "{tokens}");
}

#[test]
fn alerts_are_filtered_as_the_api_does_and_triaged_from_the_cli() {
    let (_tmp, c, agent) = holdfast_tests::scene("", "kim", "");
    std::fs::write(
        agent.watched.join("contacts.csv"),
        holdfast_tests::corpus::salesforce_contacts(4, 60),
    )
    .unwrap();
    std::fs::write(
        agent.watched.join("everyone.csv"),
        holdfast_tests::corpus::salesforce_contacts(5, 5000),
    )
    .unwrap();
    let all = wait_for("two alerts", Duration::from_secs(60), || {
        let a = c.alerts();
        (a.len() >= 2).then_some(a)
    });
    let id_of = |name: &str| {
        all.iter()
            .find(|a| a["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .and_then(|a| a["id"].as_i64())
            .unwrap_or_else(|| panic!("no alert on {name}: {all:?}"))
    };
    let (bulk, mass) = (id_of("/contacts.csv"), id_of("/everyone.csv"));
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["alerts", "list", "--json"];
        all.extend_from_slice(args);
        holdfast_tests::json_lines(&c.cli(&all))
            .iter()
            .filter_map(|a| a["id"].as_i64())
            .collect()
    };
    assert_eq!(ids(&["--severity", "critical"]), vec![mass]);
    assert_eq!(ids(&["--severity", "high"]), vec![bulk]);
    assert_eq!(ids(&["--rule", "crm-export.salesforce"]), vec![mass, bulk]);
    assert_eq!(
        ids(&["--rule", "crm-export.bulk-contacts"]),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&["--severity", "high,critical", "--user", "kim"]),
        vec![mass, bulk]
    );
    assert_eq!(ids(&["--user", "ann"]), Vec::<i64>::new());
    assert_eq!(ids(&["--since", "1h", "--sort", "newest"]).len(), 2);
    assert_eq!(ids(&["--until", "1h"]), Vec::<i64>::new());

    // Triage both, then close one as real and one as a false positive.
    let (b, m) = (bulk.to_string(), mass.to_string());
    let out = c.cli(&[
        "alerts",
        "triage",
        &b,
        &m,
        "--assignee",
        "sam",
        "--note",
        "looking",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(ids(&["--status", "triaged", "--assignee", "sam"]).len(), 2);
    c.cli(&["alerts", "resolve", &m, "--note", "leaver confirmed"]);
    c.cli(&["alerts", "dismiss", &b]);
    assert_eq!(ids(&["--status", "resolved"]), vec![mass]);
    assert_eq!(ids(&["--status", "false_positive"]), vec![bulk]);
    // Again: idempotent.
    c.cli(&["alerts", "dismiss", &b]);

    // An unknown id is named and the others still change; a bad flag value names the flag.
    let cfg = c.config.display().to_string();
    let out = holdfast_tests::run(
        "holdfast-collector",
        &["alerts", "triage", "999999", &m, "--config", &cfg],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: alert 999999: no alert 999999"
    );
    assert_eq!(ids(&["--status", "triaged"]), vec![mass]);
    let bad = holdfast_tests::run(
        "holdfast-collector",
        &[
            "alerts",
            "list",
            "--since",
            "last tuesday",
            "--config",
            &cfg,
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--since `last tuesday`"),
        "{}",
        text(&bad.stderr)
    );
    let bad = holdfast_tests::run(
        "holdfast-collector",
        &["alerts", "list", "--status", "open", "--config", &cfg],
    );
    assert!(
        text(&bad.stderr).contains("invalid value 'open' for '--status"),
        "{}",
        text(&bad.stderr)
    );

    // One version for the shipped folder: checked, published, and built into the agent.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let dir = dir.display().to_string();
    let checked = holdfast_tests::run_ok("holdfast-collector", &["policy", "check", &dir]);
    let version = checked
        .trim()
        .strip_suffix(')')
        .and_then(|l| l.rsplit("(version ").next())
        .unwrap_or_else(|| panic!("no version: {checked}"))
        .to_string();
    assert_eq!(agent.status()["policy_version"], version.as_str());
    let published: serde_json::Value =
        serde_json::from_str(c.cli(&["policy", "publish", &dir, "--json"]).trim()).unwrap();
    assert_eq!(published["version"], version.as_str());

    // Each change is in the audit log, by the CLI.
    let audit = c.cli(&["audit", "list", "--json"]);
    assert!(audit.contains("leaver confirmed"), "{audit}");
}

/// The shipped policy folder copied to `dir`, with `edit` applied to `file`.
fn policies_with(dir: &Path, file: &str, edit: impl Fn(&str) -> String) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = if name == file { edit(&text) } else { text };
        std::fs::write(dir.join(&name), text).unwrap();
    }
    dir.display().to_string()
}

#[test]
fn a_policy_mistake_is_reported_once_without_follow_on_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = policies_with(&tmp.path().join("typo"), "crm-export.toml", |t| {
        t.replacen("min_records = 50", "min_records = \"fifty\"", 1)
    });
    let twice = policies_with(&tmp.path().join("twice"), "crm-export.toml", |t| {
        t.replacen(
            "id = \"crm-export.mass-contacts\"",
            "id = \"crm-export.bulk-contacts\"",
            1,
        )
    });
    for (dir, want) in [
        (
            &typo,
            "crm-export.toml:27:15: invalid type: string \"fifty\", expected u64",
        ),
        (
            &twice,
            "rule[1].id: duplicate rule id `crm-export.bulk-contacts`",
        ),
    ] {
        let out = holdfast_tests::run("holdfast-collector", &["policy", "check", dir]);
        assert_eq!(out.status.code(), Some(1), "{dir}");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let errors: Vec<&str> = all.lines().filter(|l| l.contains(".toml:")).collect();
        assert_eq!(errors.len(), 1, "{all}");
        assert!(errors[0].contains(want), "{all}");
    }
}

/// `holdfast-agent enroll args` with `extra` environment, standard input closed.
fn enroll(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("holdfast-agent"));
    cmd.arg("enroll").args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn enrollment_errors_say_their_cause_once_and_name_the_address_with_the_likely_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("agent");
    let data_s = data.display().to_string();
    // A malformed token: the cause once, naming the flag.
    let out = enroll(
        &[
            "--collector",
            "127.0.0.1:1",
            "--token",
            "hf1.nope",
            "--data-dir",
            &data_s,
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.matches("token must look like").count(),
        1,
        "the cause once: {err}"
    );
    assert!(err.contains("--token"), "{err}");
    // No token anywhere: the three ways to give one are named.
    let out = enroll(&["--collector", "127.0.0.1:1", "--data-dir", &data_s], &[]);
    let err = text(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("HOLDFAST_ENROLL_TOKEN"),
        "{err}"
    );
    // A well-formed token to a port where nothing listens: the address, UDP and the
    // firewall named, and no cause repeated.
    let port = holdfast_tests::free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let token = format!("hf1.{}.{}", "ab".repeat(16), "cd".repeat(32));
    let out = enroll(
        &["--collector", &addr, "--data-dir", &data_s],
        &[("HOLDFAST_ENROLL_TOKEN", &token)],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr), "the address named: {err}");
    assert!(err.contains("UDP") && err.contains("firewall"), "{err}");
    assert!(!err.contains("timed out: timed out"), "{err}");
    assert!(!data.join("identity.toml").exists());
}

#[test]
fn enrolling_again_from_a_device_management_script_keeps_the_identity_and_succeeds() {
    let (_tmp, c) = Collector::scratch("");
    let tmp = tempfile::tempdir().unwrap();
    let data_s = tmp.path().join("agent").display().to_string();
    let token = c.token("ivy");
    let addr = c.addr();
    let env = [("HOLDFAST_ENROLL_TOKEN", token.as_str())];
    let first = enroll(&["--collector", &addr, "--data-dir", &data_s], &env);
    let said = text(&first.stdout);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(said.starts_with("enrolled as device "), "{said}");
    let device = said.split_whitespace().nth(3).unwrap().to_string();
    // The same script again, its token spent: nothing done, the same device, success.
    let again = enroll(&["--collector", &addr, "--data-dir", &data_s], &env);
    let said = text(&again.stdout);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        said.starts_with(&format!("already enrolled as device {device} ")),
        "{said}"
    );
    assert_eq!(c.devices().len(), 1, "{:?}", c.devices());
    // Another collector is refused without --force, naming the one enrolled with.
    let other = enroll(&["--collector", "127.0.0.1:9", "--data-dir", &data_s], &env);
    let err = text(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr) && err.contains("--force"), "{err}");
}

/// A stand-in for `systemctl` (no systemd runs here) that says `state` of every unit.
fn fake_systemctl(dir: &Path, state: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(format!("bin-{state}"));
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("systemctl");
    std::fs::write(&script, format!("#!/bin/sh\necho {state}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_disabled_service_says_farewell_and_a_stopped_one_does_not() {
    let (_tmp, c) = Collector::scratch("");
    let tmp = tempfile::tempdir().unwrap();
    let data_s = tmp.path().join("agent").display().to_string();
    let token = c.token("ivy");
    let out = enroll(
        &["--collector", &c.addr(), "--data-dir", &data_s],
        &[("HOLDFAST_ENROLL_TOKEN", token.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let farewell = |state: &str| {
        Command::new(bin("holdfast-agent"))
            .args([
                "farewell",
                "--data-dir",
                &data_s,
                "--reason",
                "service disabled",
            ])
            .args(["--if-disabled", "holdfast-agent.service"])
            .env("PATH", fake_systemctl(tmp.path(), state))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let device = || c.devices().into_iter().next().unwrap();
    // Still enabled: a stop or a shutdown, nothing sent.
    let out = farewell("enabled");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nothing sent"),
        "{}",
        text(&out.stdout)
    );
    assert!(device()["removed_ms"].is_null(), "{}", device());
    // Disabled: the collector is told, and shows the device removed, not offline.
    let out = farewell("disabled");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("was told"),
        "{}",
        text(&out.stdout)
    );
    let d = device();
    assert!(d["removed_ms"].is_i64(), "{d}");
    assert!(
        d["removed"].as_str().unwrap().contains("service disabled"),
        "{d}"
    );
    let alert = c.alert_where("rule_id", "holdfast.agent_removed").unwrap();
    assert_eq!(alert["severity"], "high", "not departing: {alert}");
}

#[test]
fn every_human_listing_opens_with_its_header_row() {
    let (_tmp, c, a) = holdfast_tests::scene("", "ivy", "heartbeat_ms = 300");
    let export = a.watched.join("crm-export.csv");
    std::fs::write(&export, holdfast_tests::corpus::salesforce_contacts(4, 80)).unwrap();
    let path = export.display().to_string();
    wait_for("the export stored", Duration::from_secs(60), || {
        c.event_where("path", &path)
    });
    c.api_token("soc", "analyst");
    for (args, header) in [
        (&["events", "list"][..], ["TIME", "DEVICE#SEQ", "USER"]),
        (&["api-token", "list"][..], ["NAME", "ROLE", "STATE"]),
        (&["alerts", "list"][..], ["ID", "SEVERITY", "RULE"]),
        (&["devices", "list"][..], ["DEVICE", "USER", "HOST"]),
        (&["users", "list"][..], ["USER", "RISK", "STATE"]),
        (&["audit", "list"][..], ["TIME", "ACTOR", "ACTION"]),
    ] {
        let shown = c.cli(args);
        let first = shown.lines().next().unwrap_or("");
        for h in header {
            assert!(
                first.split_whitespace().any(|w| w == h),
                "{args:?}: no {h} in the first line\n{shown}"
            );
        }
        assert!(
            shown.lines().count() >= 2,
            "{args:?}: a row under it\n{shown}"
        );
    }
}
