//! Connectors: what the collector calls at an offboarding (and a restore) so the CRM and the
//! identity provider deactivate the user too. A webhook gets a JSON POST signed with
//! HMAC-SHA-256 (`X-Holdfast-Signature: sha256=<hex>`); a command gets the user in its
//! arguments and the JSON on stdin. Each run is retried with exponential backoff until it
//! succeeds or runs out of attempts; every attempt's result is stored and visible in
//! `offboard status`, and failed runs can be started again (`offboard retry`). None is silent.
//! A `scim` connector deactivates the user on an identity provider ([`scim`]); a `wecom`
//! connector hands their 企业微信 customers to the successor ([`wecom`]); a `salesforce`
//! connector freezes the user and polls report exports ([`salesforce`], [`crm`]); a `hubspot`
//! connector removes the user and polls the audit log's exports ([`hubspot`]); a `zoho`
//! connector polls the audit log's exports ([`zoho`]); a `dingtalk` connector disables the
//! user's 钉钉 account and signs it out ([`dingtalk`]).
//! The only module that makes outbound HTTP requests or runs connector programs.

pub mod crm;
pub mod dingtalk;
pub mod hubspot;
pub mod overview;
pub mod salesforce;
pub mod scim;
pub mod settings;
pub mod wecom;
pub mod zoho;

pub use crm::{parse_time, rfc3339_ms, CrmExport, UserMap};

use crate::store::{ConnectorRun, OffboardRow};
use holdfast_shared::edm::Keyed;
use std::io::{Read, Write};
use std::time::Duration;

/// Bytes of a response or program output kept with the run.
const KEEP: usize = 2048;
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub ok: bool,
    /// HTTP status or exit code.
    pub code: Option<i64>,
    /// The start of the response or output, or the error.
    pub detail: String,
}

/// The JSON body sent to every connector.
pub fn payload(run: &ConnectorRun, off: Option<&OffboardRow>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": run.event,
        "user": run.user,
        "run_id": run.id,
        "attempt": run.attempts + 1,
        "effective_ms": off.map(|o| o.effective_ms),
        "reason": off.map(|o| o.reason.as_str()),
        "successor": off.and_then(|o| o.successor.as_deref()),
        "lookback_ms": off.map(|o| o.lookback_ms),
    }))
    .unwrap_or_default()
}

/// The signature header's value: `sha256=` and the hex HMAC-SHA-256 of the body.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(Keyed::new(secret).mac(&[body])))
}

/// The wait before attempt `attempts + 1`: `base`, then doubling, at most an hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF)
}

fn keep(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(KEEP)]);
    s.trim().to_string()
}

/// Whom a connector call is about.
#[derive(Debug, Clone, Copy)]
pub struct Leaver<'a> {
    pub user: &'a str,
    /// `offboard` or `restore`.
    pub event: &'a str,
    /// Who takes their customers over (`offboard --successor`).
    pub successor: Option<&'a str>,
    /// The JSON body webhooks and commands get ([`payload`]).
    pub body: &'a [u8],
}

/// What one call did: the attempt, and the customers it handed to the successor (`wecom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Called {
    pub attempt: Attempt,
    pub handed_over: Vec<wecom::HandedOver>,
}

impl From<Attempt> for Called {
    fn from(attempt: Attempt) -> Called {
        Called {
            attempt,
            handed_over: Vec::new(),
        }
    }
}

