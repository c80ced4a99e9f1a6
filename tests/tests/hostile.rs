//! The person at the laptop against a real root agent: every attacking step runs as an
//! unprivileged uid (never root), against `holdfast-agent run` as root. Each test checks that
//! root's files are unchanged (owner, mode, inode, content) and that monitoring goes on (an
//! export written afterwards still alerts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{
    corpus, json_lines, root_or_skip, run, wait_for, wait_for_or, Agent, Collector,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// The attacker's uid and gid: no passwd entry, no groups, no privilege.
const USER: u32 = 4243;

/// Runs `script` with `sh` as the unprivileged user; returns whether it succeeded.
fn as_user(script: &str) -> bool {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .uid(USER)
        .gid(USER)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "as uid {USER}: `{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::lchown(p, Some(USER), Some(USER)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path());
        }
    }
}

/// What must not change about a root-owned file or folder.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    uid: u32,
    gid: u32,
    mode: u32,
    ino: u64,
    content: Vec<String>,
}

fn fingerprint(p: &Path) -> Fingerprint {
    let m = std::fs::symlink_metadata(p).unwrap();
    let content = if m.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                let inner = fingerprint(&e.path());
                format!("{} {inner:?}", e.file_name().to_string_lossy())
            })
            .collect();
        names.sort();
        names
    } else {
        vec![holdfast_shared::sha256_hex(&std::fs::read(p).unwrap())]
    };
    Fingerprint {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        ino: m.ino(),
        content,
    }
}

/// A laptop whose home belongs to the attacker: Downloads and Desktop watched, root's files
/// beside it (`root/`: a secret file, a cron-like folder, a folder with a `hubspot` in it).
struct Laptop {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    c: Collector,
    a: Agent,
}

impl Laptop {
    /// The scenario's laptop, or `None` (said on stderr) when the tests do not run as root.
    fn as_root(extra: &str) -> Option<Laptop> {
        root_or_skip().then(|| Laptop::new(extra))
    }

    fn new(extra: &str) -> Laptop {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = Collector::start(&base);
        let a = Agent::enroll(&base, &c, "kim", &format!("heartbeat_ms = 300\n{extra}"));
        let home = a.home();
        let desktop = home.join("Desktop");
        std::fs::create_dir_all(&desktop).unwrap();
        let cfg = std::fs::read_to_string(&a.config).unwrap();
        let watched = format!("watch = [{:?}]", a.watched.display().to_string());
        let both = format!(
            "watch = [{:?}, {:?}]",
            a.watched.display().to_string(),
            desktop.display().to_string()
        );
        assert!(cfg.contains(&watched), "{cfg}");
        std::fs::write(&a.config, cfg.replace(&watched, &both)).unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("cron.d")).unwrap();
        std::fs::create_dir_all(root.join("x/hubspot")).unwrap();
        std::fs::write(root.join("secret"), "root:$6$hash:19000:0:99999:7:::\n").unwrap();
        std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(root.join("x/hubspot/db"), "root's own").unwrap();
        std::fs::write(
            root.join("customers.csv"),
            corpus::salesforce_contacts(9, 300),
        )
        .unwrap();
        std::fs::set_permissions(
            root.join("customers.csv"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        chown_tree(&home);
        Laptop {
            _tmp: tmp,
            base,
            c,
            a,
        }
    }

    fn home(&self) -> PathBuf {
        self.a.home()
    }

    fn root(&self, rel: &str) -> PathBuf {
        self.base.join("root").join(rel)
    }

    fn device_id(&self) -> String {
        self.a.status()["device_id"].as_str().unwrap().to_string()
    }

    /// The receipts of the device's orders, newest order last.
    fn orders(&self) -> Vec<serde_json::Value> {
        let st: serde_json::Value =
            serde_json::from_str(self.c.cli(&["offboard", "status", "kim", "--json"]).trim())
                .unwrap();
        let id = self.device_id();
        st["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == id.as_str())
            .map(|d| d["orders"].as_array().unwrap().clone())
            .unwrap_or_default()
    }

    /// Waits until `n` orders have receipts; returns the last (newest) order's receipts.
    fn wait_orders(&self, n: usize) -> Vec<serde_json::Value> {
        wait_for("the order's receipts", DEADLINE, || {
            let o = self.orders();
            (o.len() >= n
                && o.iter()
                    .all(|o| o["receipts"].as_array().is_some_and(|r| !r.is_empty())))
            .then(|| o[o.len() - 1]["receipts"].as_array().unwrap().clone())
        })
    }

    /// Writes an export as the user and waits for its alert.
    fn export_alerts(&self, dir: &str, name: &str) {
        let path = self.home().join(dir).join(name);
        let tmp = self.base.join(format!("{name}.src"));
        std::fs::write(&tmp, corpus::salesforce_contacts(77, 120)).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(as_user(&format!(
            "cp '{}' '{}'",
            tmp.display(),
            path.display()
        )));
        let shown = path.display().to_string();
        wait_for("the later export's alert", DEADLINE, || {
            self.c
                .alerts()
                .iter()
                .any(|a| a["path"] == shown.as_str())
                .then_some(())
        });
    }
}

fn receipt<'a>(receipts: &'a [serde_json::Value], action: &str) -> &'a serde_json::Value {
    receipts
        .iter()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no {action} receipt in {receipts:?}"))
}

