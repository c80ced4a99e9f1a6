//! The Holdfast collector as a library: `main.rs` parses flags; these modules do the work.
//!
//! `ingest` owns the QUIC socket, `store` owns every SQL statement, `pki` owns the CA key.

use holdfast_shared::time::UnixMs;
pub mod api_tokens;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod edm;
pub mod forward;
pub mod hr;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod offboard;
pub mod pki;
pub mod policies;
#[cfg(feature = "quickstart")]
pub mod quickstart;
pub mod report;
pub mod risk;
pub mod store;
pub mod table;
pub mod tokens;
pub mod triage;

/// Who asked, and from where (for the audit log).
#[derive(Debug, Clone)]
pub struct Actor {
    /// `cli:alice`, `api:soc-1`, a device id, or `collector`.
    pub who: String,
    /// `cli@host`, `http 127.0.0.1`, `device`.
    pub origin: String,
}

impl Actor {
    /// The operator of this CLI process: the OS user of the real uid (never an environment
    /// variable, which anyone can set), noting the `sudo` caller beside root.
    pub fn cli() -> Actor {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{uid}"));
        let who = match std::env::var("SUDO_USER") {
            Ok(by) if uid.is_root() && valid_name(&by) => format!("cli:{name} (sudo by {by})"),
            _ => format!("cli:{name}"),
        };
        Actor {
            who,
            origin: format!("cli@{}", holdfast_io::host::hostname()),
        }
    }

    /// An actor for unit tests.
    #[cfg(test)]
    pub fn test() -> Actor {
        Actor {
            who: "cli:test".into(),
            origin: "cli@test".into(),
        }
    }
}

/// Milliseconds since the Unix epoch: the collector's one clock.
pub fn now_ms() -> UnixMs {
    holdfast_io::clock::now_ms()
}

/// Whether `name` can name a connector, forwarder or API token: 1 to 64 letters, digits,
/// `-`, `_` or `.` (safe in logs, URLs and the audit log).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// RFC 3339 (UTC, seconds) for a moment: the one way times are shown.
pub fn fmt_ms(t: UnixMs) -> String {
    t.rfc3339()
}
