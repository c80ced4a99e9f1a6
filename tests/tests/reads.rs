//! Read monitoring with real processes: a program that reads 50 customer files in a row is
//! a bulk-read alert naming its executable and uid (fanotify, as root in CI); indexers and
//! backup tools named in the policy count for nothing; a policy published on the collector
//! moves the monitoring on a running agent; without fanotify the agent falls back to
//! inotify's open events and says so in its status and to the collector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, run_ok, wait_for, Agent, Collector};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// A customer folder of `n` exports and a policy whose bulk-read rule watches it.
fn customer_folder(root: &Path, folder: &Path, n: usize) -> (PathBuf, Vec<PathBuf>) {
    std::fs::create_dir_all(folder).unwrap();
    let files: Vec<PathBuf> = (0..n)
        .map(|i| {
            let f = folder.join(format!("account-{i:03}.csv"));
            std::fs::write(&f, corpus::salesforce_contacts(i as u64, 20)).unwrap();
            f
        })
        .collect();
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("reads.toml"),
        format!(
            r#"[[bulk_read]]
id = "reads.bulk-test"
description = "Fifty customer files read by one program within ten minutes"
severity = "high"
folders = [{:?}]
min_files = 50
within = "10m"
exclude_executables = ["/usr/bin/sha256sum"]
"#,
            folder.display().to_string()
        ),
    )
    .unwrap();
    (policies, files)
}

/// The `reads` line of the agent's status.
fn reads_status(agent: &Agent) -> String {
    let out = run_ok(
        "holdfast-agent",
        &[
            "status",
            "--json",
            "--config",
            &agent.config.display().to_string(),
        ],
    );
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    s["reads"].as_str().unwrap_or_default().to_string()
}

/// An agent of `user` running with the policies in `policies` and `extra` configuration;
/// with its read-monitoring status.
fn start_agent(
    tmp: &Path,
    collector: &Collector,
    user: &str,
    policies: &Path,
    extra: &str,
) -> (Agent, String) {
    let mut agent = Agent::enroll(
        tmp,
        collector,
        user,
        &format!("policies = {:?}\n{extra}", policies.display().to_string()),
    );
    agent.start();
    let reads = reads_status(&agent);
    (agent, reads)
}

/// Reads `files` with one Python process running as `nobody`; returns the executable's path.
/// It stays a moment after, as any real copying tool does, so the agent finds its executable.
fn read_as_nobody(files: &[PathBuf]) -> String {
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    let python = python.to_str().unwrap();
    python_as_nobody("    open(p, 'rb').read()", files);
    python.to_string()
}

