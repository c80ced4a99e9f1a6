//! `holdfast-agent doctor`: checks what the agent needs on this machine, one line each —
//! its capabilities, the inotify watch limit against the folders watched, fanotify, the
//! collector's reachability and clock, the device certificate's expiry and the spool's
//! health — so IT can tell from a device-management script why a laptop reports nothing.

use crate::config::Config;
use crate::identity::Identity;
use crate::spool::Spool;
use holdfast_shared::time::UnixMs;
use holdfast_shared::wire::Message;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// The agent works, with less than it could (a limit near, a fallback in use).
    Warn,
    /// The agent cannot do its job until this is fixed.
    Fail,
}

/// One check's line.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        check: name,
        verdict,
        detail: detail.into(),
    }
}

/// The capabilities the agent uses, by number (linux/capability.h) and name.
const NEEDED: &[(u32, &str)] = &[
    (21, "CAP_SYS_ADMIN"),
    (2, "CAP_DAC_READ_SEARCH"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (0, "CAP_CHOWN"),
    (7, "CAP_SETUID"),
    (6, "CAP_SETGID"),
    (5, "CAP_KILL"),
];

/// The clock difference beyond which the collector flags a device (its default).
const SKEW_WARN: Duration = Duration::from_secs(300);
/// A certificate closer than this to its end is a warning (agents renew well before).
const CERT_WARN: Duration = Duration::from_secs(7 * 86_400);
/// Folders counted under the watched roots, at most.
const MAX_COUNTED: u64 = 1_000_000;
/// How long the collector has to answer.
const REACH_WITHIN: Duration = Duration::from_secs(25);

/// Every check, in order.
pub async fn run(c: &Config, now_ms: UnixMs) -> Vec<Check> {
    let identity = Identity::load(&c.data_dir);
    let mut out = vec![capabilities(), inotify(c), fanotify()];
    match &identity {
        Ok(id) => {
            out.extend(collector(id).await);
            out.push(certificate(id, now_ms));
        }
        Err(e) => out.push(check("enrollment", Verdict::Fail, e.to_string())),
    }
    out.push(spool(c));
    out
}

/// The effective capability set of this process, from /proc.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn capabilities() -> Check {
    let Some(caps) = effective_caps() else {
        return check(
            "capabilities",
            Verdict::Fail,
            "cannot read /proc/self/status",
        );
    };
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| caps & (1u64 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    match missing.len() {
        0 => check(
            "capabilities",
            Verdict::Ok,
            format!("all {} the agent uses", NEEDED.len()),
        ),
        n if n == NEEDED.len() => check(
            "capabilities",
            Verdict::Fail,
            "none of the agent's: run it as root (its systemd unit does)",
        ),
        _ => check(
            "capabilities",
            Verdict::Warn,
            format!("missing {}", missing.join(", ")),
        ),
    }
}

/// Folders under `root`, counted up to `left`.
fn count_dirs(root: &Path, left: &mut u64) -> u64 {
    let mut n = 1;
    let Ok(entries) = std::fs::read_dir(root) else {
        return n;
    };
    for e in entries.flatten() {
        if *left == 0 {
            break;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            *left -= 1;
            n += count_dirs(&e.path(), left);
        }
    }
    n
}

fn inotify(c: &Config) -> Check {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let Some(limit) = limit else {
        return check(
            "inotify",
            Verdict::Fail,
            "no /proc/sys/fs/inotify/max_user_watches: no inotify in this kernel",
        );
    };
    let mut left = MAX_COUNTED;
    let folders: u64 = c
        .watch
        .iter()
        .filter(|w| w.is_dir())
        .map(|w| count_dirs(w, &mut left))
        .sum();
    let detail = format!(
        "{limit} watches allowed, {folders} folders under the {} watched roots",
        c.watch.len()
    );
    if folders > limit {
        check(
            "inotify",
            Verdict::Warn,
            format!(
                "{detail}: the rest are polled; raise it with \
                 sysctl fs.inotify.max_user_watches={}",
                (folders * 2).next_power_of_two()
            ),
        )
    } else {
        check("inotify", Verdict::Ok, detail)
    }
}

fn fanotify() -> Check {
    match crate::fanotify::probe() {
        Ok(_) => check(
            "fanotify",
            Verdict::Ok,
            "available: reads of customer folders are seen with their process",
        ),
        Err(e) => check(
            "fanotify",
            Verdict::Warn,
            format!("unavailable ({e}): reads are seen through inotify, without the process"),
        ),
    }
}

/// Reachability and clock, from one ping over the device's own mutual-TLS connection.
async fn collector(id: &Identity) -> Vec<Check> {
    let addr = id.enrollment.collector.clone();
    let ping = async {
        let cfg = crate::tls::identity_client(id)?;
        let sent = std::time::Instant::now();
        let local = crate::clock::now_ms();
        let (endpoint, conn) = crate::uplink::connect(&addr, cfg).await?;
        let answer = crate::uplink::exchange(&conn, &Message::Ping { time_ms: local }).await;
        conn.close(0u32.into(), b"doctor");
        endpoint.wait_idle().await;
        Ok::<_, crate::uplink::UplinkError>((answer?, sent.elapsed(), local))
    };
    let (answer, rtt, local) = match tokio::time::timeout(REACH_WITHIN, ping).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return vec![
                check("collector", Verdict::Fail, e.to_string()),
                check("clock", Verdict::Warn, "not compared: no collector"),
            ]
        }
        Err(_) => {
            return vec![
                check(
                    "collector",
                    Verdict::Fail,
                    format!("no answer from {addr} within {}s", REACH_WITHIN.as_secs()),
                ),
                check("clock", Verdict::Warn, "not compared: no collector"),
            ]
        }
    };
    let reach = check(
        "collector",
        Verdict::Ok,
        format!("{addr} answered in {} ms over mutual TLS", rtt.as_millis()),
    );
    let Message::Pong { time_ms } = answer else {
        // An older collector does not know the ping: reachable all the same.
        return vec![
            reach,
            check(
                "clock",
                Verdict::Warn,
                "not compared: the collector has no clock answer",
            ),
        ];
    };
    // The collector read its clock about half-way through the round trip.
    let skew = (local.ms() + rtt.as_millis() as i64 / 2) - time_ms.ms();
    let detail = format!(
        "{} ms {} the collector's",
        skew.abs(),
        if skew >= 0 { "ahead of" } else { "behind" }
    );
    let verdict = if skew.unsigned_abs() > SKEW_WARN.as_millis() as u64 {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    vec![reach, check("clock", verdict, detail)]
}

