//! The README as a new user follows it: every `sh` block, in order, run by bash (`-e`: the
//! first failing command fails the test) in a sandbox HOME and working folder. Programs a
//! reader would have are stood in for where this machine cannot offer them: `cargo run -p X
//! -- …` runs the built X, `cargo test` is this very suite, `sudo` runs as the test's root,
//! `apt-get install` checks the packages are installed (CI installed them). A server a block
//! starts (`quickstart`, `serve`, `holdfast-agent run`) is started in the background and
//! waited for; a new collector server stops the ones before it. The README's placeholders for
//! what only a real deployment has (the collector's host, a device id, alert ids, an API
//! token in `$TOKEN`) are replaced by the sandbox's. The packages block installs the real
//! packages (`apt-get install ./x.deb` is `dpkg -i`), with the configs a deployment writes
//! in place first and systemd stood in for (units started as their `User=` when their
//! condition holds, stopped with SIGTERM and their `ExecStopPost`); everything is purged
//! after. A block preceded by `<!-- readme-test: skip, see tests/tests/X.rs -->` is run by
//! that test instead (which must exist).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{bin_dir, corpus, root_or_skip, wait_for_or};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// One `sh` block: its first line number and its text, or the test that runs it instead.
struct Block {
    line: usize,
    text: String,
    skip_for: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut directive: Option<String> = None;
    while let Some((n, line)) = lines.next() {
        if let Some(d) = line.trim().strip_prefix("<!-- readme-test:") {
            directive = Some(d.trim_end_matches("-->").trim().to_string());
            continue;
        }
        if line.trim() != "```sh" {
            if !line.trim().is_empty() {
                directive = None;
            }
            continue;
        }
        let mut text = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        let skip_for = directive.take().map(|d| {
            let test = d
                .strip_prefix("skip, see ")
                .unwrap_or_else(|| panic!("README line {}: unknown directive {d:?}", n + 1));
            test.to_string()
        });
        out.push(Block {
            line: n + 2,
            text,
            skip_for,
        });
    }
    out
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The stand-ins, in `shims/`, first on the PATH.
fn shims(dir: &Path, sandbox: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let bins = bin_dir().display().to_string();
    let sandbox = sandbox.display().to_string();
    script(
        &dir.join("cargo"),
        &format!(
            r#"#!/bin/bash
# cargo run [--release] -p NAME -- ARGS: the built NAME; cargo test: this suite itself.
set -e
case "$1" in
  test) echo "cargo test: the suite running this README"; exit 0 ;;
  run)
    shift; name=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
      [ "$1" = "-p" ] && name=$2 && shift
      shift
    done
    shift
    exec "{dir}/$name" "$@" ;;
  *) echo "cargo $1: not stood in for" >&2; exit 1 ;;
esac
"#,
            dir = dir.display()
        ),
    );
    // A server: started in the background, waited for, its log kept in the sandbox.
    let server = |name: &str, servers: &str, ready: &str| {
        format!(
            r#"#!/bin/bash
set -e
real="{bins}/{name}"
case " {servers} " in
  *" $1 "*)
    if [ "{name}" = holdfast-collector ]; then
      # One collector at a time: the ones before stop (and free their ports) first.
      for p in $(cat "{sandbox}/{name}.pids" 2>/dev/null); do
        kill "$p" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      done
      : > "{sandbox}/{name}.pids"
    fi
    n=$(ls "{sandbox}"/logs | wc -l)
    log="{sandbox}/logs/$n-{name}-$1.log"
    nohup "$real" "$@" > "$log" 2>&1 < /dev/null &
    pid=$!
    echo $pid >> "{sandbox}/{name}.pids"
    for i in $(seq 600); do
      grep -q "{ready}" "$log" && {{ echo "{name} $1 running (pid $pid, log $log)"; exit 0; }}
      kill -0 $pid 2>/dev/null || {{ cat "$log" >&2; exit 1; }}
      sleep 0.1
    done
    cat "$log" >&2; exit 1 ;;
esac
exec "$real" "$@"
"#
        )
    };
    std::fs::create_dir_all(Path::new(&sandbox).join("logs")).unwrap();
    script(
        &dir.join("holdfast-collector"),
        &server(
            "holdfast-collector",
            "serve quickstart",
            "collector listening\\|Press Ctrl-C",
        ),
    );
    script(
        &dir.join("holdfast-agent"),
        &server("holdfast-agent", "run", "agent running"),
    );
    script(
        &dir.join("sudo"),
        "#!/bin/sh\n# The test runs as root: sudo runs the rest, as USER for -u USER.\n\
         if [ \"$1\" = -u ]; then u=$2; shift 2\n\
           exec setpriv --reuid \"$u\" --regid \"$u\" --init-groups \"$@\"\nfi\nexec \"$@\"\n",
    );
    script(
        &dir.join("apt-get"),
        "#!/bin/sh\n# Nothing is downloaded here: a package named must be installed already; a\n\
         # package file is installed with dpkg, keeping configs already in place.\n\
         [ \"$1\" = install ] || { echo \"apt-get $1: not stood in for\" >&2; exit 1; }\n\
         shift\nfor p in \"$@\"; do\n  case \"$p\" in\n    -*) continue ;;\n\
             */*.deb) dpkg -i --force-confold \"$p\" || exit 1 ;;\n\
             *) dpkg -s \"$p\" >/dev/null 2>&1 || { echo \"apt-get: $p is not installed\" >&2; exit 1; } ;;\n\
           esac\ndone\n",
    );
    // systemd does not run here: its units are started as systemd would, as their User=,
    // when their condition holds, and stopped with SIGTERM and their ExecStopPost.
    script(
        &dir.join("systemctl"),
        &format!(
            r#"#!/bin/bash
set -e
state="{sandbox}/systemd"
mkdir -p "$state"
unit_file() {{ echo "/lib/systemd/system/${{1%.service}}.service"; }}
key() {{ sed -n "s/^$2=//p" "$(unit_file "$1")" | head -1; }}
start() {{
  local u=${{1%.service}} cond user cmd
  [ -f "$state/$u.pid" ] && kill -0 "$(cat "$state/$u.pid")" 2>/dev/null && return 0
  cond=$(key "$u" ConditionPathExists)
  if [ -n "$cond" ] && [ ! -e "$cond" ]; then return 0; fi
  user=$(key "$u" User)
  cmd=$(key "$u" ExecStart)
  if [ -n "$user" ]; then
    nohup setpriv --reuid "$user" --regid "$user" --init-groups $cmd > "{sandbox}/logs/unit-$u.log" 2>&1 < /dev/null &
  else
    nohup $cmd > "{sandbox}/logs/unit-$u.log" 2>&1 < /dev/null &
  fi
  echo $! > "$state/$u.pid"
  echo $! >> "{sandbox}/holdfast-agent.pids"
  sleep 1
}}
stop() {{
  local u=${{1%.service}} pid post
  [ -f "$state/$u.pid" ] || return 0
  pid=$(cat "$state/$u.pid"); rm -f "$state/$u.pid"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  post=$(key "$u" ExecStopPost)
  if [ -n "$post" ]; then eval "${{post#-}}" || true; fi
}}
now=""; verb=$1; shift
units=()
for a in "$@"; do
  case "$a" in --now) now=1 ;; -*) ;; *) units+=("$a") ;; esac