/// A temporary folder for a test that needs root (fanotify), readable by `nobody`, who will
/// do the reading.
fn root_tempdir() -> tempfile::TempDir {
    assert_eq!(
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap(),
        0,
        "fanotify needs CAP_SYS_ADMIN (CI runs as root)"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// A share of 60 customer files and an agent of `rui` monitoring its reads with fanotify.
fn sixty_customer_files_under_fanotify() -> (tempfile::TempDir, Collector, Agent, Vec<PathBuf>) {
    let tmp = root_tempdir();
    let collector = Collector::start(tmp.path());
    let folder = tmp.path().join("share/customers");
    let (policies, files) = customer_folder(tmp.path(), &folder, 60);
    let (agent, reads) = start_agent(tmp.path(), &collector, "rui", &policies, "");
    assert!(reads.starts_with("fanotify: reads under"), "{reads}");
    (tmp, collector, agent, files)
}

fn bulk_alerts(c: &Collector) -> Vec<serde_json::Value> {
    c.alerts()
        .into_iter()
        .filter(|a| a["rule_id"] == "reads.bulk-test")
        .collect()
}

/// The read monitoring a device reports in its coverage, once the collector has it.
fn coverage_reads(collector: &Collector) -> String {
    wait_for("the device's coverage", DEADLINE, || {
        collector
            .devices()
            .into_iter()
            .find_map(|d| d["coverage"]["reads"].as_str().map(str::to_string))
            .filter(|r| !r.is_empty())
    })
}

/// Gives the agent's start-up scan its time, reads every file with `cat`, and returns the
/// detail of the bulk-read alert that follows.
fn cat_until_alerted(collector: &Collector, files: &[PathBuf]) -> String {
    std::thread::sleep(Duration::from_secs(1));
    holdfast_tests::succeed(std::process::Command::new("/usr/bin/cat").args(files));
    let alert = wait_for("the bulk-read alert", DEADLINE, || {
        bulk_alerts(collector).pop()
    });
    alert["detail"].as_str().unwrap().to_string()
}

/// Runs a checksum reader (`reader`, given its files) that, like a real daemon, outlives its
/// reads: it reads its stdin last, held open a second, and must succeed.
fn read_and_linger(mut reader: std::process::Command) {
    let mut child = reader
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_program_reading_fifty_customer_files_is_named_by_executable_and_uid() {
    let (_tmp, collector, _agent, files) = sixty_customer_files_under_fanotify();

    // An excluded program (a checksum tool standing in for a backup) reads them all. Like a
    // real backup daemon it outlives its reads (it reads its stdin last, held open a second):
    // fanotify gives only a pid, so a reader gone before the agent looks it up cannot be
    // told apart from any other program and counts as unknown, on the safe side.
    let mut backup = std::process::Command::new("/usr/bin/sha256sum");
    backup.args(&files);
    read_and_linger(backup);
    // Then one program, as nobody, reads 55 of them.
    let python = read_as_nobody(&files[..55]);
    let python = python.as_str();

    let alert = wait_for("the bulk-read alert", DEADLINE, || {
        bulk_alerts(&collector).pop()
    });
    let detail = alert["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("{python} (pid ")), "{detail}");
    assert!(
        detail.contains("uid 65534") && detail.contains("(nobody)"),
        "{detail}"
    );
    assert!(
        detail.contains("opened 50 customer files under"),
        "{detail}"
    );
    assert_eq!(alert["severity"], "high");
    assert_eq!(bulk_alerts(&collector).len(), 1, "one alert per window");
    // The reader's risk rises, and says why.
    let rui = collector.user("rui");
    assert!(rui["score"].as_u64().unwrap() >= 20, "{rui}");
    assert_eq!(
        rui["signals"][0], "1 bulk read(s) of customer files",
        "{rui}"
    );

    // Every file it read is reported once, with its reader; sha256sum's reads are not.
    let opened = wait_for("all 55 reads", DEADLINE, || {
        let evs: Vec<serde_json::Value> = collector
            .events()
            .into_iter()
            .filter(|e| e["action"] == "opened")
            .collect();
        (evs.len() >= 55).then_some(evs)
    });
    assert_eq!(opened.len(), 55, "exactly one event per file read");
    for e in &opened {
        assert_eq!(e["process"]["exe"], python, "{e}");
        assert_eq!(e["process"]["uid"], 65534, "{e}");
        assert_eq!(e["process"]["user"], "nobody", "{e}");
    }
}

/// A policy published on the collector that names a new customer folder is monitored by the
/// running agent at once: no restart.
#[test]
fn a_published_policy_moves_read_monitoring_without_a_restart() {
    let tmp = root_tempdir();
    let collector = Collector::start(tmp.path());
    let (policies, _) = customer_folder(tmp.path(), &tmp.path().join("old-share"), 0);
    let (agent, reads) = start_agent(
        tmp.path(),
        &collector,
        "rui",
        &policies,
        "heartbeat_ms = 300\n",
    );
    assert!(
        reads.contains("old-share") && reads.starts_with("fanotify"),
        "{reads}"
    );

    let folder = tmp.path().join("new-share/customers");
    let (published, files) = customer_folder(&tmp.path().join("published"), &folder, 55);
    collector.cli(&["policy", "publish", &published.display().to_string()]);
    let reads = wait_for("the agent to monitor the new folder", DEADLINE, || {
        let r = reads_status(&agent);
        r.contains("new-share").then_some(r)
    });
    assert!(!reads.contains("old-share"), "{reads}");
    // The monitor takes the new marks within a second or so of the policy's arrival: a
    // reader each time (each counts on its own) until one of them is caught.
    let mut python = String::new();
    let alert = wait_for("the bulk-read alert", DEADLINE, || {
        python = read_as_nobody(&files);
        bulk_alerts(&collector).pop()
    });
    let detail = alert["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("{python} (pid ")), "{detail}");
    assert!(detail.contains(&folder.display().to_string()), "{detail}");
}

#[test]
fn without_fanotify_the_agent_falls_back_to_inotify_and_says_so() {
    let (tmp, collector) = Collector::scratch("");
    // The folder must be watched for inotify to see its opens: under the agent's Downloads.
    let folder = tmp.path().join("home-lea/Downloads/customers");
    let (policies, files) = customer_folder(tmp.path(), &folder, 50);
    let (_agent, reads) = start_agent(
        tmp.path(),
        &collector,
        "lea",
        &policies,
        "reads = \"inotify\"\n",
    );
    assert!(
        reads.starts_with("inotify fallback:")
            && reads.contains("without the process, uid or executable"),
        "{reads}"
    );
    // The collector sees the device's read monitoring in its coverage.
    fallback_still_catches(&collector, &files, "lea", "inotify fallback:");
}

/// The collector's coverage of the device says `coverage`, and a bulk read of the 50 `files`
/// is still an alert, by `user`'s program without naming which.
fn fallback_still_catches(collector: &Collector, files: &[PathBuf], user: &str, coverage: &str) {
    let cov = coverage_reads(collector);
    assert!(cov.contains(coverage), "{cov}");
    let detail = cat_until_alerted(collector, files);
    let by = format!("a program of {user} (which one is unknown");
    assert!(detail.starts_with(&by), "{detail}");
    assert!(detail.contains("opened 50 customer files"), "{detail}");
}

/// The real way fanotify goes missing: the agent runs without `CAP_SYS_ADMIN` (here root with
/// the capability dropped from its bounding set) and `reads` left at its default, `auto`. It
/// must find that out by itself, fall back, and say why in its status and its coverage.
#[test]
fn an_agent_without_cap_sys_admin_falls_back_by_itself_and_says_why() {
    let tmp = root_tempdir();
    let collector = Collector::start(tmp.path());
    let folder = tmp.path().join("home-kai/Downloads/customers");
    let (policies, files) = customer_folder(tmp.path(), &folder, 50);
    let mut agent = Agent::enroll(
        tmp.path(),
        &collector,
        "kai",
        &format!("policies = {:?}\n", policies.display().to_string()),
    );
    agent.launcher = [
        "setpriv",
        "--inh-caps=-sys_admin",
        "--bounding-set=-sys_admin",
    ]
    .map(String::from)
    .to_vec();
    agent.start();
    let reads = reads_status(&agent);
    assert!(
        reads.starts_with("inotify fallback:") && reads.contains("CAP_SYS_ADMIN"),
        "{reads}"
    );
    assert!(
        agent
            .log()
            .contains("read monitoring without process identity"),
        "{}",
        agent.log()
    );
    fallback_still_catches(&collector, &files, "kai", "CAP_SYS_ADMIN");
}

/// Runs `script` (Python) as `nobody` over `files`, staying a second after, as a copying tool
/// would, so the agent finds its executable.
fn python_as_nobody(script: &str, files: &[PathBuf]) {
    holdfast_tests::succeed(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::fs::canonicalize("/usr/bin/python3").unwrap())
            .arg("-c")
            .arg(format!(
                "import sys, time\nfor p in sys.argv[1:]:\n{script}\ntime.sleep(1)"
            ))
            .args(files),
    );
}

#[test]
fn a_copy_of_an_excluded_program_and_read_write_opens_are_counted() {
    let (_tmp, collector, agent, files) = sixty_customer_files_under_fanotify();
    // The user's own copy of the excluded checksum tool, under the same name.
    let copy = agent.home().join("sha256sum");
    std::fs::copy("/usr/bin/sha256sum", &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut evader = std::process::Command::new("setpriv");
    evader
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(&files[..55]);
    read_and_linger(evader);
    let alert = wait_for("the copy's bulk-read alert", DEADLINE, || {
        bulk_alerts(&collector).pop()
    });
    let detail = alert["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("{} (pid ", copy.display())),
        "{detail}"
    );
    // Opened for reading and writing, and read: counted as reads too.
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    python_as_nobody("    open(p, 'r+b').read()", &files[..55]);
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    wait_for("the read-write bulk-read alert", DEADLINE, || {
        bulk_alerts(&collector)
            .into_iter()
            .find(|a| {
                a["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(&format!("{} (pid ", python.display())))
            })
            .map(|_| ())
    });
}

#[test]
fn folders_left_unmarked_by_the_limit_are_reported() {
    let tmp = root_tempdir();
    let collector = Collector::start(tmp.path());
    let folder = tmp.path().join("share/customers");
    let (policies, _files) = customer_folder(tmp.path(), &folder, 5);
    for i in 0..6 {
        std::fs::create_dir_all(folder.join(format!("region-{i}"))).unwrap();
    }
    let mut agent = Agent::enroll(
        tmp.path(),
        &collector,
        "rui",
        &format!(
            "policies = {:?}\nheartbeat_ms = 300",
            policies.display().to_string()
        ),
    );
    agent
        .env
        .push(("HOLDFAST_READ_MARKS_MAX".into(), "3".into()));
    agent.start();
    let notice = wait_for("the marks-cap notice", DEADLINE, || {
        collector.event_where("kind", "reads_marks_cap")
    });
    let message = notice["message"].as_str().unwrap();
    assert!(
        message.contains("customer folder(s) are not monitored for reads"),
        "{message}"
    );
    let unmarked = wait_for("the coverage's unmarked folders", DEADLINE, || {
        collector
            .devices()
            .into_iter()
            .find_map(|d| d["coverage"]["reads_unmarked"].as_u64())
            .filter(|n| *n > 0)
    });
    assert!(unmarked >= 4, "7 folders, 3 marks: {unmarked}");
}