#[test]
fn restore_and_purge_cannot_be_steered_to_root_files() {
    let Some(mut l) = Laptop::as_root("") else {
        return;
    };
    let home = l.home();
    let export = home.join("Downloads/report1700000000000.csv");
    std::fs::write(&export, corpus::salesforce_contacts(3, 200)).unwrap();
    std::fs::create_dir_all(home.join("Customers")).unwrap();
    std::fs::write(home.join("Customers/accounts.txt"), "key accounts").unwrap();
    chown_tree(&home);
    l.a.start();
    let (secret, crond, hub) = (l.root("secret"), l.root("cron.d"), l.root("x"));
    let before = [fingerprint(&secret), fingerprint(&crond), fingerprint(&hub)];
    // Purge through a link in the middle of the path: `~/.config -> root/x`, which holds
    // a `hubspot` (the default pack purges `~/.config/hubspot`).
    let h = home.display().to_string();
    assert!(as_user(&format!("ln -s '{}' {h}/.config", hub.display())));
    l.c.cli(&["offboard", "kim", "--reason", "resigned"]);
    let first = l.wait_orders(1);
    assert_eq!(receipt(&first, "quarantine")["items"], 1, "{first:?}");
    assert_eq!(receipt(&first, "strip_access")["items"], 1, "{first:?}");
    let purge = receipt(&first, "purge");
    assert!(
        purge["detail"]
            .as_str()
            .unwrap()
            .contains(".config/hubspot: a symbolic link is in the way"),
        "{purge}"
    );
    assert!(hub.join("hubspot/db").exists());
    // Now the user plants links where the restore will write: the stripped folder moved
    // aside for a link to root's secret, Downloads swapped for a link to a cron folder.
    assert!(as_user(&format!(
        "mv {h}/Customers {h}/Customers.old && ln -s '{}' {h}/Customers",
        secret.display()
    )));
    assert!(as_user(&format!(
        "mv {h}/Downloads {h}/Downloads.old && ln -s '{}' {h}/Downloads",
        crond.display()
    )));
    l.c.cli(&["offboard", "restore", "kim"]);
    let back = l.wait_orders(2);
    let restore = receipt(&back, "restore");
    let detail = restore["detail"].as_str().unwrap();
    assert_eq!(restore["ok"], false, "{restore}");
    assert!(
        detail.contains("Customers: a symbolic link is in the way"),
        "{detail}"
    );
    assert!(
        detail.contains("report1700000000000.csv: a symbolic link is in the way"),
        "{detail}"
    );
    assert_eq!(
        [fingerprint(&secret), fingerprint(&crond), fingerprint(&hub)],
        before,
        "a root file changed"
    );
    // Monitoring goes on: an export on the Desktop still alerts.
    l.export_alerts("Desktop", "hubspot-contacts-export.csv");
    l.a.stop();
}

#[test]
fn a_link_renamed_over_an_export_while_quarantine_reads_it_changes_nothing_of_root() {
    let Some(mut l) = Laptop::as_root("") else {
        return;
    };
    let home = l.home();
    // Big enough that quarantine's read of it takes a while.
    let big = home.join("Desktop/contacts.csv");
    let src = l.base.join("contacts.src");
    std::fs::write(&src, corpus::salesforce_contacts(5, 400_000)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    l.a.start();
    assert!(as_user(&format!(
        "cp '{}' '{}'",
        src.display(),
        big.display()
    )));
    let secret = l.root("secret");
    let before = fingerprint(&secret);
    let h = home.display().to_string();
    assert!(as_user(&format!(
        "ln -s '{}' {h}/Desktop/link",
        secret.display()
    )));
    // Settled and reported before the order, so the only reader during the order is the
    // quarantine.
    let shown = big.display().to_string();
    wait_for("the big export's event", DEADLINE, || {
        l.c.events()
            .iter()
            .any(|e| e["path"] == shown.as_str())
            .then_some(())
    });
    l.c.cli(&["offboard", "kim"]);
    let pid = l.a.proc.as_ref().unwrap().pid();
    // As soon as the agent has the export open, the user renames the link over it.
    wait_for("the quarantine to open the export", DEADLINE, || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == big))
            .then_some(())
    });
    assert!(as_user(&format!(
        "mv -f {h}/Desktop/link {h}/Desktop/contacts.csv"
    )));
    let first = l.wait_orders(1);
    let q = receipt(&first, "quarantine");
    assert!(
        q["detail"]
            .as_str()
            .unwrap()
            .contains("changed while being examined"),
        "{q}"
    );
    l.c.cli(&["offboard", "restore", "kim"]);
    l.wait_orders(2);
    assert_eq!(fingerprint(&secret), before, "root's file changed");
    assert!(std::fs::symlink_metadata(&big)
        .unwrap()
        .file_type()
        .is_symlink());
    l.export_alerts("Downloads", "salesforce_contacts.csv");
    l.a.stop();
}