/// Calls one connector once for `who` (blocking: run it off the async threads).
pub fn call(c: &Connector, who: &Leaver<'_>) -> Called {
    match &c.target {
        ConnectorTarget::Webhook { url, secret } => {
            post_signed(url, secret, who.body, c.timeout).into()
        }
        ConnectorTarget::Command { argv } => command(argv, who.user, who.body, c.timeout).into(),
        ConnectorTarget::Scim(s) => scim::run(s, who.user, who.event, c.timeout).into(),
        ConnectorTarget::Salesforce(s) => salesforce::run(s, who.user, who.event, c.timeout).into(),
        ConnectorTarget::HubSpot(h) => hubspot::run(h, who.user, who.event, c.timeout).into(),
        ConnectorTarget::Zoho(z) => zoho::run(z, who.user, who.event).into(),
        ConnectorTarget::DingTalk(d) => dingtalk::run(d, who.user, who.event, c.timeout).into(),
        ConnectorTarget::WeCom(w) => {
            let (attempt, handed_over) =
                wecom::run(w, who.user, who.event, who.successor, c.timeout);
            Called {
                attempt,
                handed_over,
            }
        }
    }
}

/// What a connector calls.
#[derive(Clone, PartialEq, Eq)]
pub enum ConnectorTarget {
    /// An HTTP(S) endpoint: a JSON POST with `X-Holdfast-Signature: sha256=<HMAC of the body>`.
    Webhook { url: String, secret: Vec<u8> },
    /// A local program; `{user}` in its arguments is replaced, the JSON body is on stdin.
    Command { argv: Vec<String> },
    /// A SCIM 2.0 identity provider or SaaS: the user's `active` set to false (and back).
    Scim(scim::Scim),
    /// 企业微信: the leaver's customers and customer groups handed to the successor.
    WeCom(wecom::WeCom),
    /// Salesforce: the user frozen (or deactivated); report exports polled.
    Salesforce(salesforce::Salesforce),
    /// HubSpot: the user removed; the audit log's exports polled.
    HubSpot(hubspot::HubSpot),
    /// Zoho CRM: the audit log's exports polled.
    Zoho(zoho::Zoho),
    /// 钉钉: the user's enterprise account disabled and signed out.
    DingTalk(dingtalk::DingTalk),
}

impl std::fmt::Debug for ConnectorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print the secret.
            ConnectorTarget::Webhook { url, .. } => write!(f, "Webhook({url})"),
            ConnectorTarget::Command { argv } => write!(f, "Command({argv:?})"),
            ConnectorTarget::Scim(s) => write!(f, "{s:?}"),
            ConnectorTarget::WeCom(w) => write!(f, "{w:?}"),
            ConnectorTarget::Salesforce(s) => write!(f, "{s:?}"),
            ConnectorTarget::HubSpot(h) => write!(f, "{h:?}"),
            ConnectorTarget::Zoho(z) => write!(f, "{z:?}"),
            ConnectorTarget::DingTalk(d) => write!(f, "{d:?}"),
        }
    }
}

/// A validated connector: an action the collector runs at offboarding so IT's other systems
/// (CRM, identity provider) deactivate the user too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: String,
    pub target: ConnectorTarget,
    /// First retry after this; each further retry waits twice as long (at most an hour).
    pub retry_base: Duration,
    /// Attempts before the run is marked failed (`offboard retry` starts it again).
    pub max_attempts: u32,
    /// Per attempt.
    pub timeout: Duration,
}

/// A credential read from a file: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The credential itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// The collector's `User-Agent` on connector calls.
const USER_AGENT: &str = concat!("holdfast-collector/", env!("CARGO_PKG_VERSION"));

