//! The collector's configuration: TOML parsed into raw values, then one validated [`Config`].
//!
//! ```toml
//! data_dir = "/var/lib/holdfast-collector"   # CA, database
//! listen = "127.0.0.1:7443"                  # QUIC (UDP)
//! server_names = ["collector.corp.example"]  # names/IPs agents dial; loopback always added
//!
//! # Called at each offboarding (and restore), retried with backoff until they succeed:
//! [[connector]]
//! name = "crm"
//! webhook = "https://crm.corp.example/hooks/deactivate"   # JSON POST, HMAC-SHA-256 signed
//! secret_file = "/etc/holdfast/crm-webhook.secret"
//! [[connector]]
//! name = "idp"
//! command = ["/usr/local/bin/disable-user", "{user}"]      # the JSON body on stdin
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    #[serde(default)]
    server_names: Vec<String>,
    cert_lifetime: Option<String>,
    offline_after: Option<String>,
    skew_tolerance: Option<String>,
    max_events_per_sec: Option<u32>,
    #[serde(default)]
    connector: Vec<crate::connectors::settings::RawConnector>,
    http_listen: Option<String>,
    session_ttl: Option<String>,
    #[serde(default)]
    forward: Vec<RawForward>,
    hr: Option<RawHr>,
    correlation: Option<RawCorrelation>,
}

/// `[correlation]`: how ingest ties events together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelation {
    window: Option<String>,
    volume_factor: Option<u32>,
    volume_min_records: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHr {
    file: PathBuf,
    every: Option<String>,
}

/// An HR export the collector imports on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrSchedule {
    pub file: PathBuf,
    /// How often the file is checked; it is imported when its content changed.
    pub every: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    name: String,
    syslog: Option<String>,
    /// Syslog over TLS (RFC 5425): `IP:PORT`, with `ca_file` (the receiver's CA, PEM),
    /// optional `server_name` (default: the IP) and `cert_file` + `key_file` (a client
    /// certificate, when the receiver asks for one).
    syslog_tls: Option<String>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    webhook: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    min_severity: Option<String>,
}

/// Where a forwarder sends alerts.
#[derive(Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// RFC 5424 messages over TCP, octet-counted (RFC 6587).
    Syslog { addr: SocketAddr },
    /// The same over TLS (RFC 5425): the receiver must present a certificate for
    /// `server_name` from the CA in `ca_pem`; `client` is our certificate and key (PEM).
    SyslogTls {
        addr: SocketAddr,
        server_name: String,
        ca_pem: Vec<u8>,
        client: Option<(Vec<u8>, Vec<u8>)>,
    },
    /// A JSON POST per alert, signed like connectors.
    Webhook { url: String, secret: Vec<u8> },
}

impl std::fmt::Debug for ForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardTarget::Syslog { addr } => write!(f, "Syslog({addr})"),
            // Never print the key.
            ForwardTarget::SyslogTls {
                addr, server_name, ..
            } => write!(f, "SyslogTls({addr}, {server_name})"),
            // Never print the secret.
            ForwardTarget::Webhook { url, .. } => write!(f, "Webhook({url})"),
        }
    }
}

/// A validated SIEM forwarder: every new alert at or above `min_severity` goes out once
/// (at least once across crashes: a durable cursor moves only after delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub name: String,
    pub target: ForwardTarget,
    pub min_severity: holdfast_shared::event::Severity,
}

pub use crate::connectors::{Connector, ConnectorTarget};