#[test]
fn fifos_swapped_in_never_hang_the_agent_200_rounds() {
    let Some(mut l) = Laptop::as_root("") else {
        return;
    };
    l.a.start();
    let h = l.home().display().to_string();
    // Each round writes an export and swaps a FIFO in under its name, at a different moment
    // relative to the agent's settle (300 ms) and read.
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do \
           printf 'Name,Email\\nA,a@b.com\\n' > {h}/Downloads/r$i.csv; \
           sleep 0.$(( (i * 7) % 40 ))$(( i % 10 )); \
           mkfifo {h}/Downloads/.f$i && mv -f {h}/Downloads/.f$i {h}/Downloads/r$i.csv; \
           i=$((i+1)); \
         done"
    );
    assert!(as_user(&script));
    // Quarantine walks past 200 FIFOs without opening one.
    l.c.cli(&["offboard", "kim"]);
    let first = l.wait_orders(1);
    let q = receipt(&first, "quarantine");
    assert!(q["detail"].as_str().unwrap().contains("200 FIFO(s)"), "{q}");
    // The pipeline is alive: an export written now alerts; the FIFOs were reported as
    // skipped, never read.
    l.export_alerts("Desktop", "salesforce_contacts.csv");
    let events = l.c.events();
    let skipped = events
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a regular file but a FIFO"))
        })
        .count();
    assert!(skipped > 0, "no FIFO reported as skipped");
    // `scan` on a FIFO returns at once with the reason.
    let fifo = format!("{h}/Downloads/r0.csv");
    let out = run("holdfast-agent", &["scan", &fifo, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let line = &json_lines(&String::from_utf8_lossy(&out.stdout))[0];
    assert_eq!(line["error"], "not a regular file but a FIFO: skipped");
    l.a.stop();
}

#[test]
fn links_in_the_watched_places_are_never_followed() {
    let Some(mut l) = Laptop::as_root("") else {
        return;
    };
    let h = l.home().display().to_string();
    let outside = l.root("");
    // Before the agent starts (its index walk and watches) and after (a new folder's scan).
    // The links point at a small folder of root's, so an agent that followed them would
    // be watching it within moments (a link to `/` would take it minutes to walk).
    assert!(as_user(&format!(
        "ln -s '{}' {h}/Downloads/all",
        outside.display()
    )));
    l.a.start();
    assert!(as_user(&format!(
        "mkdir {h}/Desktop/new && ln -s '{}' {h}/Desktop/new/x",
        outside.display()
    )));
    std::thread::sleep(Duration::from_millis(800));
    // Root writes customer files in the linked-to place, before and after a restart (which
    // adds every watch again): the agent must see none of them, though it has the time to.
    std::fs::write(l.root("fresh.csv"), corpus::salesforce_contacts(11, 100)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    l.a.stop();
    l.a.start();
    std::fs::write(l.root("fresh2.csv"), corpus::salesforce_contacts(12, 100)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    l.export_alerts("Desktop", "salesforce_contacts.csv");
    let through: Vec<String> =
        l.c.events()
            .iter()
            .filter_map(|e| e["path"].as_str().map(str::to_string))
            .filter(|p| p.contains("/all/") || p.contains("/new/x/"))
            .collect();
    assert!(through.is_empty(), "followed a link: {through:?}");
    l.a.stop();
}

#[test]
fn odd_names_come_back_byte_identical_and_never_collide() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let Some(mut l) = Laptop::as_root("") else {
        return;
    };
    let dl = l.home().join("Downloads");
    // Two names that differ only in a byte that is not UTF-8 (lossy text makes them one),
    // and a name of 255 bytes, the most a file system allows.
    let names: Vec<Vec<u8>> = vec![
        b"clients-\xe9.csv".to_vec(),
        b"clients-\xe8.csv".to_vec(),
        [vec![b'n'; 251], b".csv".to_vec()].concat(),
    ];
    let mut bodies = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let body = corpus::salesforce_contacts(40 + i as u64, 30);
        std::fs::write(dl.join(OsStr::from_bytes(n)), &body).unwrap();
        bodies.push(body);
    }
    chown_tree(&l.home());
    l.a.start();
    l.c.cli(&["offboard", "kim"]);
    let first = l.wait_orders(1);
    let q = receipt(&first, "quarantine");
    assert_eq!(
        (q["items"].as_u64(), q["ok"].as_bool()),
        (Some(3), Some(true)),
        "{q}"
    );
    for n in &names {
        assert!(!dl.join(OsStr::from_bytes(n)).exists());
    }
    l.c.cli(&["offboard", "restore", "kim"]);
    let back = l.wait_orders(2);
    let r = receipt(&back, "restore");
    assert_eq!(r["ok"], true, "{r}");
    for (n, body) in names.iter().zip(&bodies) {
        let p = dl.join(OsStr::from_bytes(n));
        assert_eq!(&std::fs::read(&p).unwrap(), body, "{}", p.display());
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), USER);
    }
    l.export_alerts("Desktop", "salesforce_contacts.csv");
    l.a.stop();
}

