//! SIEM forwarding: each new alert at or above a forwarder's severity goes to syslog (RFC 5424
//! over TCP, octet-counted per RFC 6587) or to a signed JSON webhook. Each forwarder keeps a
//! durable cursor in the database that moves only after delivery, so an alert is sent at least
//! once across crashes and restarts, and a new forwarder starts at the newest alert.

use crate::config::{Forward, ForwardTarget};
use crate::store::{Alert, Store, StoreError};
use holdfast_shared::event::Severity;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tracing::{info, warn};

/// Alerts read per forwarder per round.
const BATCH: usize = 200;
/// Time between rounds when nothing failed.
const TICK: Duration = Duration::from_millis(500);
/// Longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Per connection attempt and per write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Our private enterprise number for structured data would go here; 32473 is the one
/// reserved for documentation and examples (RFC 5612).
const SD_ID: &str = "holdfast@32473";
/// Facility 4: security/authorization messages.
const FACILITY: u8 = 4;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The syslog receiver could not be reached or written to.
    #[error("syslog {0}: {1}")]
    Syslog(std::net::SocketAddr, std::io::Error),
    /// The webhook answered with a failure or could not be reached.
    #[error("webhook: {0}")]
    Webhook(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The syslog severity for an alert severity.
fn syslog_severity(s: &str) -> u8 {
    match s {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most `max`, or `-`.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// One alert as an RFC 5424 message (no framing).
pub fn rfc5424(a: &Alert, hostname: &str, now_ms: i64) -> String {
    let pri = FACILITY * 8 + syslog_severity(&a.severity);
    let t = std::time::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64);
    let ts = humantime::format_rfc3339_millis(t);
    let mut sd = format!(
        "[{SD_ID} id=\"{}\" rule=\"{}\" severity=\"{}\" status=\"{}\" user=\"{}\" device=\"{}\" records=\"{}\" events=\"{}\"",
        a.id,
        sd_value(&a.rule_id),
        sd_value(&a.severity),
        sd_value(&a.status),
        sd_value(&a.user),
        sd_value(&a.device_id),
        a.records,
        a.event_count
    );
    if let Some(h) = &a.sha256 {
        sd.push_str(&format!(" sha256=\"{}\"", sd_value(h)));
    }
    if !a.path.is_empty() {
        sd.push_str(&format!(" path=\"{}\"", sd_value(&a.path)));
    }
    sd.push(']');
    let what = if a.path.is_empty() {
        a.detail.clone()
    } else {
        format!("{} customer records in {}", a.records, a.path)
    };
    // MSG is UTF-8, marked with the BOM as RFC 5424 asks.
    format!(
        "<{pri}>1 {ts} {} holdfast-collector - alert {sd} \u{feff}{} alert {}: {}: {}",
        header_field(hostname, 255),
        a.severity,
        a.rule_id,
        a.user,
        what
    )
}

/// Octet-counting framing (RFC 6587 §3.4.1): `LEN SP MSG`.
pub fn frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Whether a forwarder with `min` takes an alert of `severity`.
pub fn wanted(min: Severity, severity: &str) -> bool {
    Severity::parse(severity).is_some_and(|s| s >= min)
}

/// One forwarder's live state: its open syslog connection, its failure streak.
struct Sender {
    forward: Forward,
    conn: Option<TcpStream>,
    failures: u32,
    next_try: std::time::Instant,
}

impl Sender {
    fn send(&mut self, alerts: &[Alert], hostname: &str) -> Result<(), ForwardError> {
        match &self.forward.target {
            ForwardTarget::Syslog { addr } => {
                let addr = *addr;
                if self.conn.is_none() {
                    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                        .map_err(|e| ForwardError::Syslog(addr, e))?;
                    s.set_write_timeout(Some(IO_TIMEOUT))
                        .map_err(|e| ForwardError::Syslog(addr, e))?;
                    self.conn = Some(s);
                }
                let mut bytes = Vec::new();
                for a in alerts {
                    bytes.extend(frame(&rfc5424(a, hostname, crate::now_ms())));
                }
                let written = match self.conn.as_mut() {
                    Some(c) => c.write_all(&bytes).and_then(|_| c.flush()),
                    None => Ok(()),
                };
                written.map_err(|e| {
                    self.conn = None;
                    ForwardError::Syslog(addr, e)
                })
            }
            ForwardTarget::Webhook { url, secret } => {
                for a in alerts {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "source": "holdfast",
                        "alert": a,
                    }))
                    .map_err(|e| ForwardError::Webhook(e.to_string()))?;
                    let r = crate::connectors::post_signed(url, secret, &body, IO_TIMEOUT);
                    if !r.ok {
                        return Err(ForwardError::Webhook(format!(
                            "{}: {}",
                            r.code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                            r.detail
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// One round: send what is new, move the cursor past what was delivered.
    fn round(&mut self, store: &Store, hostname: &str) -> Result<usize, ForwardError> {
        let name = self.forward.name.clone();
        let cursor = store.forward_cursor(&name)?;
        let alerts = store.alerts_after(cursor, BATCH)?;
        let Some(last) = alerts.last().map(|a| a.id) else {
            return Ok(0);
        };
        let wanted: Vec<Alert> = alerts
            .into_iter()
            .filter(|a| wanted(self.forward.min_severity, &a.severity))
            .collect();
        if !wanted.is_empty() {
            self.send(&wanted, hostname)?;
        }
        store.set_forward_cursor(&name, last)?;
        Ok(wanted.len())
    }
}

/// Forwards until `shutdown` turns true. Runs its blocking I/O off the async threads.
pub async fn run(
    forwards: Vec<Forward>,
    db_path: std::path::PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if forwards.is_empty() {
        return;
    }
    let hostname = holdfast_agent::enroll::hostname();
    let mut senders: Vec<Sender> = forwards
        .into_iter()
        .map(|forward| Sender {
            forward,
            conn: None,
            failures: 0,
            next_try: std::time::Instant::now(),
        })
        .collect();
    let store = match Store::open(&db_path) {
        Ok(s) => std::sync::Arc::new(std::sync::Mutex::new(s)),
        Err(e) => {
            warn!(error = %e, "forwarding disabled: cannot open the database");
            return;
        }
    };
    loop {
        let st = store.clone();
        let host = hostname.clone();
        let moved = tokio::task::spawn_blocking(move || {
            let now = std::time::Instant::now();
            if let Ok(store) = st.lock() {
                for s in senders.iter_mut().filter(|s| s.next_try <= now) {
                    let _span = tracing::info_span!("forward", name = %s.forward.name).entered();
                    match s.round(&store, &host) {
                        Ok(n) => {
                            if s.failures > 0 {
                                info!(after_failures = s.failures, "forwarding again");
                            }
                            if n > 0 {
                                info!(alerts = n, "alerts forwarded");
                            }
                            s.failures = 0;
                        }
                        Err(e) => {
                            s.failures += 1;
                            let wait = TICK.saturating_mul(1 << s.failures.min(8)).min(MAX_BACKOFF);
                            s.next_try = now + wait;
                            // Once per streak, then quietly retried.
                            if s.failures == 1 {
                                warn!(error = %e, "forwarding failed; retrying with backoff");
                            }
                        }
                    }
                }
            }
            senders
        })
        .await;
        senders = match moved {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "forwarding task failed");
                return;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: &str, path: &str) -> Alert {
        Alert {
            id: 7,
            rule_id: "crm-export.salesforce".into(),
            severity: severity.into(),
            status: "new".into(),
            user: "ana".into(),
            device_id: "dev-1".into(),
            path: path.into(),
            sha256: Some("ab".repeat(32)),
            records: 240,
            event_count: 1,
            first_seen_ms: 0,
            last_seen_ms: 0,
            detail: "agent silent for 2h".into(),
            assignee: None,
        }
    }

    fn check(a: &Alert, want_prefix: &str, want_parts: &[&str]) {
        let m = rfc5424(a, "collector 1", 1_700_000_000_123);
        assert!(m.starts_with(want_prefix), "{m}");
        for p in want_parts {
            assert!(m.contains(p), "{m} lacks {p}");
        }
    }

    #[test]
    fn messages_follow_rfc5424_with_escaped_structured_data() {
        check(
            &alert("high", "/home/ana/Downloads/report.csv"),
            "<35>1 2023-11-14T22:13:20.123Z collector1 holdfast-collector - alert [holdfast@32473 id=\"7\" rule=\"crm-export.salesforce\" severity=\"high\"",
            &["records=\"240\"", "path=\"/home/ana/Downloads/report.csv\"]", "\u{feff}high alert crm-export.salesforce: ana: 240 customer records"],
        );
        check(&alert("critical", ""), "<34>1 ", &["agent silent for 2h"]);
        check(
            &alert("low", "/a\"b]c\\d"),
            "<37>1 ",
            &["path=\"/a\\\"b\\]c\\\\d\"]"],
        );
        assert_eq!(frame("<35>1 x"), b"7 <35>1 x".to_vec());
    }

    #[test]
    fn severity_threshold_is_inclusive() {
        assert!(wanted(Severity::High, "high"));
        assert!(wanted(Severity::High, "critical"));
        assert!(!wanted(Severity::High, "medium"));
        assert!(!wanted(Severity::Low, "bogus"));
    }
}