fn certificate(id: &Identity, now_ms: UnixMs) -> Check {
    let expires = match x509_parser::parse_x509_certificate(&id.cert_der) {
        Ok((_, cert)) => UnixMs(cert.validity().not_after.timestamp().saturating_mul(1000)),
        Err(e) => return check("certificate", Verdict::Fail, format!("unreadable: {e}")),
    };
    let left = expires.ms() - now_ms.ms();
    let days = left / 86_400_000;
    if left <= 0 {
        check(
            "certificate",
            Verdict::Fail,
            format!("expired {}: enroll again", expires.rfc3339()),
        )
    } else if left < CERT_WARN.as_millis() as i64 {
        check(
            "certificate",
            Verdict::Warn,
            format!(
                "expires {} (in {days} days) and has not been renewed",
                expires.rfc3339()
            ),
        )
    } else {
        check(
            "certificate",
            Verdict::Ok,
            format!("valid until {} ({days} days)", expires.rfc3339()),
        )
    }
}

fn spool(c: &Config) -> Check {
    use std::os::unix::fs::MetadataExt;
    let dir = match std::fs::symlink_metadata(&c.data_dir) {
        Ok(m) => m,
        Err(e) => {
            return check(
                "spool",
                Verdict::Fail,
                format!("{}: {e}", c.data_dir.display()),
            )
        }
    };
    let me = nix::unistd::geteuid().as_raw();
    if !dir.is_dir() || dir.uid() != me || dir.mode() & 0o077 != 0 {
        return check(
            "spool",
            Verdict::Fail,
            format!(
                "{} must be a folder of uid {me} that no one else can open (mode {:o}, uid {})",
                c.data_dir.display(),
                dir.mode() & 0o7777,
                dir.uid()
            ),
        );
    }
    let path = c.data_dir.join(crate::spool::SPOOL_FILE);
    let checked = Spool::open(&path).and_then(|s| {
        Ok((
            s.integrity()?,
            s.backlog()?,
            s.bytes()?,
            s.meta("max_bytes")?,
        ))
    });
    match checked {
        Err(e) => check("spool", Verdict::Fail, format!("{}: {e}", path.display())),
        Ok((Some(problem), ..)) => check(
            "spool",
            Verdict::Fail,
            format!("{}: damaged: {problem}", path.display()),
        ),
        Ok((None, backlog, bytes, max)) => {
            let max: u64 = max.and_then(|m| m.parse().ok()).unwrap_or(c.spool_max);
            let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1_048_576.0);
            let detail = format!(
                "{backlog} events waiting, {} of {} used",
                mib(bytes),
                mib(max)
            );
            if bytes.saturating_mul(10) > max.saturating_mul(8) {
                check("spool", Verdict::Warn, format!("{detail}: nearly full"))
            } else {
                check("spool", Verdict::Ok, detail)
            }
        }
    }
}

/// The checks as lines for people: `ok    capabilities  …`.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let word = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        out.push_str(&format!("{word:<5} {:<width$}  {}\n", c.check, c.detail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_line_up_and_say_the_verdict() {
        let lines = render(&[
            check("capabilities", Verdict::Ok, "all 8 the agent uses"),
            check("clock", Verdict::Warn, "400000 ms ahead of the collector's"),
            check("spool", Verdict::Fail, "damaged"),
        ]);
        assert_eq!(
            lines,
            "ok    capabilities  all 8 the agent uses\n\
             warn  clock         400000 ms ahead of the collector's\n\
             FAIL  spool         damaged\n"
        );
    }

    #[test]
    fn folders_are_counted_within_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a/b", "a/c", "d"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let mut left = 100;
        assert_eq!(count_dirs(tmp.path(), &mut left), 5);
        let mut left = 1;
        assert!(count_dirs(tmp.path(), &mut left) <= 3);
    }
}