/// The HTTP client of one connector call: `timeout` for the whole exchange, every status an
/// answer (not an error), no redirect followed (a token must not be sent elsewhere).
fn http(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// A failed step of a vendor API call: HTTP status (if any) and what went wrong.
pub(crate) type Failed = (Option<i64>, String);

/// A vendor call's outcome as an attempt: `ok_code` and the receipt, or the failure.
pub(crate) fn attempt_of(result: Result<String, Failed>, ok_code: i64) -> Attempt {
    match result {
        Ok(detail) => Attempt {
            ok: true,
            code: Some(ok_code),
            detail,
        },
        Err((code, detail)) => Attempt {
            ok: false,
            code,
            detail,
        },
    }
}

/// An answer's body as JSON, or a failure naming `step` with the start of the body.
pub(crate) fn json_of(step: &str, body: &[u8]) -> Result<serde_json::Value, Failed> {
    serde_json::from_slice(body).map_err(|e| {
        (
            None,
            format!("{step}: the answer is not JSON ({e}): {}", keep(body)),
        )
    })
}

/// A vendor's error answer in words: `step: HTTP status: code: message` from the first of
/// `code_keys` and `message_keys` the body (or its first element) holds, else the body's
/// start; then the vendor's `hint` for that status and code.
pub(crate) fn vendor_error(
    step: &str,
    status: u16,
    body: &[u8],
    code_keys: &[&str],
    message_keys: &[&str],
    hint: impl Fn(u16, Option<&str>) -> &'static str,
) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let first = v.get(0).unwrap_or(&v);
    let pick = |keys: &[&str]| keys.iter().find_map(|k| first.get(k)?.as_str());
    let (code, msg) = (pick(code_keys), pick(message_keys));
    let hint = hint(status, code);
    match (code, msg) {
        (Some(c), Some(m)) => format!("{step}: HTTP {status}: {c}: {m}{hint}"),
        _ => format!("{step}: HTTP {status}: {}{hint}", keep(body)),
    }
}

/// `s` as one segment of a URL's path: everything but unreserved characters percent-encoded
/// (an email's `@` and `+`, a `/` that would change the path).
pub(crate) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An API call's answer: its status and at most `max` bytes of body, or what failed (naming
/// `step`); a status outside 2xx is a failure described by `describe(status, body)`.
pub(crate) fn answer_of(
    step: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    max: u64,
    describe: impl Fn(u16, &[u8]) -> String,
) -> Result<(u16, Vec<u8>), (Option<i64>, String)> {
    let mut resp = result.map_err(|e| (None, format!("{step}: request failed: {e}")))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(max)
        .read_to_end(&mut body)
        .map_err(|e| {
            (
                Some(i64::from(status)),
                format!("{step}: reading the answer: {e}"),
            )
        })?;
    if !(200..300).contains(&status) {
        return Err((Some(i64::from(status)), describe(status, &body)));
    }
    Ok((status, body))
}

/// POSTs a JSON body signed with `secret` (`X-Holdfast-Signature`), once (blocking).
pub fn post_signed(url: &str, secret: &[u8], body: &[u8], timeout: Duration) -> Attempt {
    let result = http(timeout)
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", USER_AGENT)
        .header("X-Holdfast-Signature", &signature(secret, body))
        .send(body);
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut text = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(KEEP as u64)
                .read_to_end(&mut text);
            Attempt {
                ok: (200..300).contains(&status),
                code: Some(i64::from(status)),
                detail: keep(&text),
            }
        }
        Err(e) => Attempt {
            ok: false,
            code: None,
            detail: format!("request failed: {e}"),
        },
    }
}

/// The program's arguments with `{user}` put in. A user name cannot become an option: an
/// argument that would then start with `-` is refused (nothing runs), and so is a name
/// holding a control character or a NUL.
fn command_args(argv: &[String], user: &str) -> Result<Vec<String>, String> {
    if user.chars().any(char::is_control) {
        return Err("the user name holds a control character; not passed to a program".into());
    }
    argv[1..]
        .iter()
        .map(|a| {
            let arg = a.replace("{user}", user);
            if a.contains("{user}") && arg.starts_with('-') && !a.starts_with('-') {
                Err(format!(
                    "the user name `{user}` would become an option of {}; not run",
                    argv[0]
                ))
            } else {
                Ok(arg)
            }
        })
        .collect()
}

