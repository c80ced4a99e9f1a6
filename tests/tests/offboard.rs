//! Offboarding with real processes: a user with two devices, one offline, is offboarded;
//! each device quarantines its customer files, strips access to the customer folder and
//! purges the CRM cache when it is online, the status shows both done, a restore brings the
//! files back byte-identical, and a tampered order is refused by the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::hook::{signed_json, Hook};
use holdfast_tests::{corpus, is_root, json_lines, run, run_err, wait_for, Agent, Collector};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// The uid and gid that own the user's customer folder in this test.
const USER_UID: u32 = 4242;

/// Whether `USER_UID` can read `path` (run `cat` as that uid; needs root).
fn user_can_read(path: &Path) -> bool {
    std::process::Command::new("cat")
        .arg(path)
        .uid(USER_UID)
        .gid(USER_UID)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One device's files: an export in the watched folder, a note beside it, a customer folder
/// owned by the user, and a CRM cache.
struct Seeded {
    export: PathBuf,
    export_bytes: Vec<u8>,
    note: PathBuf,
    customers: PathBuf,
    accounts: PathBuf,
    cache: PathBuf,
}

fn seed(a: &Agent, seed: u64) -> Seeded {
    let home = a.home();
    let export = a.watched.join("report1700000000000.csv");
    let export_bytes = corpus::salesforce_contacts(seed, 240);
    std::fs::write(&export, &export_bytes).unwrap();
    let note = a.watched.join("lunch.txt");
    std::fs::write(&note, "lunch at noon").unwrap();
    let customers = home.join("Customers");
    std::fs::create_dir_all(&customers).unwrap();
    let accounts = customers.join("accounts.txt");
    std::fs::write(&accounts, "key accounts: see CRM").unwrap();
    if is_root() {
        for p in [&customers, &accounts] {
            std::os::unix::fs::chown(p, Some(USER_UID), Some(USER_UID)).unwrap();
        }
    }
    let cache = home.join(".sfdx");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("alias.json"), "{\"orgs\":{}}").unwrap();
    std::fs::write(cache.join("key.json"), "{\"token\":\"00D...\"}").unwrap();
    Seeded {
        export,
        export_bytes,
        note,
        customers,
        accounts,
        cache,
    }
}

fn status(c: &Collector, user: &str) -> serde_json::Value {
    serde_json::from_str(c.cli(&["offboard", "status", user, "--json"]).trim()).unwrap()
}

