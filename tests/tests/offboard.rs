//! Offboarding with real processes: a user with two devices, one offline, is offboarded;
//! each device quarantines its customer files, strips access to the customer folder and
//! purges the CRM cache when it is online, the status shows both done, a restore brings the
//! files back byte-identical, and a tampered order is refused by the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, json_lines, run, wait_for, Agent, Collector};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// The uid and gid that own the user's customer folder in this test.
const USER_UID: u32 = 4242;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

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
    let out = run(
        "holdfast-collector",
        &[
            "offboard",
            "nobody",
            "--config",
            &c.config.display().to_string(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
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