/// A validated collector configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the database, the CA and the keys live.
    pub data_dir: PathBuf,
    /// The QUIC listener the agents connect to.
    pub listen: SocketAddr,
    /// Names the collector's server certificate is issued for (what agents dial).
    pub server_names: Vec<String>,
    /// Validity of device certificates; agents renew after two thirds of it.
    pub cert_lifetime: Duration,
    /// A device silent for longer raises an "agent offline" alert.
    pub offline_after: Duration,
    /// A device clock further off than this is flagged.
    pub skew_tolerance: Duration,
    /// Per-connection ingest rate; a faster agent is slowed down, not dropped.
    pub max_events_per_sec: u32,
    /// Offboarding connectors, called in order for each leaver.
    pub connectors: Vec<Connector>,
    /// The console, API and metrics listener (loopback only: put a TLS proxy in front to
    /// reach it from elsewhere); `None` when `http_listen = "off"`.
    pub http_listen: Option<SocketAddr>,
    /// How long a console login lasts.
    pub session_ttl: Duration,
    /// SIEM forwarders.
    pub forwards: Vec<Forward>,
    /// The HR export imported on a schedule, if any.
    pub hr: Option<HrSchedule>,
    /// How ingest correlates (`[correlation]`).
    pub correlation: crate::store::correlate::Correlation,
    /// The collector.toml this came from (`None`: defaults for a data dir).
    pub source: Option<PathBuf>,
}

/// The default console/API address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7480";
/// The default console session lifetime.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Defaults for the tunables above.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_SKEW_TOLERANCE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MAX_EVENTS_PER_SEC: u32 = 20_000;

pub use holdfast_io::config_file::ConfigError;

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("holdfast")
        .join("collector")
}

/// Where `quickstart` keeps its data unless told otherwise: beside the default data dir.
pub fn quickstart_data_dir() -> PathBuf {
    default_data_dir().with_file_name("quickstart")
}

/// The data dir of an admin command given neither `--config` nor `--data-dir`: the default
/// one when it holds a database, else quickstart's when that one does (so every command
/// works after a quickstart), else the default.
pub fn implied_data_dir() -> PathBuf {
    let default = default_data_dir();
    let quickstart = quickstart_data_dir();
    if !default.join("collector.db").is_file() && quickstart.join("collector.db").is_file() {
        quickstart
    } else {
        default
    }
}

/// The default QUIC listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

