//! Phones with a real FUSE mount: an unprivileged user mounts a folder with bindfs where
//! gvfs mounts an MTP phone (`/run/user/UID/gvfs/mtp:host=…`, a mount only its owner may
//! enter, root included), and the agent (as root in CI) watches it through a watcher it
//! starts as that user. A CRM export copied onto the phone is one critical `exfil.phone`
//! alert naming the phone and linked to the export; a price list is none; a file already on
//! the phone is no news; the watcher killed by the user is started again and misses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{
    corpus, root_or_skip, run_as_nobody, wait_for, wait_for_or, Agent, Collector, NOBODY,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const PHONE: &str = "Google_Pixel_7_1A2B3C";

/// Runs `program` as `nobody`; panics when it fails.
fn as_nobody(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_as_nobody(cmd, String::new);
}

/// A bindfs mount made by `nobody`, unmounted when dropped.
struct Phone {
    mount: PathBuf,
}

impl Phone {
    fn mount(backing: &Path, mount: &Path) -> Phone {
        Phone::mount_with(backing, mount, &[])
    }

    /// Mounted with more FUSE options (`subtype=gvfsd-fuse` makes it `fuse.gvfsd-fuse`, as
    /// gvfs's own mount is).
    fn mount_with(backing: &Path, mount: &Path, options: &[&str]) -> Phone {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--no-allow-other"];
        for o in options {
            args.push(&"-o");
            args.push(o);
        }
        args.push(&backing);
        args.push(&mount);
        as_nobody("bindfs", &args);
        Phone {
            mount: mount.to_path_buf(),
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mount)
            .uid(NOBODY)
            .gid(NOBODY)
            .status();
    }
}

fn dir_for_nobody(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Every agent follows the whole mount table, so the scenarios take turns: one's phone
/// would be the other's too.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until `a` watches the phone mounted at `mount`.
fn watching(a: &Agent, mount: &Path) {
    let line = format!("watching a phone phone={}", mount.display());
    wait_for_or(
        "the phone's watcher",
        DEADLINE,
        || a.log().contains(&line).then_some(()),
        || a.log(),
    );
}

/// Whether this machine can run the scenarios: root, bindfs and /dev/fuse (CI has them).
fn can_mount() -> bool {
    if !root_or_skip() {
        return false;
    }
    // The mounts are made by `nobody`, so /dev/fuse must be open to every user (as
    // the fuse package leaves it), not only there.
    let fuse = std::fs::metadata("/dev/fuse")
        .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006);
    let have = Path::new("/usr/bin/bindfs").exists() && fuse;
    assert!(
        have || std::env::var_os("CI").is_none(),
        "CI installs bindfs"
    );
    if !have {
        eprintln!("skipped: no bindfs or /dev/fuse here");
    }
    have
}

/// The opening of both scenarios, in turn: a collector, a running agent whose folders
/// `nobody` may read, and a CRM export `name` it has reported. `None` where they cannot run.
#[allow(clippy::type_complexity)]
fn laptop(
    name: &str,
    seed: u64,
    rows: usize,
) -> Option<(
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    Collector,
    Agent,
    PathBuf,
)> {
    let turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !can_mount() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = Collector::start_with(tmp.path(), "");
    let a = Agent::started(tmp.path(), &c, "ivy", "heartbeat_ms = 300");
    for d in [a.home(), a.watched.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let export = a.watched.join(name);
    std::fs::write(&export, corpus::salesforce_contacts(seed, rows)).unwrap();
    let export_s = export.display().to_string();
    wait_for("the export reported", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["path"] == export_s.as_str())
    });
    Some((turn, tmp, c, a, export))
}

