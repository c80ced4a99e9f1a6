//! Harness for cross-process end-to-end tests: finds (or builds) the real binaries, starts
//! collector and agent processes on loopback with temporary directories and free ports,
//! and kills them when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod corpus;
pub mod crm;
pub mod cups;
pub mod dingtalk;
pub mod hook;
pub mod http;
pub mod hubspot;
pub mod salesforce;
pub mod scim;
pub mod shapes;
pub mod wecom;
pub mod zoho;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A policy folder `root/policies` holding one file, `name`, with `toml`.
pub fn policy_dir(root: &Path, name: &str, toml: &str) -> PathBuf {
    let dir = root.join("policies");
    std::fs::create_dir_all(&dir).expect("policy folder");
    std::fs::write(dir.join(name), toml).expect("policy file");
    dir
}

/// A one-line credential file `name` in `dir` (mode 0600), as an operator writes one.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).expect("secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// Whether the tests run as root (the agent's own privilege; attacks then run as another uid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// For a scenario that needs root: true as root, else says so on stderr and returns false.
/// Under CI (`CI` set, as `.ci/run` sets it) a run without root fails instead: the attacks
/// must have run for the suite to pass.
pub fn root_or_skip() -> bool {
    let root = is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs these scenarios as root: the agent runs as root and the attacker as another uid"
        );
        eprintln!("needs root: the agent runs as root and the attacker as another uid");
    }
    root
}

/// The directory holding the workspace's binaries, building them if a test runs alone.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<test-exe> → target/<profile>
        let exe = std::env::current_exe().unwrap_or_default();
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let stale = ["holdfast-agent", "holdfast-collector"]
            .iter()
            .any(|b| older_than_sources(&dir.join(b), &root));
        if stale {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&root).args([
                "build",
                "-p",
                "holdfast-agent",
                "-p",
                "holdfast-collector",
            ]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build for the binaries");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    })
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut t = std::time::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let m = if p.is_dir() {
                newest(&p)
            } else {
                e.metadata().and_then(|m| m.modified()).unwrap_or(t)
            };
            t = t.max(m);
        }
    }
    t
}

/// True when `bin` is missing or older than a source it is built from (`cargo test -p
/// holdfast-tests` alone does not rebuild the binaries; `cargo test --workspace` does).
fn older_than_sources(bin: &Path, root: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    ["shared/src", "agent/src", "collector/src", "policies"]
        .iter()
        .any(|d| newest(&root.join(d)) > built)
}

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

/// Where tests leave files for people to look at (screenshots): `target/test-artifacts/<what>`.
pub fn artifacts(what: &str) -> PathBuf {
    bin_dir()
        .parent()
        .unwrap_or_else(|| bin_dir())
        .join("test-artifacts")
        .join(what)
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral TCP port");
    s.local_addr().expect("local addr").port()
}

/// `nobody`: the unprivileged user at the laptop in scenarios that need one with a name.
pub const NOBODY: u32 = 65534;

/// Runs `cmd` as [`NOBODY`] and returns its standard output; panics when it fails, with its
/// standard error and `why()` (a daemon's log, say).
pub fn run_as_nobody(mut cmd: Command, why: impl Fn() -> String) -> String {
    use std::os::unix::process::CommandExt;
    let out = cmd
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        why()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every 100 ms until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(what: &str, deadline: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, deadline, f, String::new)
}

/// [`wait_for`], with `why()` (a daemon's log, say) in the message when it times out.
pub fn wait_for_or<T>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> Option<T>,
    why: impl Fn() -> String,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}\n{}",
            why()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(exe: &str, args: &[&str], log: PathBuf) -> Proc {
        Proc::spawn_env(exe, args, log, &[])
    }

    fn spawn_env(exe: &str, args: &[&str], log: PathBuf, env: &[(String, String)]) -> Proc {
        Proc::spawn_full(&bin(exe), args, log, env)
    }

    /// Starts a program that is not ours (by path), logging to `log`.
    pub fn spawn_path(exe: &Path, args: &[&str], log: PathBuf) -> Proc {
        Proc::spawn_full(exe, args, log, &[])
    }

    fn spawn_full(exe: &Path, args: &[&str], log: PathBuf, env: &[(String, String)]) -> Proc {
        let file = std::fs::File::create(&log).expect("creating log file");
        let child = Command::new(exe)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,quinn=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        Proc { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's combined output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns whether it exited cleanly.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a binary to completion.
pub fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(bin(exe))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {exe}: {e}"))
}

/// Runs a binary that must succeed; returns its stdout.
pub fn run_ok(exe: &str, args: &[&str]) -> String {
    succeed(
        Command::new(bin(exe))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null()),
    )
}