/// The device's state in `offboard status` (of its latest order).
fn device_state(c: &Collector, user: &str, device_id: &str) -> String {
    status(c, user)["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == device_id)
        .map(|d| d["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn device_id(a: &Agent) -> String {
    a.status()["device_id"].as_str().unwrap().to_string()
}

/// The quarantine manifest entries of every order on this device.
fn manifest(a: &Agent) -> Vec<(serde_json::Value, PathBuf)> {
    let mut out = Vec::new();
    let base = a.data_dir.join("offboard/quarantine");
    for d in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        for name in ["manifest.jsonl", "manifest.restored.jsonl"] {
            if let Ok(text) = std::fs::read_to_string(d.path().join(name)) {
                for v in json_lines(&text) {
                    let stored = d.path().join(v["stored"].as_str().unwrap());
                    out.push((v, stored));
                }
            }
        }
    }
    out
}

fn assert_offboarded(a: &Agent, s: &Seeded) {
    // Quarantined: gone from its place, in quarantine, SHA-256 as the manifest says.
    assert!(!s.export.exists(), "{} still in place", s.export.display());
    assert!(s.note.exists(), "a file without customers stays");
    let m = manifest(a);
    assert_eq!(m.len(), 1, "{m:?}");
    let (entry, stored) = &m[0];
    assert_eq!(entry["original"], s.export.display().to_string());
    let bytes = std::fs::read(stored).unwrap();
    assert_eq!(entry["sha256"], holdfast_shared::sha256_hex(&bytes));
    assert_eq!(bytes, s.export_bytes);
    assert_eq!(std::fs::metadata(stored).unwrap().mode() & 0o777, 0o600);
    // Access stripped.
    let meta = std::fs::metadata(&s.customers).unwrap();
    if is_root() {
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
        assert!(
            !user_can_read(&s.accounts),
            "the user can still read their customer folder"
        );
    } else {
        assert_eq!(meta.mode() & 0o777, 0);
    }
    // Cache purged.
    assert!(!s.cache.exists());
}

#[test]
fn offboarding_two_devices_one_offline_then_restore() {
    let tmp = tempfile::tempdir().unwrap();
    // The user (uid 4242) must be able to reach their home for the access checks.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = Collector::start(tmp.path());
    let fast = "heartbeat_ms = 300";
    let mut laptop = Agent::enroll_device(tmp.path(), &c, "kim", "kim-laptop", fast);
    let mut desktop = Agent::enroll_device(tmp.path(), &c, "kim", "kim-desktop", fast);
    let (laptop_id, desktop_id) = (device_id(&laptop), device_id(&desktop));
    let on_laptop = seed(&laptop, 1);
    let on_desktop = seed(&desktop, 2);
    if is_root() {
        assert!(user_can_read(&on_laptop.accounts), "the test's own premise");
    }
    laptop.start();

    // Bad input: an unknown user is refused by name.
    let cfg = c.config.display().to_string();
    let err = run_err(
        "holdfast-collector",
        &["offboard", "nobody", "--config", &cfg],
    );
    assert!(err.contains("unknown user `nobody`"), "{err}");

    let first = c.cli(&[
        "offboard",
        "kim",
        "--reason",
        "resigned",
        "--lookback",
        "30d",
    ]);
    assert!(
        first.contains("offboarding started; 2 device(s)"),
        "{first}"
    );
    // A second time changes nothing.
    let again = c.cli(&["offboard", "kim", "--reason", "resigned"]);
    assert!(
        again.contains("already being offboarded; nothing changed"),
        "{again}"
    );
    let st = status(&c, "kim");
    assert_eq!(st["devices"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["reason"], "resigned");
    assert_eq!(st["lookback_ms"], 30u64 * 86_400_000);

    wait_for("the laptop to carry out its order", DEADLINE, || {
        (device_state(&c, "kim", &laptop_id) == "done").then_some(())
    });
    assert_eq!(device_state(&c, "kim", &desktop_id), "pending");
    assert_offboarded(&laptop, &on_laptop);
    // The offline desktop has done nothing yet.
    assert!(on_desktop.export.exists() && on_desktop.cache.exists());

    // The desktop comes back and carries out the same order.
    desktop.start();
    wait_for("the desktop to carry out its order", DEADLINE, || {
        (device_state(&c, "kim", &desktop_id) == "done").then_some(())
    });
    assert_offboarded(&desktop, &on_desktop);
    let st = status(&c, "kim");
    for d in st["devices"].as_array().unwrap() {
        let receipts = d["orders"][0]["receipts"].as_array().unwrap();
        let actions: Vec<(&str, bool, u64)> = receipts
            .iter()
            .map(|r| {
                (
                    r["action"].as_str().unwrap(),
                    r["ok"].as_bool().unwrap(),
                    r["items"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("quarantine", true, 1),
                ("strip_access", true, 1),
                ("purge", true, 2)
            ],
            "{d}"
        );
    }
    let text = c.cli(&["offboard", "status", "kim"]);
    assert_eq!(text.matches("DONE").count(), 2, "{text}");

    // Restore: files back byte-identical, access back.
    let restored = c.cli(&["offboard", "restore", "kim"]);
    assert!(restored.contains("restore ordered"), "{restored}");
    for (a, s, id) in [
        (&laptop, &on_laptop, &laptop_id),
        (&desktop, &on_desktop, &desktop_id),
    ] {
        wait_for("the restore to be carried out", DEADLINE, || {
            (device_state(&c, "kim", id) == "done"
                && status(&c, "kim")["devices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| {
                        d["device_id"] == id.as_str() && d["orders"].as_array().unwrap().len() == 2
                    }))
            .then_some(())
        });
        assert_eq!(std::fs::read(&s.export).unwrap(), s.export_bytes);
        let meta = std::fs::metadata(&s.customers).unwrap();
        if is_root() {
            assert_eq!(meta.uid(), USER_UID);
            assert!(user_can_read(&s.accounts), "access not given back");
        }
        assert!(manifest(a).iter().all(|(_, stored)| !stored.exists()));
    }

    // Every step is in the audit log: the operator's two commands and four receipts.
    let audit = json_lines(&c.cli(&["audit", "list", "--json"]));
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "offboard").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "offboard.restore").count(),
        1
    );
    assert_eq!(actions.iter().filter(|a| **a == "order.receipt").count(), 4);
    assert!(audit.iter().all(|e| e["actor"] != ""));

    // A tampered order is refused by the agent: nothing moves, the order stays undone.
    laptop.stop();
    let again = c.cli(&["offboard", "kim"]);
    assert!(again.contains("offboarding started"), "{again}");
    let db = rusqlite::Connection::open(c.dir.join("collector.db")).unwrap();
    let (id, mut signed): (String, Vec<u8>) = db
        .query_row(
            "SELECT id, signed FROM orders WHERE device_id = ?1 AND done_ms IS NULL",
            [&laptop_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let last = signed.len() - 1;
    signed[last] ^= 0x01; // the signature's last byte
    db.execute(
        "UPDATE orders SET signed = ?2 WHERE id = ?1",
        rusqlite::params![id, signed],
    )
    .unwrap();
    laptop.start();
    wait_for("the laptop to refuse the order", DEADLINE, || {
        laptop
            .log()
            .contains("order refused: signature does not verify")
            .then_some(())
    });
    assert!(on_laptop.export.exists(), "a refused order moved a file");
    assert_eq!(
        laptop.status()["last_order_error"],
        "order refused: signature does not verify"
    );
    assert_eq!(device_state(&c, "kim", &laptop_id), "delivered");
}

#[test]
fn connectors_are_signed_retried_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Hook::start(vec![500, 500, 200], "deactivated");
    let secret = "test-webhook-secret-0123456789";
    let out = tmp.path().join("idp-call.json");
    let c = Collector::start_with(
        tmp.path(),
        &format!(
            "[[connector]]\nname = \"crm\"\nwebhook = \"http://127.0.0.1:{}/hook\"\nsecret = \"{secret}\"\nretry_base = \"200ms\"\n\n[[connector]]\nname = \"idp\"\ncommand = [\"sh\", \"-c\", \"cat > '{}'; echo disabled $0\", \"{{user}}\"]\n",
            hook.port,
            out.display()
        ),
    );
    // A user is known once a token was issued to them.
    c.token("lea");
    let started = c.cli(&["offboard", "lea", "--reason", "contract ended"]);
    assert!(started.contains("offboarding started"), "{started}");
    wait_for("both connectors to succeed", DEADLINE, || {
        let st = status(&c, "lea");
        st["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "ok")
            .then_some(st)
    });
    let st = status(&c, "lea");
    let runs = st["connectors"].as_array().unwrap();
    // A connector's attempts, last code and last detail.
    let last = |name: &str| {
        let r = runs.iter().find(|r| r["connector"] == name).unwrap();
        serde_json::json!([r["attempts"], r["last"]["code"], r["last"]["detail"]])
    };
    assert_eq!(last("crm"), serde_json::json!([3, 200, "deactivated"]));
    assert_eq!(last("idp"), serde_json::json!([1, 0, "disabled lea"]));
    // The server saw three signed POSTs: two answered 500, the third 200.
    let reqs = hook.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    for (i, (line, headers, body)) in reqs.iter().enumerate() {
        assert_eq!(line, "POST /hook HTTP/1.1");
        let v = signed_json(headers, body, secret);
        assert_eq!(
            (&v["event"], &v["user"], &v["reason"], &v["attempt"]),
            (
                &serde_json::json!("offboard"),
                &serde_json::json!("lea"),
                &serde_json::json!("contract ended"),
                &serde_json::json!(i + 1)
            )
        );
    }
    // The command got the same body on stdin.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["user"], "lea");
    let audit = json_lines(&c.cli(&["audit", "list", "--json"]));
    let ok = audit
        .iter()
        .filter(|e| e["action"] == "connector.ok")
        .count();
    assert_eq!(ok, 2, "{audit:?}");
    let text = c.cli(&["offboard", "status", "lea"]);
    assert!(
        text.contains("connector crm") && text.contains("OK"),
        "{text}"
    );
}

#[test]
fn lookback_report_lists_exactly_the_events_inside_the_window() {
    let (_tmp, c, a) = holdfast_tests::scene("", "max", "heartbeat_ms = 300");
    let stored = |path: &Path| {
        let p = path.display().to_string();
        wait_for("the event to be stored", DEADLINE, || {
            c.events()
                .iter()
                .any(|e| e["path"] == p.as_str())
                .then_some(())
        });
    };
    // Before the window: an export, then more than the look-back of quiet.
    let old = a.watched.join("contacts-march.csv");
    std::fs::write(&old, corpus::salesforce_contacts(3, 120)).unwrap();
    stored(&old);
    std::thread::sleep(Duration::from_secs(6));
    // Inside the window: two exports and a file without customers.
    let inside = [
        (a.watched.join("report1700000000001.csv"), 200u64),
        (a.watched.join("crm-dump.csv"), 80),
    ];
    for (p, n) in &inside {
        std::fs::write(p, corpus::salesforce_contacts(*n, *n as usize)).unwrap();
    }
    let note = a.watched.join("lunch.txt");
    std::fs::write(&note, "lunch at noon").unwrap();
    // A copy of the first export (the same content: counted once) and a team roster of
    // five names and emails (records, and nobody's customer list: not counted at all).
    let copy = a.watched.join("copy-for-me.csv");
    std::fs::copy(&inside[0].0, &copy).unwrap();
    let roster = a.watched.join("team-roster.csv");
    let mut people = String::from("Name,Email,Phone\n");
    for (i, n) in ["Anna Berg", "Bo Ek", "Cia Dahl", "Dan Ohr", "Eva Lind"]
        .iter()
        .enumerate()
    {
        people.push_str(&format!("{n},p{i}@acme.example,+46 70 123 45{i:02}\n"));
    }
    std::fs::write(&roster, people).unwrap();
    for p in inside.iter().map(|(p, _)| p).chain([&note, &copy, &roster]) {
        stored(p);
    }
    assert_eq!(
        c.event_where("path", &roster.display().to_string())
            .unwrap()["records"],
        5
    );
    c.cli(&["offboard", "max", "--lookback", "4s"]);
    // The report is read once the device has carried out its order (which quarantines the
    // customer files it holds) and reported what that took away.
    let id = device_id(&a);
    wait_for("the order to be carried out", DEADLINE, || {
        (device_state(&c, "max", &id) == "done").then_some(())
    });
    let quarantined: Vec<String> = manifest(&a)
        .iter()
        .map(|(v, _)| v["original"].as_str().unwrap().to_string())
        .collect();
    assert!(
        quarantined.contains(&inside[0].0.display().to_string()),
        "{quarantined:?}"
    );
    let report = || -> serde_json::Value {
        serde_json::from_str(&c.cli(&["offboard", "report", "max", "--json"])).unwrap()
    };
    let gone = |r: &serde_json::Value| {
        let held = r["handover"]["files"].as_array().unwrap();
        held.iter()
            .all(|h| !quarantined.iter().any(|q| h["path"] == q.as_str()))
            .then_some(())
    };
    wait_for("the quarantined files to be held no more", DEADLINE, || {
        gone(&report())
    });
    let r = report();
    let mut got: Vec<(String, u64)> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["records"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = inside
        .iter()
        .chain([&(copy.clone(), 200)])
        .map(|(p, n)| (p.display().to_string(), *n))
        .collect();
    want.sort();
    assert_eq!(got, want, "only customer data, the roster left out: {r:#}");
    assert_eq!(r["records_exported"], 280, "the copy counted once: {r:#}");
    assert_eq!(r["files_exported"], 2, "{r:#}");
    assert_eq!(r["devices"][0]["events"], 3);

    // For people, by default: a table with UTC times, no epoch milliseconds.
    let text = c.cli(&["offboard", "report", "max"]);
    for line in [
        "Offboarding report for max",
        "280 customer records in 2 files",
        "Customer-data events in the look-back window",
        "Customer files still held (to hand over)",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(
        !text.contains("_ms") && !text.contains("team-roster"),
        "{text}"
    );
    let effective = holdfast_shared::time::UnixMs(r["to_ms"].as_i64().unwrap()).rfc3339();
    assert!(text.contains(&effective), "{effective}\n{text}");
    let csv = c.cli(&["offboard", "report", "max", "--format", "csv"]);
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("event,")).count(),
        3,
        "{csv}"
    );
    assert!(csv.starts_with("section,time,device,hostname,action,path"));

    // From now on, any customer file the user touches is a critical alert, and what they
    // hold now is on the handover.
    let after = a.watched.join("one-more-export.csv");
    std::fs::write(&after, corpus::salesforce_contacts(9, 60)).unwrap();
    let alert = wait_for("an offboarded-access alert", DEADLINE, || {
        c.alert_where("rule_id", "holdfast.offboarded_access")
    });
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["path"], after.display().to_string());
    assert_eq!(alert["records"], 60);
    let held: Vec<String> = report()["handover"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect();
    assert!(held.contains(&after.display().to_string()), "{held:?}");
    assert!(!held.contains(&note.display().to_string()), "{held:?}");
}

#[test]
fn hr_import_schedules_leavers_and_reports_bad_rows_by_line() {
    let (tmp, c) = Collector::scratch("");
    for u in ["wang", "li"] {
        c.token(u);
    }
    // What Chinese Excel writes: GBK, Chinese headers, slashes in dates.
    let text = "邮箱,姓名,离职申请日期,最后工作日\r\nwang@corp.example,王伟,2026/11/20,2099/12/31\r\nzhao@corp.example,赵敏,2026/11/20,2099/12/31\r\nli,李娜,2026/11/21,不知道\r\n";
    let file = tmp.path().join("离职名单.csv");
    std::fs::write(&file, encoding_rs::GBK.encode(text).0).unwrap();
    let out = run(
        "holdfast-collector",
        &[
            "hr",
            "import",
            &file.display().to_string(),
            "--json",
            "--config",
            &c.config.display().to_string(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad row makes the exit status 1"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(u64, &str)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["line"].as_u64().unwrap(), o["result"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [(2, "scheduled"), (3, "error"), (4, "error")]);
    assert!(r["rows"][1]["detail"]
        .as_str()
        .unwrap()
        .contains("unknown user `zhao@corp.example`"));
    assert!(r["rows"][2]["detail"]
        .as_str()
        .unwrap()
        .contains("最后工作日"));
    // wang is departing until the end of their last day; li (bad row) is untouched.
    let state = |u: &str| c.user(u)["state"].as_str().unwrap().to_string();
    assert_eq!(
        (state("wang").as_str(), state("li").as_str()),
        ("departing", "active")
    );
    let st = status(&c, "wang");
    assert_eq!(st["effective_ms"], 4_102_358_400_000u64 + 86_400_000);
    assert_eq!(st["devices"].as_array().unwrap().len(), 0);
}

#[test]
fn hr_export_is_imported_on_a_schedule_when_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("leavers.csv");
    std::fs::write(
        &file,
        "email,resignation date,last working day\nlee,2026-11-20,2099-12-31\n",
    )
    .unwrap();
    let mut c = Collector::configure(
        tmp.path(),
        &format!(
            "[hr]\nfile = {:?}\nevery = \"1s\"\n",
            file.display().to_string()
        ),
    );
    for u in ["lee", "kim"] {
        c.token(u);
    }
    c.restart();
    let state = |u: &str| {
        c.users()
            .iter()
            .find(|x| x["user"] == u)
            .map(|x| x["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    wait_for(
        "the export to apply at start",
        Duration::from_secs(20),
        || (state("lee") == "departing").then_some(()),
    );
    assert_eq!(state("kim"), "active");
    // The unchanged file is checked every second but not imported again.
    std::thread::sleep(Duration::from_secs(3));
    let log = c.proc.as_ref().unwrap().output();
    assert_eq!(log.matches("HR export imported").count(), 1, "{log}");
    // HR adds kim (and a row for someone unknown): the changed file is imported within a
    // tick; the bad row is logged by line.
    std::fs::write(
        &file,
        "email,resignation date,last working day\nlee,2026-11-20,2099-12-31\nkim,2026-11-21,2099-12-30\nnobody,2026-11-21,2099-12-30\n",
    )
    .unwrap();
    wait_for(
        "the changed export to apply",
        Duration::from_secs(20),
        || (state("kim") == "departing").then_some(()),
    );
    let log = wait_for(
        "the refused row in the log",
        Duration::from_secs(10),
        || {
            let log = c.proc.as_ref().unwrap().output();
            log.contains("HR export row refused").then_some(log)
        },
    );
    assert!(log.contains("line=4"), "{log}");
    let audit = json_lines(&c.cli(&["audit", "list", "--json"]));
    assert!(
        audit.iter().any(|a| a["actor"] == "hr-schedule"
            && a["target"] == "kim"
            && a["action"] == "offboard"),
        "{audit:?}"
    );
}