#[test]
fn in_gvfs_s_own_mount_each_phone_is_a_folder_and_what_was_on_it_is_no_news() {
    let Some((_turn, tmp, c, mut a, export)) = laptop("hubspot-contacts.csv", 41, 150) else {
        return;
    };
    let export_s = export.display().to_string();
    // gvfs's mount, with no phone yet.
    let backing = tmp.path().join("gvfs-backing");
    dir_for_nobody(&backing);
    let gvfs = tmp.path().join(format!("run/user/{NOBODY}/gvfs"));
    dir_for_nobody(&gvfs);
    let _gvfs = Phone::mount_with(&backing, &gvfs, &["subtype=gvfsd-fuse"]);
    watching(&a, &gvfs);
    // A phone plugged in: gvfs adds its folder (no write the kernel sees), holding a
    // customer file from before.
    // The phone's folder is made whole elsewhere and renamed in, so the watcher can
    // never see it half-made (a file written after the folder was seen is news).
    let phone = "SAMSUNG_Galaxy_S23_R5CT";
    let staging = tmp.path().join("phone-staging");
    let storage = staging.join("Internal storage");
    std::fs::create_dir_all(&storage).unwrap();
    let old = storage.join("old-contacts.csv");
    std::fs::write(&old, corpus::salesforce_contacts(42, 80)).unwrap();
    for p in [&staging, &storage, &old] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::rename(&staging, backing.join(format!("mtp:host={phone}"))).unwrap();
    // Time for the watcher to find the phone (it looks every second).
    std::thread::sleep(Duration::from_secs(3));
    let on_phone = gvfs.join(format!("mtp:host={phone}/Internal storage"));
    as_nobody("cp", &[&export, &on_phone]);
    // A file in gvfs's mount itself is on no phone.
    as_nobody("cp", &[&export, &gvfs.join("not-a-phone.csv")]);
    let copied = on_phone.join("hubspot-contacts.csv").display().to_string();
    let event = wait_for_or(
        "the copy onto the phone",
        DEADLINE,
        || {
            c.events()
                .into_iter()
                .find(|e| e["path"] == copied.as_str())
        },
        || a.log(),
    );
    assert_eq!(event["destination"]["kind"], "phone", "{event}");
    assert_eq!(event["destination"]["name"], phone, "{event}");
    assert_eq!(event["origin"]["path"], export_s.as_str(), "{event}");
    let alert = wait_for("the phone alert", DEADLINE, || {
        c.alert_where("rule_id", "exfil.phone")
    });
    assert_eq!(alert["path"], copied.as_str(), "{alert}");
    std::thread::sleep(Duration::from_secs(2));
    let under_gvfs: Vec<String> = c
        .events()
        .into_iter()
        .filter_map(|e| e["path"].as_str().map(str::to_string))
        .filter(|p| p.starts_with(&gvfs.display().to_string()))
        .collect();
    assert_eq!(
        under_gvfs,
        [copied],
        "only the copy: not the file from before, not the top\n{}",
        a.log()
    );
    // The export zipped, then the zip copied onto the phone: one exfiltration story whose
    // way out is the phone.
    let zipped = a.watched.join("notes.zip");
    std::fs::write(
        &zipped,
        corpus::zipped("contacts.csv", &std::fs::read(&export).unwrap()),
    )
    .unwrap();
    std::fs::set_permissions(&zipped, std::fs::Permissions::from_mode(0o644)).unwrap();
    let zipped_s = zipped.display().to_string();
    wait_for("the zip reported", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["path"] == zipped_s.as_str())
    });
    as_nobody("cp", &[&zipped, &on_phone]);
    let story = wait_for_or(
        "the exfiltration story",
        DEADLINE,
        || c.alert_where("rule_id", "holdfast.exfil_sequence"),
        || a.log(),
    );
    let detail = story["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("zipped into notes.zip"), "{detail}");
    assert!(
        detail.contains(&format!("notes.zip onto phone {phone}")),
        "{detail}"
    );
    a.stop();
}

