//! The Debian packages as IT meets them: built by `.ci/package`, installed as root, units
//! checked by `systemd-analyze verify`, the collector run from its unit as its own user, the
//! agent enrolled from a token file and run from its unit, an upgrade in place from the
//! previous version (what was spooled while the collector was down is delivered after it),
//! a removal the collector shows as `agent_removed` with a critical alert for a departing
//! user, and a purge that leaves nothing behind. There is no systemd running here, so the
//! test starts each unit's `ExecStart` itself, as the unit's `User=`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{
    bin_dir, checked, corpus, free_tcp_port, free_udp_port, root_or_skip, wait_for_or,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const AGENT_UNIT: &str = "/lib/systemd/system/holdfast-agent.service";
const COLLECTOR_UNIT: &str = "/lib/systemd/system/holdfast-collector.service";
const COLLECTOR_TOML: &str = "/etc/holdfast/collector.toml";
const AGENT_TOML: &str = "/etc/holdfast/agent.toml";
const AGENT_DATA: &str = "/var/lib/holdfast-agent";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Purges both packages whatever happened (also before the test, after a crashed run).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = sh("dpkg", &["--purge", "holdfast-agent", "holdfast-collector"]);
    }
}

/// The uid and gid of a system user.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let out = sh("id", &["-u", user]);
    let uid = text(&out.stdout).trim().parse().ok()?;
    let out = sh("id", &["-g", user]);
    let gid = text(&out.stdout).trim().parse().ok()?;
    Some((uid, gid))
}

/// The `ExecStart=` command line of an installed unit, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(unit).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace().map(str::to_string).collect()
}