/// Runs a prepared command that must succeed (else panics with the command, its status and
/// its stderr); returns its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    checked(&format!("{cmd:?}"), out)
}

/// The stdout of a finished process that must have succeeded (else panics naming `what`).
pub fn checked(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `holdfast-agent`'s arguments to enroll with the collector at `addr` into `data_dir`.
pub fn enroll_args<'a>(addr: &'a str, token: &'a str, data_dir: &'a str) -> [&'a str; 7] {
    [
        "enroll",
        "--collector",
        addr,
        "--token",
        token,
        "--data-dir",
        data_dir,
    ]
}

/// Runs a binary that must fail; returns its stderr.
pub fn run_err(exe: &str, args: &[&str]) -> String {
    let out = run(exe, args);
    assert!(!out.status.success(), "{exe} {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses JSON-lines output.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A collector process with its own data directory and port.
pub struct Collector {
    pub dir: PathBuf,
    pub port: u16,
    /// The console/API port (TCP).
    pub http_port: u16,
    pub config: PathBuf,
    pub proc: Option<Proc>,
}

/// A collector started in a fresh folder with `collector_extra` config lines, and one agent
/// of `user` enrolled and started with `agent_extra`: the opening of most scenarios. Keep
/// the folder alive as long as the processes.
pub fn scene(
    collector_extra: &str,
    user: &str,
    agent_extra: &str,
) -> (tempfile::TempDir, Collector, Agent) {
    let (tmp, c) = Collector::scratch(collector_extra);
    let a = Agent::started(tmp.path(), &c, user, agent_extra);
    (tmp, c, a)
}

impl Collector {
    /// Writes a config under `root` and starts `holdfast-collector serve`.
    pub fn start(root: &Path) -> Collector {
        Collector::start_with(root, "")
    }

    /// A fresh temporary folder and a collector started in it with `extra` config lines: the
    /// opening of most scenarios. Keep the folder alive as long as the collector.
    pub fn scratch(extra: &str) -> (tempfile::TempDir, Collector) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = Collector::start_with(tmp.path(), extra);
        (tmp, c)
    }

    /// Like [`Collector::start`], with extra config lines (e.g. `offline_after = "2s"`).
    pub fn start_with(root: &Path, extra: &str) -> Collector {
        let mut c = Collector::configure(root, extra);
        c.restart();
        c
    }

    /// Writes the config and data directory without starting the server.
    pub fn configure(root: &Path, extra: &str) -> Collector {
        let dir = root.join("collector");
        std::fs::create_dir_all(&dir).expect("collector dir");
        let port = free_udp_port();
        let http_port = free_tcp_port();
        let config = root.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\n{extra}\n",
                dir.display().to_string()
            ),
        )
        .expect("collector config");
        Collector {
            dir,
            port,
            http_port,
            config,
            proc: None,
        }
    }

    /// (Re)starts the server process on the same port and data, waiting until it listens.
    pub fn restart(&mut self) {
        // A server still running holds the ports: stop it cleanly first.
        if let Some(mut old) = self.proc.take() {
            old.terminate(Duration::from_secs(10));
        }
        let log = self.dir.join(format!(
            "serve-{}.log",
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        ));
        let p = Proc::spawn(
            "holdfast-collector",
            &["serve", "--config", &self.config.display().to_string()],
            log,
        );
        wait_for("collector to listen", Duration::from_secs(30), || {
            p.output().contains("collector listening").then_some(())
        });
        self.proc = Some(p);
    }

    /// `HOST:PORT` for agents.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs an admin subcommand against this collector's config.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.config.display().to_string();
        all.extend(["--config", &cfg]);
        run_ok("holdfast-collector", &all)
    }

    /// The console/API base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// The value of an unlabelled `/metrics` sample, e.g. `holdfast_edm_bytes_served_total`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = http::Client::new(&self.url("")).get("/metrics").body;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// A new API token with `role`, named `name`.
    pub fn api_token(&self, name: &str, role: &str) -> String {
        self.cli(&["api-token", "create", "--name", name, "--role", role])
            .trim()
            .to_string()
    }

    /// A fresh enrollment token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.cli(&["token", "create", "--user", user])
            .trim()
            .to_string()
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        json_lines(&self.cli(&["alerts", "list", "--json"]))
    }

    /// The first stored event whose field `key` is `value` (`"kind"`, `"path"`).
    pub fn event_where(&self, key: &str, value: &str) -> Option<serde_json::Value> {
        self.events().into_iter().find(|e| e[key] == value)
    }

    /// The first stored alert whose field `key` is `value` (`"path"`, `"rule_id"`).
    pub fn alert_where(&self, key: &str, value: &str) -> Option<serde_json::Value> {
        self.alerts().into_iter().find(|a| a[key] == value)
    }

    /// The paths of the stored events whose destination is of `kind` (`"print"`, `"upload"`).
    pub fn paths_sent_to(&self, kind: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e["destination"]["kind"] == kind)
            .map(|e| e["path"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        json_lines(&self.cli(&["events", "list", "--json", "--limit", "1000000"]))
    }

    /// Everything an operator sees of `user`'s offboarding: the collector's log, `offboard
    /// status` and the audit log (where no secret may show).
    pub fn shown_of_offboarding(&self, user: &str) -> String {
        format!(
            "{}{}{}",
            self.proc.as_ref().map(Proc::output).unwrap_or_default(),
            self.cli(&["offboard", "status", user]),
            self.cli(&["audit", "list", "--json"])
        )
    }

    /// `offboard status USER --json`: the offboarding, its handover and connector runs.
    pub fn offboard_status(&self, user: &str) -> serde_json::Value {
        let out = self.cli(&["offboard", "status", user, "--json"]);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("offboard status is not JSON ({e}): {out}"))
    }

    /// `user`'s run of `connector` for `event` once it has stopped retrying (ok or failed);
    /// panics after a minute.
    pub fn settled_run(&self, user: &str, connector: &str, event: &str) -> serde_json::Value {
        wait_for(
            &format!("{user}'s {event} run of {connector} to settle"),
            Duration::from_secs(60),
            || {
                self.offboard_status(user)["connectors"]
                    .as_array()?
                    .iter()
                    .find(|r| {
                        r["connector"] == connector
                            && r["event"] == event
                            && (r["status"] == "ok" || r["status"] == "failed")
                    })
                    .cloned()
            },
        )
    }

    /// `users list`: every user with their offboarding state, risk score and signals.
    pub fn users(&self) -> Vec<serde_json::Value> {
        json_lines(&self.cli(&["users", "list", "--json"]))
    }

    /// The `users list` row of `name`; panics, with the list, when there is none.
    pub fn user(&self, name: &str) -> serde_json::Value {
        let users = self.users();
        users
            .iter()
            .find(|u| u["user"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no user row for {name}: {users:?}"))
    }

    pub fn devices(&self) -> Vec<serde_json::Value> {
        json_lines(&self.cli(&["devices", "list", "--json"]))
    }

    /// Highest committed seq per device id.
    pub fn last_seqs(&self) -> std::collections::BTreeMap<String, u64> {
        self.devices()
            .into_iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap_or_default().to_string(),
                    d["last_seq"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Stops the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// The CA certificate (DER) agents trust.
    pub fn ca_der(&self) -> Vec<u8> {
        let text = std::fs::read(self.dir.join("ca.crt")).expect("ca.crt");
        pem::parse(text).expect("ca.crt is PEM").into_contents()
    }
}

fn rand_suffix() -> u128 {
    rand::random::<u64>() as u128
}

/// An enrolled agent with its own data directory and watched folder.
pub struct Agent {
    pub data_dir: PathBuf,
    pub watched: PathBuf,
    pub config: PathBuf,
    pub proc: Option<Proc>,
    /// Environment for every start (e.g. a skewed clock).
    pub env: Vec<(String, String)>,
    /// A program (with its arguments) the daemon is started through, e.g. `setpriv` dropping
    /// a capability; empty to start it directly.
    pub launcher: Vec<String>,
}

impl Agent {
    /// Enrolls a new agent for `user` against `collector` and starts `holdfast-agent run`.
    pub fn enroll_and_start(root: &Path, collector: &Collector, user: &str) -> Agent {
        Agent::started(root, collector, user, "")
    }

    /// Enrolls with `extra` config lines and starts, waiting until the agent runs.
    pub fn started(root: &Path, collector: &Collector, user: &str, extra: &str) -> Agent {
        let mut a = Agent::enroll(root, collector, user, extra);
        a.start();
        a
    }

    /// Enrolls without starting; `extra` config lines are appended (e.g. `spool_max = ...`).
    pub fn enroll(root: &Path, collector: &Collector, user: &str, extra: &str) -> Agent {
        Agent::enroll_device(root, collector, user, user, extra)
    }

    /// Like [`Agent::enroll`], for one of several devices of `user`: `device` names its data
    /// directory, config and home (`home-{device}`).
    pub fn enroll_device(
        root: &Path,
        collector: &Collector,
        user: &str,
        device: &str,
        extra: &str,
    ) -> Agent {
        let agent = Agent::configured(root, device, extra);
        let token = collector.token(user);
        let cfg = agent.config.display().to_string();
        // As the README says: the token in a file, never in argv (where `ps` shows it).
        let token_file = root.join(format!("token-{device}"));
        std::fs::write(&token_file, format!("{token}\n")).expect("token file");
        run_ok(
            "holdfast-agent",
            &[
                "enroll",
                "--collector",
                &collector.addr(),
                "--token-file",
                &token_file.display().to_string(),
                "--config",
                &cfg,
            ],
        );
        let _ = std::fs::remove_file(&token_file);
        agent
    }

    /// An agent configured but neither enrolled nor started: its data directory
    /// `agent-{device}`, home `home-{device}` and watched `~/Downloads` under `root`; `extra`
    /// config lines are appended.
    pub fn configured(root: &Path, device: &str, extra: &str) -> Agent {
        let data_dir = root.join(format!("agent-{device}"));
        let watched = root.join(format!("home-{device}/Downloads"));
        std::fs::create_dir_all(&watched).expect("watched dir");
        let config = root.join(format!("agent-{device}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nwatch = [{:?}]\nsettle_ms = 300\nhome = {:?}\n{extra}\n",
                data_dir.display().to_string(),
                watched.display().to_string(),
                root.join(format!("home-{device}")).display().to_string()
            ),
        )
        .expect("agent config");
        Agent {
            data_dir,
            watched,
            config,
            proc: None,
            env: Vec::new(),
            launcher: Vec::new(),
        }
    }

    /// The home folder (`~`) this agent was configured with.
    pub fn home(&self) -> PathBuf {
        self.watched
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Starts the daemon and waits until it watches.
    pub fn start(&mut self) {
        let log = self.data_dir.join(format!("run-{}.log", rand_suffix()));
        let config = self.config.display().to_string();
        let agent = bin("holdfast-agent").display().to_string();
        let run = [agent.as_str(), "run", "--config", &config];
        let p = match self.launcher.split_first() {
            None => Proc::spawn_full(&bin("holdfast-agent"), &run[1..], log, &self.env),
            Some((launcher, with)) => {
                let args: Vec<&str> = with.iter().map(String::as_str).chain(run).collect();
                Proc::spawn_full(Path::new(launcher), &args, log, &self.env)
            }
        };
        wait_for("agent to run", Duration::from_secs(30), || {
            p.output().contains("agent running").then_some(())
        });
        self.proc = Some(p);
    }

    /// Stops the daemon with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Stops the daemon with SIGTERM (clean shutdown); returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.proc
            .take()
            .map(|mut p| p.terminate(Duration::from_secs(15)))
            .unwrap_or(true)
    }

    /// Everything the daemon logged so far (current run).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }

    /// Writes `n` small rule-less CSV files named `{prefix}-{i}.csv` into the watched folder.
    pub fn write_files(&self, prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let p = self.watched.join(format!("{prefix}-{i:06}.csv"));
                std::fs::write(&p, format!("id,note\n{i},plain row\n")).expect("writing a file");
                p.display().to_string()
            })
            .collect()
    }

    /// A 200-row customer export and a 200-row price list (the look-alike that must stay
    /// silent) written into the watched folder, returned once `collector` has both.
    pub fn export_and_price_list(&self, collector: &Collector, seed: u64) -> (PathBuf, PathBuf) {
        let export = self.watched.join("salesforce_contacts.csv");
        std::fs::write(&export, corpus::salesforce_contacts(seed, 200)).unwrap();
        let prices = self.watched.join("price-list-2026.csv");
        std::fs::write(&prices, corpus::price_list(seed, 200)).unwrap();
        let paths = [export.display().to_string(), prices.display().to_string()];
        wait_for("both files reported", Duration::from_secs(120), || {
            let e = collector.events();
            let seen = |p: &str| e.iter().any(|x| x["path"] == p && x["action"] == "created");
            paths.iter().all(|p| seen(p)).then_some(())
        });
        (export, prices)
    }

    /// `holdfast-agent status --json`.
    pub fn status(&self) -> serde_json::Value {
        let cfg = self.config.display().to_string();
        let out = run_ok("holdfast-agent", &["status", "--json", "--config", &cfg]);
        serde_json::from_str(out.trim()).expect("status JSON")
    }
}
