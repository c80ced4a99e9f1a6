//! SIEM forwarding: each alert at or above a forwarder's severity goes to syslog (RFC 5424,
//! octet-counted per RFC 6587, over TCP or over TLS per RFC 5425) or to a signed JSON
//! webhook, every time it is raised or changes (new events, escalation, status): the cursor
//! follows alert versions, not ids.
//!
//! Delivery is at least once. Each forwarder keeps a durable cursor in the database that
//! moves only after delivery is confirmed: for a webhook, its 2xx answer; for syslog, which
//! has no acknowledgement of its own, the write completed on a connection that is still open
//! a moment later (no end of stream, no reset: a receiver that closes or restarts resets
//! what it had not read). Any error means a reconnect and a resend from the cursor, so a
//! receiver may see an alert twice (the `id` and `version` parameters tell), never zero
//! times. A new forwarder starts at the newest alert.

use crate::config::{Forward, ForwardTarget};
use crate::store::{Alert, Store, StoreError};
use holdfast_shared::event::Severity;
use holdfast_shared::time::UnixMs;
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
/// How long a syslog connection must stay open after a write for the write to count.
const CONFIRM: Duration = Duration::from_millis(300);
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
    /// The TLS setup for a syslog receiver is unusable (bad CA or client certificate).
    #[error("syslog TLS: {0}")]
    Tls(String),
    /// The receiver closed the connection before a write was confirmed: resent.
    #[error("syslog {0}: the receiver closed the connection; resending from the cursor")]
    Unconfirmed(std::net::SocketAddr),
    /// The webhook answered with a failure or could not be reached.
    #[error("webhook: {0}")]
    Webhook(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The syslog severity for an alert severity.
fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
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
pub fn rfc5424(a: &Alert, version: i64, hostname: &str, now_ms: UnixMs) -> String {
    let pri = FACILITY * 8 + syslog_severity(a.severity);
    let t = std::time::UNIX_EPOCH + Duration::from_millis(now_ms.ms().max(0) as u64);
    let ts = humantime::format_rfc3339_millis(t);
    let mut sd = format!(
        "[{SD_ID} id=\"{}\" version=\"{version}\" rule=\"{}\" severity=\"{}\" status=\"{}\" user=\"{}\" device=\"{}\" records=\"{}\" events=\"{}\"",
        a.id,
        sd_value(&a.rule_id),
        sd_value(a.severity.as_str()),
        sd_value(a.status.as_str()),
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
        a.severity.as_str(),
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
pub fn wanted(min: Severity, severity: Severity) -> bool {
    severity >= min
}

/// An open syslog connection, plain or TLS.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Conn::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
        }
    }

    /// Whether the receiver still holds the connection open: nothing to read, no end of
    /// stream, no reset (a syslog receiver never writes back, so anything but "would block"
    /// is the end, bar a TLS record such as a session ticket).
    fn alive(&mut self) -> bool {
        use std::io::Read;
        if self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let mut buf = [0u8; 256];
        let alive = loop {
            let r = match self {
                Conn::Tcp(s) => s.peek(&mut buf),
                Conn::Tls(s) => s.read(&mut buf),
            };
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => break false,
                // Plain TCP: the receiver sent bytes, which syslog never does; TLS: records
                // that carry no data were read and the loop looks again.
                Ok(_) => match self {
                    Conn::Tcp(_) => break true,
                    Conn::Tls(_) => continue,
                },
            }
        };
        alive && self.tcp().set_nonblocking(false).is_ok()
    }
}