fn command(argv: &[String], user: &str, body: &[u8], timeout: Duration) -> Attempt {
    let args = match command_args(argv, user) {
        Ok(a) => a,
        Err(detail) => {
            return Attempt {
                ok: false,
                code: None,
                detail,
            }
        }
    };
    let child = std::process::Command::new(&argv[0])
        .args(&args)
        .env("HOLDFAST_USER", user)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Attempt {
                ok: false,
                code: None,
                detail: format!("cannot run {}: {e}", argv[0]),
            }
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body);
    }
    // Read output on threads so a chatty program cannot block on a full pipe.
    let out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = (&mut s).take(KEEP as u64).read_to_end(&mut b);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
            b
        })
    });
    let err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = (&mut s).take(KEEP as u64).read_to_end(&mut b);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
            b
        })
    });
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(e.to_string()),
        }
    };
    let mut text = out.and_then(|t| t.join().ok()).unwrap_or_default();
    text.extend(err.and_then(|t| t.join().ok()).unwrap_or_default());
    match status {
        Ok(s) => Attempt {
            ok: s.success(),
            code: s.code().map(i64::from),
            detail: keep(&text),
        },
        Err(e) => Attempt {
            ok: false,
            code: None,
            detail: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c` called for kim's offboarding with `body`: the attempt.
    fn call_for_kim(c: &Connector, body: &[u8]) -> Attempt {
        let who = Leaver {
            user: "kim",
            event: "offboard",
            successor: None,
            body,
        };
        call(c, &who).attempt
    }

    #[test]
    fn a_user_name_never_becomes_an_option() {
        let argv: Vec<String> = ["idp-disable", "--user", "{user}", "--note=left {user}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_args(&argv, "kim").unwrap(),
            ["--user", "kim", "--note=left kim"]
        );
        let err = command_args(&argv, "--delete-all").unwrap_err();
        assert!(err.contains("would become an option"), "{err}");
        assert!(command_args(&argv, "kim\nx").is_err());
        let r = command(&argv, "-rf", b"", Duration::from_secs(1));
        assert!(
            !r.ok && r.detail.contains("would become an option"),
            "{r:?}"
        );
    }

    #[test]
    fn path_segments_cannot_change_the_path() {
        assert_eq!(
            path_segment("kim+crm@acme.example"),
            "kim%2Bcrm%40acme.example"
        );
        assert_eq!(path_segment("../admin"), "..%2Fadmin");
        assert_eq!(path_segment("李"), "%E6%9D%8E");
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let b = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=5).map(|a| backoff(b, a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80]);
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }

    #[test]
    fn commands_get_the_user_and_the_body() {
        let (_dir, out) = holdfast_io::testing::scratch("out");
        let c = Connector {
            name: "idp".into(),
            target: ConnectorTarget::Command {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("cat > {}; echo disabled $0", out.display()),
                    "{user}".into(),
                ],
            },
            retry_base: Duration::from_secs(1),
            max_attempts: 3,
            timeout: Duration::from_secs(10),
        };
        let a = call_for_kim(&c, b"{\"user\":\"kim\"}");
        assert_eq!(
            a,
            Attempt {
                ok: true,
                code: Some(0),
                detail: "disabled kim".into()
            }
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"user\":\"kim\"}");
        let fails = Connector {
            target: ConnectorTarget::Command {
                argv: vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            },
            ..c.clone()
        };
        assert_eq!(
            call_for_kim(&fails, b""),
            Attempt {
                ok: false,
                code: Some(3),
                detail: "nope".into()
            }
        );
        let slow = Connector {
            target: ConnectorTarget::Command {
                argv: vec!["sleep".into(), "30".into()],
            },
            timeout: Duration::from_secs(1),
            ..c.clone()
        };
        let a = call_for_kim(&slow, b"");
        assert!(!a.ok && a.detail.starts_with("timed out"), "{a:?}");
        let missing = Connector {
            target: ConnectorTarget::Command {
                argv: vec!["/nonexistent/disable-user".into()],
            },
            ..c
        };
        assert!(call_for_kim(&missing, b"")
            .detail
            .starts_with("cannot run /nonexistent"));
    }
}