/// A unit's program, started as the unit starts it (as `ids`, when the unit names a user).
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(unit: &str, ids: Option<(u32, u32)>, log: PathBuf) -> Service {
        let argv = exec_start(unit);
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,quinn=warn")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
        Service {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, what: &str, line: &str) {
        wait_for_or(
            what,
            DEADLINE,
            || self.log().contains(line).then_some(()),
            || self.log(),
        );
    }

    /// SIGTERM, as systemd stops a unit, and wait for it to exit.
    fn stop(&mut self) {
        let _ = sh("kill", &["-TERM", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed collector's CLI, run as its service user (as `sudo -u holdfast` would).
fn collector_cli(ids: (u32, u32), args: &[&str]) -> String {
    let out = Command::new("/usr/bin/holdfast-collector")
        .args(args)
        .args(["--config", COLLECTOR_TOML])
        .env("NO_COLOR", "1")
        .current_dir("/")
        .uid(ids.0)
        .gid(ids.1)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    checked(&format!("holdfast-collector {args:?}"), out)
}

fn json_list(ids: (u32, u32), args: &[&str]) -> Vec<serde_json::Value> {
    holdfast_tests::json_lines(&collector_cli(ids, args))
}

fn events_at(ids: (u32, u32), path: &Path) -> usize {
    let p = path.display().to_string();
    json_list(ids, &["events", "list", "--json"])
        .iter()
        .filter(|e| e["path"] == p.as_str())
        .count()
}

/// Builds the two packages of `version` into `out` from the test's binaries.
fn build(version: &str, out: &Path) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/package");
    let bins = bin_dir().display().to_string();
    let out_s = out.display().to_string();
    let printed = checked(
        ".ci/package",
        sh(
            script.to_str().unwrap(),
            &["--version", version, "--bins", &bins, "--out", &out_s],
        ),
    );
    let debs: Vec<PathBuf> = printed.lines().map(PathBuf::from).collect();
    assert_eq!(debs.len(), 2, "{printed}");
    for d in &debs {
        assert!(d.exists(), "{}", d.display());
    }
    (debs[0].clone(), debs[1].clone())
}

fn installed_version(package: &str) -> String {
    text(&sh("dpkg-query", &["-W", "-f", "${Version}", package]).stdout)
}

#[test]
fn packages_install_run_as_services_upgrade_without_losing_events_and_purge_clean() {
    if !root_or_skip() {
        return;
    }
    let have = ["/usr/bin/dpkg-deb", "/usr/bin/systemd-analyze"]
        .iter()
        .all(|p| Path::new(p).exists());
    assert!(
        have || std::env::var_os("CI").is_none(),
        "CI has dpkg-deb and systemd"
    );
    if !have {
        eprintln!("skipped: no dpkg-deb or systemd-analyze here");
        return;
    }
    let _purged = Installed;
    let _ = sh("dpkg", &["--purge", "holdfast-agent", "holdfast-collector"]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (old_agent, old_collector) = build("0.0.9", &tmp.path().join("old"));
    let (new_agent, new_collector) = build("0.1.0", &tmp.path().join("new"));
    let install = |debs: [&Path; 2]| {
        let mut args = vec!["-i", "--force-confold"];
        args.extend(debs.iter().map(|d| d.to_str().unwrap()));
        checked("dpkg -i", sh("dpkg", &args));
    };

    // Installed, and installed again: nothing changes, nothing fails.
    install([&old_agent, &old_collector]);
    install([&old_agent, &old_collector]);
    assert_eq!(installed_version("holdfast-agent"), "0.0.9");
    let ids = ids_of("holdfast").expect("the collector's user");
    assert_ne!(ids.0, 0);
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(AGENT_DATA), 0o700);
    assert_eq!(mode("/var/lib/holdfast-collector"), 0o750);
    assert_eq!(mode(COLLECTOR_TOML), 0o640);
    let verify = sh("systemd-analyze", &["verify", AGENT_UNIT, COLLECTOR_UNIT]);
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );

    // The collector, configured on loopback, run from its unit as its own user.
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(
        COLLECTOR_TOML,
        format!(
            "data_dir = \"/var/lib/holdfast-collector\"\nlisten = \"{addr}\"\n\
             http_listen = \"127.0.0.1:{}\"\n",
            free_tcp_port()
        ),
    )
    .unwrap();
    let collector_log = tmp.path().join("collector.log");
    let mut collector = Service::start(COLLECTOR_UNIT, Some(ids), collector_log.clone());
    collector.wait_for_log("the collector to listen", "collector listening");

    // The agent, enrolled from a token file as a device-management script would, twice.
    let home = tmp.path().join("home-ivy");
    let downloads = home.join("Downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(
        AGENT_TOML,
        format!(
            "data_dir = \"{AGENT_DATA}\"\nhome = \"{}\"\nwatch = [\"{}\"]\nheartbeat_ms = 300\n",
            home.display(),
            downloads.display()
        ),
    )
    .unwrap();
    let token = collector_cli(ids, &["token", "create", "--user", "ivy"]);
    let token_file = "/etc/holdfast/enroll.token";
    std::fs::write(token_file, token.trim()).unwrap();
    std::fs::set_permissions(token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let enroll = || {
        let out = sh(
            "/usr/bin/holdfast-agent",
            &["enroll", "--collector", &addr, "--token-file", token_file],
        );
        checked("holdfast-agent enroll", out)
    };
    let said = enroll();
    assert!(said.starts_with("enrolled as device "), "{said}");
    assert!(
        said.contains(AGENT_DATA),
        "the package's config was used: {said}"
    );
    assert!(enroll().starts_with("already enrolled as device "));
    let identity = std::fs::read(Path::new(AGENT_DATA).join("identity.toml")).unwrap();
    let agent_log = tmp.path().join("agent.log");
    let mut agent = Service::start(AGENT_UNIT, None, agent_log.clone());
    agent.wait_for_log("the agent to run", "agent running");

    // The doctor: one line per check, each named; all well with the collector up.
    let doctor = sh("/usr/bin/holdfast-agent", &["doctor", "--json"]);
    let checks = holdfast_tests::json_lines(&text(&doctor.stdout));
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "capabilities",
            "inotify",
            "fanotify",
            "collector",
            "clock",
            "certificate",
            "spool"
        ],
        "{checks:?}"
    );
    for c in &checks {
        let expected = if c["check"] == "fanotify" {
            // Some containers refuse fanotify even to root: a warning, never a failure.
            c["verdict"].as_str().unwrap()
        } else {
            "ok"
        };
        assert_eq!(c["verdict"], expected, "{c}");
    }
    assert!(doctor.status.success(), "{}", text(&doctor.stderr));
    let shown = checked("doctor", sh("/usr/bin/holdfast-agent", &["doctor"]));
    let line = shown
        .lines()
        .find(|l| l.contains("collector"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.starts_with("ok ") && line.contains(&format!("{addr} answered")),
        "{shown}"
    );

    let first = downloads.join("hubspot-contacts.csv");
    std::fs::write(&first, corpus::salesforce_contacts(5, 120)).unwrap();
    wait_for_or(
        "the first export at the collector",
        DEADLINE,
        || (events_at(ids, &first) == 1).then_some(()),
        || agent.log(),
    );

    // The collector goes down; an export lands meanwhile and waits in the spool; the
    // agent is stopped for the upgrade (as the package's prerm stops the service).
    collector.stop();
    let offline = downloads.join("salesforce-report.csv");
    std::fs::write(&offline, corpus::salesforce_contacts(6, 300)).unwrap();
    agent.wait_for_log("the offline export spooled", "salesforce-report.csv");
    // The doctor names the unreachable collector, fails, and says where to look.
    let doctor = sh("/usr/bin/holdfast-agent", &["doctor"]);
    let shown = text(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{shown}");
    let line = shown
        .lines()
        .find(|l| l.starts_with("FAIL  collector"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains(&addr) && line.contains("UDP"), "{line}");
    agent.stop();

    // Upgraded in place: the configs as edited, the identity, the spool all kept.
    install([&new_agent, &new_collector]);
    assert_eq!(installed_version("holdfast-agent"), "0.1.0");
    assert_eq!(installed_version("holdfast-collector"), "0.1.0");
    assert!(std::fs::read_to_string(AGENT_TOML)
        .unwrap()
        .contains("heartbeat_ms = 300"));
    assert_eq!(
        std::fs::read(Path::new(AGENT_DATA).join("identity.toml")).unwrap(),
        identity
    );
    let mut collector = Service::start(
        COLLECTOR_UNIT,
        Some(ids),
        tmp.path().join("collector-2.log"),
    );
    collector.wait_for_log("the upgraded collector to listen", "collector listening");
    let mut agent = Service::start(AGENT_UNIT, None, tmp.path().join("agent-2.log"));
    wait_for_or(
        "the export spooled before the upgrade, delivered after it",
        DEADLINE,
        || (events_at(ids, &offline) == 1).then_some(()),
        || agent.log(),
    );
    assert_eq!(events_at(ids, &first), 1, "nothing twice");
    let devices = json_list(ids, &["devices", "list", "--json"]);
    assert_eq!(
        devices.len(),
        1,
        "the same device after the upgrade: {devices:?}"
    );

    // Ivy resigns (leaving next week), then the agent is removed: the collector shows it
    // removed, not offline, with a critical alert.
    collector_cli(
        ids,
        &[
            "offboard",
            "ivy",
            "--effective",
            &in_a_week(),
            "--reason",
            "resigned",
        ],
    );
    agent.stop();
    let removed = sh("dpkg", &["--remove", "holdfast-agent"]);
    let removal = checked("dpkg --remove holdfast-agent", removed);
    assert!(!Path::new("/usr/bin/holdfast-agent").exists(), "{removal}");
    let device = &json_list(ids, &["devices", "list", "--json"])[0];
    assert!(device["removed_ms"].is_i64(), "{device}");
    assert!(
        device["removed"]
            .as_str()
            .is_some_and(|r| r.contains("package removed")),
        "{device}"
    );
    let alerts = json_list(ids, &["alerts", "list", "--json"]);
    let alert = alerts
        .iter()
        .find(|a| a["rule_id"] == "holdfast.agent_removed")
        .unwrap_or_else(|| panic!("{alerts:?}"));
    assert_eq!(alert["severity"], "critical", "{alert}");
    let shown = collector_cli(ids, &["devices", "list"]);
    assert!(shown.contains("AGENT REMOVED"), "{shown}");
    collector.stop();

    // Purged: nothing of either is left.
    checked(
        "dpkg --purge",
        sh("dpkg", &["--purge", "holdfast-agent", "holdfast-collector"]),
    );
    for gone in [
        AGENT_DATA,
        "/var/lib/holdfast-collector",
        "/etc/holdfast",
        "/usr/bin/holdfast-collector",
        AGENT_UNIT,
        COLLECTOR_UNIT,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after a purge");
    }
    assert!(
        ids_of("holdfast").is_none(),
        "the user is left after a purge"
    );
}

/// A week from now, RFC 3339.
fn in_a_week() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    holdfast_shared::time::UnixMs(now + 7 * 86_400_000).rfc3339()
}