#[test]
fn an_export_copied_to_a_phone_is_one_critical_alert_naming_it_and_nothing_is_missed() {
    let Some((_turn, tmp, c, mut a, export)) = laptop("salesforce_contacts.csv", 31, 200) else {
        return;
    };
    let prices = a.watched.join("price-list-2026.csv");
    std::fs::write(&prices, corpus::price_list(31, 200)).unwrap();
    let export_s = export.display().to_string();
    // The phone's storage, with a customer file already on it from before.
    let backing = tmp.path().join("phone-storage");
    dir_for_nobody(&backing);
    let old = backing.join("old-contacts.csv");
    std::fs::write(&old, corpus::salesforce_contacts(32, 50)).unwrap();
    std::os::unix::fs::chown(&old, Some(NOBODY), Some(NOBODY)).unwrap();
    let gvfs = tmp.path().join(format!("run/user/{NOBODY}/gvfs"));
    dir_for_nobody(&gvfs);
    let mount = gvfs.join(format!("mtp:host={PHONE}"));
    dir_for_nobody(&mount);
    // Older than the agent's next look at the mount table.
    std::thread::sleep(Duration::from_secs(3));
    let _phone = Phone::mount(&backing, &mount);
    // Root itself may not look inside: only the mount's owner can.
    assert!(
        std::fs::read_dir(&mount).is_err(),
        "root is kept out of a user's FUSE mount"
    );
    // The watcher is up once the agent has looked at the mount table (every 2 s).
    watching(&a, &mount);
    let on_phone = mount.join("Documents");
    as_nobody("mkdir", &[&on_phone]);
    as_nobody("cp", &[&export, &on_phone]);
    as_nobody("cp", &[&prices, &mount]);
    let copied = on_phone
        .join("salesforce_contacts.csv")
        .display()
        .to_string();
    let alert = wait_for_or(
        "the phone alert",
        DEADLINE,
        || c.alert_where("rule_id", "exfil.phone"),
        || a.log(),
    );
    assert_eq!(alert["path"], copied.as_str(), "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    let event = c
        .events()
        .into_iter()
        .find(|e| e["path"] == copied.as_str())
        .unwrap();
    assert_eq!(event["action"], "created", "{event}");
    assert_eq!(event["destination"]["kind"], "phone", "{event}");
    assert_eq!(event["destination"]["name"], PHONE, "{event}");
    assert_eq!(event["records"], 200, "{event}");
    assert_eq!(event["origin"]["path"], export_s.as_str(), "{event}");
    // The price list landed too, with no alert; the file from before the mount is no news.
    let price_on_phone = mount.join("price-list-2026.csv").display().to_string();
    wait_for("the price list on the phone", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["path"] == price_on_phone.as_str())
    });
    let old_on_phone = mount.join("old-contacts.csv").display().to_string();
    let events = c.events();
    assert!(
        !events.iter().any(|e| e["path"] == old_on_phone.as_str()),
        "a file on the phone before it was mounted is baseline"
    );
    let phone_alerts: Vec<_> = c
        .alerts()
        .into_iter()
        .filter(|x| x["rule_id"] == "exfil.phone")
        .collect();
    assert_eq!(phone_alerts.len(), 1, "{phone_alerts:?}");
    // The user kills the watcher (it runs as them) and copies again at once: the watcher is
    // started again, the copy is reported, and the restart is a notice.
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-u",
            &NOBODY.to_string(),
            "-f",
            "holdfast-agent phone-watch",
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "a watcher ran as the phone's owner");
    let again = mount.join("again.csv");
    as_nobody("cp", &[&export, &again]);
    let again_s = again.display().to_string();
    wait_for_or(
        "the copy made while the watcher was down",
        DEADLINE,
        || {
            c.events()
                .into_iter()
                .find(|e| e["path"] == again_s.as_str() && e["destination"]["kind"] == "phone")
        },
        || a.log(),
    );
    wait_for("the restart notice", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["kind"] == "phone_watch_restarted")
    });
    a.stop();
}