/// The read monitor marks the file it classified through its own descriptor: a link to root's
/// customer list swapped in under an export's name, at any moment between the export's
/// write and its mark (200 rounds), never puts the mark on root's file. With `cat` made an
/// app by the test's policy, root's cat reading that list afterwards is no upload, and the
/// same cat reading an export is one. (The rounds also delete 200 marked files: an export
/// written afterwards may get one of their inode numbers, and must be marked all the same.)
#[test]
fn a_link_swapped_in_for_an_export_never_moves_its_read_mark_onto_root_files() {
    let pack = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for f in std::fs::read_dir(&shipped).unwrap().flatten() {
        std::fs::copy(f.path(), pack.path().join(f.file_name())).unwrap();
    }
    std::fs::write(
        pack.path().join("test-apps.toml"),
        "[[app]]\nname = \"cat\"\nkind = \"chat\"\nexecutables = [\"/usr/bin/cat\"]\n",
    )
    .unwrap();
    let Some(mut l) = Laptop::as_root(&format!("policies = {:?}", pack.path())) else {
        return;
    };
    let private = l.root("private.csv");
    std::fs::write(&private, corpus::salesforce_contacts(31, 200)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = fingerprint(&private);
    l.a.start();
    let h = l.home().display().to_string();
    let export = l.base.join("export.src");
    std::fs::write(&export, corpus::salesforce_contacts(32, 60)).unwrap();
    std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do \
           cp '{}' {h}/Downloads/e$i.csv; \
           sleep 0.$(( (i * 7) % 40 ))$(( i % 10 )); \
           ln -s '{}' {h}/Downloads/.l$i && mv -f {h}/Downloads/.l$i {h}/Downloads/e$i.csv; \
           i=$((i+1)); \
         done",
        export.display(),
        private.display()
    );
    assert!(as_user(&script));
    // Every export before it has been through the pipeline once this one has alerted.
    l.export_alerts("Desktop", "salesforce_contacts.csv");
    let mine = l.home().join("Desktop/salesforce_contacts.csv");
    let cat = |f: &Path| {
        let read = std::process::Command::new("/usr/bin/cat")
            .arg(f)
            .output()
            .unwrap();
        assert!(read.status.success());
    };
    // Root's cat reading the export is an upload (read again at each look, in case the
    // export's mark came after a read); that proves the marks work for this agent now.
    let shown = mine.display().to_string();
    wait_for_or(
        "cat's read of the export",
        DEADLINE,
        || {
            cat(&mine);
            l.c.events()
                .iter()
                .any(|e| e["path"] == shown.as_str() && e["destination"]["name"] == "cat")
                .then_some(())
        },
        || format!("{}\n{}", l.a.status(), l.a.log()),
    );
    // Root's cat reading its own list is none: no mark was moved onto it.
    for _ in 0..3 {
        cat(&private);
    }
    std::thread::sleep(Duration::from_secs(3));
    let root_file = private.display().to_string();
    let hash = holdfast_shared::sha256_hex(&std::fs::read(&private).unwrap());
    let on_root: Vec<serde_json::Value> =
        l.c.events()
            .into_iter()
            .filter(|e| e["path"] == root_file.as_str() || e["sha256"] == hash.as_str())
            .collect();
    assert!(on_root.is_empty(), "root's file was marked: {on_root:?}");
    assert_eq!(fingerprint(&private), before);
    l.a.stop();
}