done
case "$verb" in
  daemon-reload) ;;
  enable) for u in "${{units[@]}}"; do echo enabled > "$state/${{u%.service}}.enabled"; if [ -n "$now" ]; then start "$u"; fi; done ;;
  disable) for u in "${{units[@]}}"; do echo disabled > "$state/${{u%.service}}.enabled"; if [ -n "$now" ]; then stop "$u"; fi; done ;;
  start|restart) for u in "${{units[@]}}"; do if [ "$verb" = restart ]; then stop "$u"; fi; start "$u"; done ;;
  stop) for u in "${{units[@]}}"; do stop "$u"; done ;;
  is-enabled) cat "$state/${{units[0]%.service}}.enabled" 2>/dev/null || {{ echo disabled; exit 1; }} ;;
  *) echo "systemctl $verb: not stood in for" >&2; exit 1 ;;
esac
"#
        ),
    );
}

/// Runs `text` with bash in `cwd`; returns stdout, or panics with everything.
fn bash(text: &str, cwd: &Path, env: &[(String, String)], what: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", text])
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let sandbox = cwd.parent().unwrap_or(cwd);
        panic!(
            "{what} failed ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            logs(sandbox)
        );
    }
    stdout
}

fn kill_all(sandbox: &Path) {
    for name in ["holdfast-collector.pids", "holdfast-agent.pids"] {
        let pids = std::fs::read_to_string(sandbox.join(name)).unwrap_or_default();
        for p in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-9", p])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Every server's log so far.
fn logs(sandbox: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(sandbox.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        out.push_str(&format!("--- {}\n", e.path().display()));
        out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    out
}

/// Stops every server the README started and removes what its package block installed,
/// whatever happens.
struct Servers {
    sandbox: PathBuf,
    /// The marker that says systemd runs, made by this test (removed after it).
    made_systemd_marker: bool,
}

impl Drop for Servers {
    fn drop(&mut self) {
        // Purged while the packaged collector still runs, so the agent's farewell is quick.
        let _ = Command::new("dpkg")
            .args(["--purge", "holdfast-agent", "holdfast-collector"])
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.sandbox.join("shims").display()
                ),
            )
            .output();
        kill_all(&self.sandbox);
        if self.made_systemd_marker {
            let _ = std::fs::remove_dir(SYSTEMD_MARKER);
        }
        let _ = std::fs::remove_dir_all("/etc/holdfast");
    }
}

/// Where maintainer scripts look to tell whether systemd runs.
const SYSTEMD_MARKER: &str = "/run/systemd/system";

#[test]
fn every_shell_block_of_the_readme_runs_in_order() {
    if !root_or_skip() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().to_path_buf();
    std::fs::set_permissions(&sandbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = sandbox.join("home");
    let work = sandbox.join("work");
    for d in [home.join("Downloads"), work.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The working folder is a checkout's: what the README names in it is there (the SCIM
    // server's venv is the one `.ci/run` made, with the same python on the PATH: making it
    // again there installs nothing).
    for name in [
        "policies",
        ".ci",
        "target",
        "Cargo.toml",
        "README.md",
        "agent",
        "collector",
    ] {
        std::os::unix::fs::symlink(repo.join(name).canonicalize().unwrap(), work.join(name))
            .unwrap();
    }
    let mut servers = Servers {
        sandbox: sandbox.clone(),
        made_systemd_marker: false,
    };
    let shim_dir = sandbox.join("shims");
    shims(&shim_dir, &sandbox);
    // What a deployment has that the README can only name: its own configs and files.
    std::fs::write(
        work.join("collector.toml"),
        "data_dir = \"collector-data\"\nlisten = \"127.0.0.1:7443\"\n\
         http_listen = \"127.0.0.1:7480\"\n",
    )
    .unwrap();
    std::fs::write(
        work.join("agent.toml"),
        format!(
            "data_dir = \"agent-data\"\nhome = \"{}\"\nwatch = [\"~/Downloads\"]\nheartbeat_ms = 300\n",
            home.display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("customers.csv"),
        corpus::salesforce_contacts(77, 300),
    )
    .unwrap();
    std::fs::write(
        work.join("leavers.csv"),
        "user,resignation date,last working day\nbob,2026-11-30,2027-01-15\n",
    )
    .unwrap();
    let path = format!(
        "{}:{}:{}",
        shim_dir.display(),
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), home.display().to_string()),
        ("PATH".into(), path),
        ("NO_COLOR".into(), "1".into()),
        ("RUST_LOG".into(), "info,quinn=warn".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("USER".into(), "root".into()),
    ];
    let cli = |args: &str, env: &[(String, String)]| {
        bash(
            &format!("holdfast-collector {args} --config collector.toml"),
            &work,
            env,
            args,
        )
    };
    let all = blocks(&readme);
    assert!(all.len() >= 10, "{} blocks", all.len());
    for block in &all {
        let what = format!("README.md block at line {}", block.line);
        if let Some(test) = &block.skip_for {
            assert!(repo.join(test).exists(), "{what}: {test} does not exist");
            continue;
        }
        let mut text = block.text.replace("collector.corp:7443", "127.0.0.1:7443");
        if text.contains("apt-get install ./") {
            // The packages block: the sandbox's servers stop (the packaged collector takes
            // their port), the configs a deployment writes are in place before the install
            // (on loopback; the packages keep them), and systemd is stood in for.
            kill_all(&sandbox);
            if !Path::new(SYSTEMD_MARKER).exists() {
                std::fs::create_dir_all(SYSTEMD_MARKER).unwrap();
                servers.made_systemd_marker = true;
            }
            std::fs::create_dir_all("/etc/holdfast").unwrap();
            std::fs::write(
                "/etc/holdfast/collector.toml",
                "data_dir = \"/var/lib/holdfast-collector\"\nlisten = \"127.0.0.1:7443\"\n\
                 http_listen = \"127.0.0.1:7480\"\n",
            )
            .unwrap();
            std::fs::write(
                "/etc/holdfast/agent.toml",
                format!(
                    "data_dir = \"/var/lib/holdfast-agent\"\nhome = \"{}\"\n\
                     watch = [\"~/Downloads\"]\nheartbeat_ms = 300\n",
                    home.display()
                ),
            )
            .unwrap();
            env.push((
                "HOLDFAST_PACKAGE_BINS".into(),
                bin_dir().display().to_string(),
            ));
        }
        if text.contains("dev-…") {
            // A second device, Bob's, to revoke.
            let token = cli("token create --user bob", &env);
            let out = bash(
                &format!(
                    "holdfast-agent enroll --collector 127.0.0.1:7443 --token {} --data-dir bob-agent",
                    token.trim()
                ),
                &work,
                &env,
                "enrolling bob",
            );
            let device = out.split_whitespace().nth(3).unwrap().to_string();
            text = text.replace("dev-…", &device);
        }
        if text.contains("alerts triage") {
            // Two alerts to act on: two exports on Alice's laptop.
            for (i, name) in ["q3-accounts.csv", "crm-dump.csv"].iter().enumerate() {
                std::fs::write(
                    home.join("Downloads").join(name),
                    corpus::salesforce_contacts(90 + i as u64, 120),
                )
                .unwrap();
            }
            let ids: Vec<String> = wait_for_or(
                "two alerts from Alice's laptop",
                DEADLINE,
                || {
                    let listed = cli("alerts list --json --sort newest", &env);
                    let ids: Vec<String> = holdfast_tests::json_lines(&listed)
                        .iter()
                        .filter(|a| a["user"] == "alice")
                        .map(|a| a["id"].to_string())
                        .collect();
                    (ids.len() >= 2).then_some(ids)
                },
                || logs(&sandbox),
            );
            text = text
                .lines()
                .map(|l| {
                    if l.contains("alerts triage")
                        || l.contains("alerts resolve")
                        || l.contains("alerts dismiss")
                    {
                        l.replace(" 12 ", &format!(" {} ", ids[0]))
                            .replace(" 14 ", &format!(" {} ", ids[1]))
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        if text.contains("$TOKEN") && !env.iter().any(|(k, _)| k == "TOKEN") {
            let token = cli("api-token create --name readme --role it_admin", &env);
            env.push(("TOKEN".into(), token.trim().to_string()));
        }
        let out = bash(&text, &work, &env, &what);
        if text.contains("alerts list --data-dir") {
            // Try it: the export dropped into Downloads is the alert the README promises.
            let again = wait_for_or(
                "Try it's alert",
                DEADLINE,
                || {
                    let shown = bash(&text, &work, &env, &what);
                    shown.contains("crm-export.salesforce").then_some(shown)
                },
                || format!("{out}\n{}", logs(&sandbox)),
            );
            assert!(again.contains("200"), "{again}");
        }
    }
}