impl Config {
    /// Defaults for `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            server_names: loopback_names(),
            cert_lifetime: DEFAULT_CERT_LIFETIME,
            offline_after: DEFAULT_OFFLINE_AFTER,
            skew_tolerance: DEFAULT_SKEW_TOLERANCE,
            max_events_per_sec: DEFAULT_MAX_EVENTS_PER_SEC,
            connectors: Vec::new(),
            http_listen: DEFAULT_HTTP_LISTEN.parse().ok(),
            session_ttl: DEFAULT_SESSION_TTL,
            forwards: Vec::new(),
            hr: None,
            correlation: crate::store::correlate::Correlation::default(),
            source: None,
        }
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("collector.db")
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        holdfast_io::config_file::load(path, Config::validate)
    }

    /// Validates config text.
    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        holdfast_io::config_file::validated(path, src, Config::validate)
    }

    /// `raw`, read from `path` in folder `base`, checked field by field.
    fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |field, message: String| ConfigError::invalid(path, field, message);
        let data_dir = match raw.data_dir {
            Some(d) if d.is_absolute() => d,
            Some(d) => base.join(d),
            None => default_data_dir(),
        };
        let listen_s = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{listen_s}` is not an IP:PORT socket address"),
            )
        })?;
        let mut server_names = loopback_names();
        for n in raw.server_names {
            if n.trim().is_empty() {
                return Err(invalid("server_names", "empty name".into()));
            }
            if !server_names.contains(&n) {
                server_names.push(n);
            }
        }
        if !listen.ip().is_unspecified() && !server_names.contains(&listen.ip().to_string()) {
            server_names.push(listen.ip().to_string());
        }
        // A length of time: absent is `default`, shorter than `min` is refused.
        let dur = |field: &'static str, v: Option<String>, default: Duration, min: Duration| {
            let Some(v) = v else { return Ok(default) };
            let d = humantime::parse_duration(&v).map_err(|e| {
                invalid(
                    field,
                    format!("`{v}`: {e} (write e.g. \"90d\", \"10m\", \"30s\")"),
                )
            })?;
            if d < min {
                let min = humantime::format_duration(min);
                return Err(invalid(
                    field,
                    format!("`{v}` is shorter than the minimum of {min}"),
                ));
            }
            Ok(d)
        };
        let cert_lifetime = dur(
            "cert_lifetime",
            raw.cert_lifetime,
            DEFAULT_CERT_LIFETIME,
            secs(10),
        )?;
        let offline_after = dur(
            "offline_after",
            raw.offline_after,
            DEFAULT_OFFLINE_AFTER,
            secs(1),
        )?;
        let skew_tolerance = dur(
            "skew_tolerance",
            raw.skew_tolerance,
            DEFAULT_SKEW_TOLERANCE,
            secs(1),
        )?;
        let max_events_per_sec = raw.max_events_per_sec.unwrap_or(DEFAULT_MAX_EVENTS_PER_SEC);
        if max_events_per_sec == 0 {
            return Err(invalid("max_events_per_sec", "must be at least 1".into()));
        }
        let connectors = crate::connectors::settings::connectors(base, raw.connector)
            .map_err(|m| invalid("connector", m))?;
        let http_listen = match raw.http_listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN) {
            "off" => None,
            v => {
                let a: SocketAddr = v.parse().map_err(|_| {
                    invalid(
                        "http_listen",
                        format!("`{v}` is not an IP:PORT socket address (or \"off\")"),
                    )
                })?;
                if !a.ip().is_loopback() {
                    return Err(invalid(
                        "http_listen",
                        format!(
                            "`{v}` is not a loopback address: the console speaks plain HTTP, so \
                             serve it on 127.0.0.1 or ::1 and put a TLS reverse proxy in front"
                        ),
                    ));
                }
                Some(a)
            }
        };
        let session_ttl = dur(
            "session_ttl",
            raw.session_ttl,
            DEFAULT_SESSION_TTL,
            secs(60),
        )?;
        let mut forwards: Vec<Forward> = Vec::new();
        for (i, f) in raw.forward.into_iter().enumerate() {
            let bad = |message: String| {
                invalid("forward", format!("forward[{i}] ({}): {message}", f.name))
            };
            if !crate::valid_name(&f.name) {
                return Err(bad(
                    "name must be 1 to 64 letters, digits, '-', '_' or '.'".into()
                ));
            }
            if forwards.iter().any(|o| o.name == f.name) {
                return Err(bad("duplicate name".into()));
            }
            let file = |p: &PathBuf, what: &str| {
                let p = if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                };
                std::fs::read(&p).map_err(|e| bad(format!("{what} {}: {e}", p.display())))
            };
            let target = match (&f.syslog, &f.syslog_tls, &f.webhook) {
                (Some(a), None, None) => ForwardTarget::Syslog {
                    addr: a
                        .parse()
                        .map_err(|_| bad(format!("syslog `{a}` is not an IP:PORT address")))?,
                },
                (None, Some(a), None) => {
                    let addr: SocketAddr = a
                        .parse()
                        .map_err(|_| bad(format!("syslog_tls `{a}` is not an IP:PORT address")))?;
                    let ca = f.ca_file.as_ref().ok_or_else(|| {
                        bad("syslog_tls needs `ca_file` (the receiver's CA, PEM)".into())
                    })?;
                    let client = match (&f.cert_file, &f.key_file) {
                        (Some(c), Some(k)) => Some((file(c, "cert_file")?, file(k, "key_file")?)),
                        (None, None) => None,
                        _ => return Err(bad("`cert_file` and `key_file` go together".into())),
                    };
                    ForwardTarget::SyslogTls {
                        addr,
                        server_name: f
                            .server_name
                            .clone()
                            .unwrap_or_else(|| addr.ip().to_string()),
                        ca_pem: file(ca, "ca_file")?,
                        client,
                    }
                }
                (None, None, Some(url)) => ForwardTarget::Webhook {
                    url: url.clone(),
                    secret: crate::connectors::settings::webhook_secret(
                        base,
                        url,
                        &f.secret,
                        &f.secret_file,
                    )
                    .map_err(bad)?,
                },
                _ => {
                    return Err(bad(
                        "needs exactly one of `syslog`, `syslog_tls` or `webhook`".into(),
                    ))
                }
            };
            let min = f.min_severity.as_deref().unwrap_or("high");
            let min_severity = holdfast_shared::event::Severity::parse(min).ok_or_else(|| {
                bad(format!(
                    "min_severity `{min}` is not one of low, medium, high, critical"
                ))
            })?;
            forwards.push(Forward {
                name: f.name.clone(),
                target,
                min_severity,
            });
        }
        let hr = match raw.hr {
            None => None,
            Some(h) => Some(HrSchedule {
                file: if h.file.is_absolute() {
                    h.file
                } else {
                    base.join(h.file)
                },
                every: dur("hr", h.every, secs(3600), secs(1))?,
            }),
        };
        let mut correlation = crate::store::correlate::Correlation::default();
        if let Some(c) = raw.correlation {
            let window = dur("correlation.window", c.window, secs(3600), secs(60))?;
            correlation.window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            if let Some(f) = c.volume_factor {
                if !(2..=1000).contains(&f) {
                    return Err(invalid(
                        "correlation.volume_factor",
                        format!("{f} is outside 2..=1000"),
                    ));
                }
                correlation.volume_factor = f;
            }
            if let Some(m) = c.volume_min_records {
                correlation.volume_min_records = m;
            }
        }
        Ok(Config {
            data_dir,
            listen,
            server_names,
            cert_lifetime,
            offline_after,
            skew_tolerance,
            max_events_per_sec,
            connectors,
            http_listen,
            session_ttl,
            forwards,
            hr,
            correlation,
            source: Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())),
        })
    }

    /// An admin command for this collector as it can be pasted into a shell: this program,
    /// `args`, and the flag that reaches this config (`--config` with the file it came from,
    /// else `--data-dir`), every path absolute and quoted where a shell needs it.
    pub fn command(&self, args: &str) -> String {
        let exe = std::env::current_exe()
            .ok()
            .filter(|e| e.file_name().is_some_and(|n| n == "holdfast-collector"))
            .map(|e| shell_word(&e.display().to_string()))
            .unwrap_or_else(|| "holdfast-collector".into());
        let flag = match &self.source {
            Some(f) => format!("--config {}", shell_word(&f.display().to_string())),
            None => {
                let d =
                    std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
                format!("--data-dir {}", shell_word(&d.display().to_string()))
            }
        };
        format!("{exe} {args} {flag}")
    }
}

/// `s` as one word for a POSIX shell: as it is when every character is plain, else in single
/// quotes (a `'` inside written `'\''`).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `n` seconds, for the defaults and minimums above.
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn loopback_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `src` refused with exactly `want`.
    fn bad(src: &str, want: &str) {
        let e = Config::parse(Path::new("/c.toml"), src).unwrap_err();
        assert_eq!(e.to_string(), want);
    }

    /// `src` as a valid config.
    fn parsed(src: &str) -> Config {
        Config::parse(Path::new("/etc/c.toml"), src).unwrap()
    }

    fn check(src: &str, want: Result<&str, &str>) {
        match (Config::parse(Path::new("/etc/c.toml"), src), want) {
            (Ok(c), Ok(listen)) => assert_eq!(c.listen.to_string(), listen),
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg),
            (got, want) => panic!("{src:?}: {got:?} vs {want:?}"),
        }
    }

    #[test]
    fn printed_commands_can_be_pasted() {
        let from_file = parsed("data_dir = \"/srv/hf\"\n");
        assert!(from_file
            .command("offboard status kim")
            .ends_with(" offboard status kim --config /etc/c.toml"));
        let odd = Config::with_data_dir(PathBuf::from("/home/ann/my data/it's"));
        assert!(odd
            .command("alerts list")
            .ends_with(" alerts list --data-dir '/home/ann/my data/it'\\''s'"));
        for (word, shell) in [
            ("plain/path-1.db", "plain/path-1.db"),
            ("", "''"),
            ("a b", "'a b'"),
            ("$HOME", "'$HOME'"),
        ] {
            assert_eq!(shell_word(word), shell);
        }
    }

    #[test]
    fn parses() {
        check(
            "data_dir = \"d\"\nlisten = \"127.0.0.1:9\"",
            Ok("127.0.0.1:9"),
        );
        check(
            "listen = \"nope\"",
            Err("/etc/c.toml: listen: `nope` is not an IP:PORT socket address"),
        );
        check("lisen = \"x\"", Err("/etc/c.toml:1:1: unknown field `lisen`, expected one of `data_dir`, `listen`, `server_names`, `cert_lifetime`, `offline_after`, `skew_tolerance`, `max_events_per_sec`, `connector`, `http_listen`, `session_ttl`, `forward`, `hr`, `correlation`"));
        check(
            "[correlation]\nvolume_factor = 1",
            Err("/etc/c.toml: correlation.volume_factor: 1 is outside 2..=1000"),
        );
        check(
            "[correlation]\nwindow = \"5s\"",
            Err("/etc/c.toml: correlation.window: `5s` is shorter than the minimum of 1m"),
        );
        let c =
            parsed("[correlation]\nwindow = \"2h\"\nvolume_factor = 5\nvolume_min_records = 200\n");
        assert_eq!(
            c.correlation,
            crate::store::correlate::Correlation {
                window_ms: 7_200_000,
                volume_factor: 5,
                volume_min_records: 200
            }
        );
        check(
            "http_listen = \"0.0.0.0:7480\"",
            Err("/etc/c.toml: http_listen: `0.0.0.0:7480` is not a loopback address: the console speaks plain HTTP, so serve it on 127.0.0.1 or ::1 and put a TLS reverse proxy in front"),
        );
        check(
            "http_listen = \"localhost\"",
            Err("/etc/c.toml: http_listen: `localhost` is not an IP:PORT socket address (or \"off\")"),
        );
        check(
            "offline_after = \"soon\"",
            Err("/etc/c.toml: offline_after: `soon`: expected number at 0 (write e.g. \"90d\", \"10m\", \"30s\")"),
        );
        check(
            "cert_lifetime = \"2s\"",
            Err("/etc/c.toml: cert_lifetime: `2s` is shorter than the minimum of 10s"),
        );
        check(
            "max_events_per_sec = 0",
            Err("/etc/c.toml: max_events_per_sec: must be at least 1"),
        );
        let c = parsed("cert_lifetime = \"30s\"\noffline_after = \"3s\"");
        assert_eq!(
            (c.cert_lifetime.as_secs(), c.offline_after.as_secs()),
            (30, 3)
        );
    }

    #[test]
    fn forwarders_are_validated() {
        let c = parsed("[[forward]]\nname = \"siem\"\nsyslog = \"127.0.0.1:6514\"\n\n[[forward]]\nname = \"soar\"\nwebhook = \"https://soar.example/h\"\nsecret = \"0123456789abcdef\"\nmin_severity = \"critical\"\n");
        assert_eq!(c.forwards.len(), 2);
        assert_eq!(
            c.forwards[0].min_severity,
            holdfast_shared::event::Severity::High
        );
        assert_eq!(
            c.forwards[1].min_severity,
            holdfast_shared::event::Severity::Critical
        );
        assert!(!format!("{:?}", c.forwards).contains("0123456789abcdef"));
        bad(
            "[[forward]]\nname = \"siem\"\nsyslog = \"siem.corp:514\"\n",
            "/c.toml: forward: forward[0] (siem): syslog `siem.corp:514` is not an IP:PORT address",
        );
        bad(
            "[[forward]]\nname = \"siem\"\nsyslog = \"127.0.0.1:514\"\nmin_severity = \"urgent\"\n",
            "/c.toml: forward: forward[0] (siem): min_severity `urgent` is not one of low, medium, high, critical",
        );
        bad(
            "[[forward]]\nname = \"siem\"\n",
            "/c.toml: forward: forward[0] (siem): needs exactly one of `syslog`, `syslog_tls` or `webhook`",
        );
    }
}