/// A TLS client for a syslog receiver: its CA, the name it must present, our certificate.
fn tls_config(
    ca_pem: &[u8],
    client: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, ForwardError> {
    let bad = |m: String| ForwardError::Tls(m);
    let certs = |pem_bytes: &[u8]| -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ForwardError> {
        let all = pem::parse_many(pem_bytes).map_err(|e| bad(format!("PEM: {e}")))?;
        Ok(all
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| rustls::pki_types::CertificateDer::from(p.into_contents()))
            .collect())
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = certs(ca_pem)?;
    if ca.is_empty() {
        return Err(bad("ca_file holds no certificate".into()));
    }
    for c in ca {
        roots.add(c).map_err(|e| bad(format!("ca_file: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(holdfast_io::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let key = pem::parse_many(key)
                .map_err(|e| bad(format!("key_file: {e}")))?
                .into_iter()
                .find_map(|p| match p.tag() {
                    "PRIVATE KEY" => Some(rustls::pki_types::PrivateKeyDer::Pkcs8(
                        p.into_contents().into(),
                    )),
                    "RSA PRIVATE KEY" => Some(rustls::pki_types::PrivateKeyDer::Pkcs1(
                        p.into_contents().into(),
                    )),
                    "EC PRIVATE KEY" => Some(rustls::pki_types::PrivateKeyDer::Sec1(
                        p.into_contents().into(),
                    )),
                    _ => None,
                })
                .ok_or_else(|| bad("key_file holds no private key".into()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate: {e}")))?
        }
    };
    Ok(std::sync::Arc::new(config))
}

/// One forwarder's live state: its open syslog connection, the batch written but not yet
/// confirmed, its failure streak.
struct Sender {
    forward: Forward,
    conn: Option<Conn>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Written on `conn` at this instant, up to this alert version, with this many alerts.
    unconfirmed: Option<(i64, std::time::Instant, usize)>,
    failures: u32,
    next_try: std::time::Instant,
}

impl Sender {
    fn new(forward: Forward) -> Sender {
        Sender {
            forward,
            conn: None,
            tls: None,
            unconfirmed: None,
            failures: 0,
            next_try: std::time::Instant::now(),
        }
    }

    /// The syslog connection, opened (and its TLS handshake done) if needed.
    fn connect(&mut self) -> Result<&mut Conn, ForwardError> {
        let (addr, tls) = match &self.forward.target {
            ForwardTarget::Syslog { addr } => (*addr, None),
            ForwardTarget::SyslogTls {
                addr,
                server_name,
                ca_pem,
                client,
            } => (
                *addr,
                Some((server_name.clone(), ca_pem.clone(), client.clone())),
            ),
            ForwardTarget::Webhook { .. } => {
                return Err(ForwardError::Webhook("not a syslog forwarder".into()))
            }
        };
        // A connection the receiver closed while idle is not written to.
        if self.conn.as_mut().is_some_and(|c| !c.alive()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let io = |e| ForwardError::Syslog(addr, e);
            let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(io)?;
            s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
            s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
            let _ = s.set_nodelay(true);
            let conn = match tls {
                None => Conn::Tcp(s),
                Some((name, ca, client)) => {
                    if self.tls.is_none() {
                        self.tls = Some(tls_config(&ca, client.as_ref())?);
                    }
                    let config = self
                        .tls
                        .clone()
                        .ok_or_else(|| ForwardError::Tls("no config".into()))?;
                    let name = rustls::pki_types::ServerName::try_from(name)
                        .map_err(|e| ForwardError::Tls(format!("server_name: {e}")))?;
                    let c = rustls::ClientConnection::new(config, name)
                        .map_err(|e| ForwardError::Tls(e.to_string()))?;
                    let mut stream = rustls::StreamOwned::new(c, s);
                    // Handshake now, so a refused certificate is this attempt's error.
                    while stream.conn.is_handshaking() {
                        stream.conn.complete_io(&mut stream.sock).map_err(io)?;
                    }
                    Conn::Tls(Box::new(stream))
                }
            };
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ForwardError::Syslog(addr, std::io::ErrorKind::NotConnected.into()))
    }

    fn addr(&self) -> Option<std::net::SocketAddr> {
        match &self.forward.target {
            ForwardTarget::Syslog { addr } | ForwardTarget::SyslogTls { addr, .. } => Some(*addr),
            ForwardTarget::Webhook { .. } => None,
        }
    }

    /// Sends `alerts`; for a webhook the answer confirms them, for syslog the next round does.
    fn send(&mut self, alerts: &[(i64, Alert)], hostname: &str) -> Result<(), ForwardError> {
        if let ForwardTarget::Webhook { url, secret } = &self.forward.target {
            for (version, a) in alerts {
                let body = serde_json::to_vec(&serde_json::json!({
                    "source": "holdfast",
                    "version": version,
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
            return Ok(());
        }
        let mut bytes = Vec::new();
        for (version, a) in alerts {
            bytes.extend(frame(&rfc5424(a, *version, hostname, crate::now_ms())));
        }
        let addr = self.addr();
        let conn = self.connect()?;
        if let Err(e) = conn.write_all(&bytes) {
            self.conn = None;
            return Err(match addr {
                Some(a) => ForwardError::Syslog(a, e),
                None => ForwardError::Webhook(e.to_string()),
            });
        }
        Ok(())
    }

    /// One round: confirm what the last round wrote (or find it lost), then send what is
    /// new and move the cursor past what was delivered. Returns the alerts delivered.
    fn round(&mut self, store: &Store, hostname: &str) -> Result<usize, ForwardError> {
        let name = self.forward.name.clone();
        let mut delivered = 0;
        if let Some((version, at, n)) = self.unconfirmed {
            if at.elapsed() < CONFIRM {
                return Ok(0);
            }
            self.unconfirmed = None;
            if self.conn.as_mut().is_some_and(Conn::alive) {
                store.set_forward_cursor(&name, version)?;
                delivered = n;
            } else {
                self.conn = None;
                let addr = self.addr();
                return Err(addr.map_or_else(
                    || ForwardError::Webhook("lost".into()),
                    ForwardError::Unconfirmed,
                ));
            }
        }
        let cursor = store.forward_cursor(&name)?;
        let changed = store.alerts_changed_after(cursor, BATCH)?;
        let Some(last) = changed.last().map(|(v, _)| *v) else {
            return Ok(delivered);
        };
        let wanted: Vec<(i64, Alert)> = changed
            .into_iter()
            .filter(|(_, a)| wanted(self.forward.min_severity, a.severity))
            .collect();
        if wanted.is_empty() {
            store.set_forward_cursor(&name, last)?;
            return Ok(delivered);
        }
        self.send(&wanted, hostname)?;
        if matches!(self.forward.target, ForwardTarget::Webhook { .. }) {
            store.set_forward_cursor(&name, last)?;
            delivered += wanted.len();
        } else {
            self.unconfirmed = Some((last, std::time::Instant::now(), wanted.len()));
        }
        Ok(delivered)
    }
}

/// Forwards until `shutdown` turns true. Runs its blocking I/O off the async threads.
pub async fn run(
    forwards: Vec<Forward>,
    db_path: std::path::PathBuf,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if forwards.is_empty() {
        return;
    }
    let hostname = holdfast_io::host::hostname();
    let mut senders: Vec<Sender> = forwards.into_iter().map(Sender::new).collect();
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
        let metrics = metrics.clone();
        let moved = tokio::task::spawn_blocking(move || {
            let now = std::time::Instant::now();
            if let Ok(store) = st.lock() {
                for s in senders.iter_mut().filter(|s| s.next_try <= now) {
                    let _span = tracing::info_span!("forward", name = %s.forward.name).entered();
                    let result = s.round(&store, &host);
                    metrics.forwarded(
                        &s.forward.name,
                        *result.as_ref().unwrap_or(&0),
                        result.is_err(),
                    );
                    match result {
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
    use crate::store::AlertStatus;

    fn alert(severity: Severity, path: &str) -> Alert {
        Alert {
            id: 7,
            rule_id: "crm-export.salesforce".into(),
            severity,
            status: AlertStatus::New,
            user: "ana".into(),
            device_id: "dev-1".into(),
            path: path.into(),
            sha256: Some("ab".repeat(32)),
            records: 240,
            event_count: 1,
            first_seen_ms: UnixMs(0),
            last_seen_ms: UnixMs(0),
            detail: "agent silent for 2h".into(),
            assignee: None,
        }
    }

    fn check(a: &Alert, want_prefix: &str, want_parts: &[&str]) {
        let m = rfc5424(a, 12, "collector 1", UnixMs(1_700_000_000_123));
        assert!(m.starts_with(want_prefix), "{m}");
        for p in want_parts {
            assert!(m.contains(p), "{m} lacks {p}");
        }
    }

    #[test]
    fn messages_follow_rfc5424_with_escaped_structured_data() {
        check(
            &alert(Severity::High, "/home/ana/Downloads/report.csv"),
            "<35>1 2023-11-14T22:13:20.123Z collector1 holdfast-collector - alert [holdfast@32473 id=\"7\" version=\"12\" rule=\"crm-export.salesforce\" severity=\"high\"",
            &["records=\"240\"", "path=\"/home/ana/Downloads/report.csv\"]", "\u{feff}high alert crm-export.salesforce: ana: 240 customer records"],
        );
        check(
            &alert(Severity::Critical, ""),
            "<34>1 ",
            &["agent silent for 2h"],
        );
        check(
            &alert(Severity::Low, "/a\"b]c\\d"),
            "<37>1 ",
            &["path=\"/a\\\"b\\]c\\\\d\"]"],
        );
        assert_eq!(frame("<35>1 x"), b"7 <35>1 x".to_vec());
    }

    #[test]
    fn severity_threshold_is_inclusive() {
        assert!(wanted(Severity::High, Severity::High));
        assert!(wanted(Severity::High, Severity::Critical));
        assert!(!wanted(Severity::High, Severity::Medium));
        assert!(wanted(Severity::Low, Severity::Low));
    }
}
