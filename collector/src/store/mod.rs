//! Storage: the only module that writes SQL. One SQLite file (WAL) holds tokens, devices,
//! events, alerts and published policies. Ingest is idempotent on `(device_id, seq)` and one
//! batch is one transaction, so an acknowledged batch is durable and a resent one changes
//! nothing. Ingest also checks each device's hash chain: a gap, an edited event or an event
//! resent with other content raises an alert.

use crate::fmt_ms;
use holdfast_shared::event::{EventBody, SealedEvent, Severity};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

pub mod correlate;
mod offboard;
mod triage;
use offboard::{audit_in, audit_row};
pub use offboard::{AuditEntry, ConnectorRun, NewOrder, OffboardRow, OrderRow, UserRow};
pub use triage::{
    AlertChange, AlertCursor, AlertFilter, AlertOrder, ApiToken, BySeverity, EventFilter, Note,
    RiskSignals, Session,
};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, locked beyond the busy timeout, corrupt file).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A value could not be serialized for storage.
    #[error("encoding: {0}")]
    Encode(String),
}

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No such token.
    #[error("unknown token")]
    Unknown,
    /// The token's time to live has passed.
    #[error("token expired")]
    Expired,
    /// The token was already used once.
    #[error("token already used")]
    Used,
}

/// Alerts the collector raises about the channel itself (not from policy rules).
pub mod system_rules {
    /// Events are missing from a device's sequence: deleted from the spool, or lost.
    pub const SEQUENCE_GAP: &str = "holdfast.sequence_gap";
    /// An event's hash link does not match its predecessor: an edited spool.
    pub const CHAIN_BROKEN: &str = "holdfast.chain_broken";
    /// An event body that does not decode.
    pub const UNDECODABLE: &str = "holdfast.undecodable_event";
    /// The agent's spool was full and it reported what it dropped.
    pub const SPOOL_OVERFLOW: &str = "holdfast.spool_overflow";
    /// A device was silent for longer than `offline_after`.
    pub const AGENT_OFFLINE: &str = "holdfast.agent_offline";
    /// A device's clock is off by more than `skew_tolerance`.
    pub const CLOCK_SKEW: &str = "holdfast.clock_skew";
    /// A user touched customer files after their offboarding took effect.
    pub const OFFBOARDED_ACCESS: &str = "holdfast.offboarded_access";
    /// An export was archived and left the device (removable media, cloud folder, share)
    /// within the correlation window: one alert for the whole story.
    pub const EXFIL_SEQUENCE: &str = "holdfast.exfil_sequence";
    /// A user handled far more customer records in a day than their own 30-day average.
    pub const VOLUME_SPIKE: &str = "holdfast.volume_spike";
    /// The device's spool started over (a new chain at seq 1): kept as a new stream.
    pub const SPOOL_RESET: &str = "holdfast.spool_reset";
    /// Two different events claim one sequence number: a copied identity or a restored
    /// snapshot; both are kept, the second as a new stream.
    pub const CHAIN_FORKED: &str = "holdfast.chain_forked";
    /// Two chains of one device both advance: two agents are running on one identity.
    pub const IDENTITY_CLONED: &str = "holdfast.identity_cloned";
    /// The agent was stopped by a signal the collector did not order (someone at the
    /// device, or its service manager).
    pub const AGENT_STOPPED: &str = "holdfast.agent_stopped";
    /// A stage of the agent failed and is being restarted (its heartbeat says which and why).
    pub const AGENT_DEGRADED: &str = "holdfast.agent_degraded";
    /// While the agent was not running (stopped or crashed), customer files were created
    /// or changed: found and reported at its next start.
    pub const COVERAGE_GAP: &str = "holdfast.coverage_gap";
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default, schemars::JsonSchema)]
pub struct Device {
    pub id: String,
    pub user: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub cert_sha256: String,
    pub cert_serial: String,
    /// When the current certificate was issued, and when it expires.
    pub cert_issued_ms: i64,
    pub cert_expires_ms: i64,
    pub enrolled_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub last_seq: u64,
    pub spool_backlog: Option<u64>,
    /// The first sequence number of this identity's chain.
    pub first_seq: u64,
    /// The policy bundle version the agent last reported.
    pub policy_version: String,
    /// Device clock minus collector clock at the last heartbeat.
    pub clock_skew_ms: Option<i64>,
    /// Set while the device is considered offline.
    pub offline_since_ms: Option<i64>,
    /// What the agent last said it watches, polls and indexes.
    #[schemars(with = "Option<serde_json::Value>")]
    pub coverage: Option<holdfast_shared::event::Coverage>,
    /// What the agent said when it last stopped (the signal and its sender).
    pub last_stop: Option<String>,
    /// The agent's last gap notice: from when to when it was not running, and what changed
    /// meanwhile.
    pub last_gap: Option<String>,
    /// `ok`, or `degraded: ` and the failing stages as the last heartbeat gave them.
    pub health: String,
}

/// What a heartbeat reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub agent_version: String,
    pub hostname: String,
    pub os: String,
    pub policy_version: String,
    /// Version of the customer set the agent matches with (empty: none).
    pub edm_version: String,
    /// Device clock minus collector clock.
    pub skew_ms: i64,
    pub backlog: u64,
    pub coverage: Option<holdfast_shared::event::Coverage>,
    /// The agent's failing stages, as `stage: reason` (empty: healthy).
    pub health: Vec<String>,
}

/// A customer set to publish: its stored form and the signed manifest of its pieces.
#[derive(Debug, Clone, Copy)]
pub struct NewCustomerSet<'a> {
    pub version: &'a str,
    pub customers: u64,
    /// Bytes per piece, as the manifest says.
    pub piece: u32,
    /// The signed manifest (a `Signed` in stored form).
    pub manifest: &'a [u8],
    pub payload: &'a [u8],
}

/// The current customer set, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSetInfo {
    pub version: String,
    pub size: u64,
    pub customers: u64,
    /// The signed manifest (a `Signed` in stored form), offered to agents.
    pub manifest: Vec<u8>,
}

/// A published policy bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PublishedPolicy {
    pub version: String,
    pub issued_ms: i64,
    pub published_ms: i64,
    pub files: u64,
    #[serde(skip)]
    pub signed: Vec<u8>,
}

/// An alert to raise or update (one open alert per rule, device and path).
struct Hit<'a> {
    rule_id: &'a str,
    severity: Severity,
    user: &'a str,
    device_id: &'a str,
    path: &'a str,
    sha256: Option<&'a str>,
    records: i64,
    time_ms: i64,
    seq: i64,
    detail: &'a str,
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Alert {
    pub id: i64,
    pub rule_id: String,
    pub severity: String,
    pub status: String,
    pub user: String,
    pub device_id: String,
    pub path: String,
    pub sha256: Option<String>,
    pub records: u64,
    pub event_count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// What a system alert is about, in words.
    pub detail: String,
    /// Who is working on it.
    pub assignee: Option<String>,
}

/// The columns [`alert_row`] reads, in order.
const ALERT_COLUMNS: &str = "id, rule_id, severity, status, user, device_id, path, sha256, records,
    event_count, first_seen_ms, last_seen_ms, detail, assignee";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    alert_row_at(r, 0)
}

/// [`alert_row`] for columns that start at index `at` of the row.
fn alert_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(at)?,
        rule_id: r.get(at + 1)?,
        severity: r.get(at + 2)?,
        status: r.get(at + 3)?,
        user: r.get(at + 4)?,
        device_id: r.get(at + 5)?,
        path: r.get(at + 6)?,
        sha256: r.get(at + 7)?,
        records: r.get::<_, i64>(at + 8)?.max(0) as u64,
        event_count: r.get::<_, i64>(at + 9)?.max(0) as u64,
        first_seen_ms: r.get(at + 10)?,
        last_seen_ms: r.get(at + 11)?,
        detail: r.get(at + 12)?,
        assignee: r.get(at + 13)?,
    })
}

/// A stored event as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StoredEvent {
    /// The collector's row id: the order events were stored in.
    pub id: i64,
    pub device_id: String,
    pub seq: u64,
    pub user: String,
    /// The device's timestamp, as sent.
    pub time_ms: i64,
    /// The collector's clock when the event was stored.
    pub received_ms: i64,
    /// Device time corrected by the device's measured clock skew (never after `received_ms`):
    /// what look-back windows use.
    pub corrected_ms: i64,
    pub kind: String,
    pub action: Option<String>,
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub records: Option<u64>,
    pub rules: Vec<String>,
    /// The path a rename came from.
    pub old_path: Option<String>,
    /// Counts per classifier (`email`, `phone`, `edm`, ...), when the file was read.
    pub findings: std::collections::BTreeMap<String, u64>,
    /// Removable media, cloud folder or share the file is in.
    #[schemars(with = "Option<serde_json::Value>")]
    pub destination: Option<holdfast_shared::event::Destination>,
    /// The earlier sighting of the same content on the device.
    #[schemars(with = "Option<serde_json::Value>")]
    pub origin: Option<holdfast_shared::event::Origin>,
    /// Who opened the file (pid, uid, user, executable), for opens seen by read monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub process: Option<holdfast_shared::event::Process>,
    /// What an agent's notice says, in plain words (`watch_limit`, `watch_overflow`, ...), or
    /// why a file was not read (`not a regular file but a FIFO: skipped`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One connection to the collector database.
pub struct Store {
    conn: Connection,
    correlation: correlate::Correlation,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_streams (
    device_id TEXT NOT NULL,
    stream TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    since_seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    secret_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER,
    used_by TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    cert_serial TEXT NOT NULL,
    enrolled_ms INTEGER NOT NULL,
    last_seen_ms INTEGER,
    revoked_ms INTEGER,
    spool_backlog INTEGER,
    first_seq INTEGER NOT NULL DEFAULT 1,
    policy_version TEXT NOT NULL DEFAULT '',
    clock_skew_ms INTEGER,
    offline_since_ms INTEGER,
    edm_version TEXT NOT NULL DEFAULT '',
    prev_cert_sha256 TEXT,
    cert_issued_ms INTEGER NOT NULL DEFAULT 0,
    cert_expires_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT,
    path TEXT,
    old_path TEXT,
    size INTEGER,
    sha256 TEXT,
    records INTEGER,
    findings TEXT,
    rules TEXT NOT NULL,
    body BLOB NOT NULL,
    hash BLOB,
    prev_hash BLOB,
    corrected_ms INTEGER,
    UNIQUE (device_id, seq)
);
CREATE INDEX IF NOT EXISTS events_sha256 ON events (sha256);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    records INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    last_event_seq INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (rule_id, device_id, path, status);
CREATE TABLE IF NOT EXISTS edm_sets (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    signed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS customer_sets (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    piece INTEGER NOT NULL,
    manifest BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS offboardings (
    user TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    lookback_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    restored_ms INTEGER
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    signed BLOB NOT NULL,
    delivered_ms INTEGER,
    done_ms INTEGER,
    ok INTEGER,
    receipts TEXT
);
CREATE INDEX IF NOT EXISTS orders_device ON orders (device_id, done_ms);
CREATE TABLE IF NOT EXISTS connector_runs (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    connector TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    last_ms INTEGER,
    last_code INTEGER,
    last_detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS connector_runs_due ON connector_runs (status, next_ms);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    once INTEGER NOT NULL DEFAULT 0,
    last_used_ms INTEGER,
    used_ms INTEGER,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_name TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_notes (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_notes_alert ON alert_notes (alert_id);
CREATE TABLE IF NOT EXISTS forward_cursors (
    name TEXT PRIMARY KEY,
    last_alert_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_bundles (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    published_ms INTEGER NOT NULL,
    files INTEGER NOT NULL,
    signed BLOB NOT NULL
);
";

/// Columns added after the first schema: added in place to databases created before them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("devices", "first_seq", "INTEGER NOT NULL DEFAULT 1"),
    ("devices", "policy_version", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "clock_skew_ms", "INTEGER"),
    ("devices", "offline_since_ms", "INTEGER"),
    ("devices", "prev_cert_sha256", "TEXT"),
    ("devices", "cert_issued_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("devices", "cert_expires_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("events", "hash", "BLOB"),
    ("events", "prev_hash", "BLOB"),
    ("events", "corrected_ms", "INTEGER"),
    ("alerts", "detail", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "edm_version", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "last_stream", "TEXT"),
    ("offboardings", "notice_ms", "INTEGER"),
    ("offboardings", "raise_levels", "INTEGER NOT NULL DEFAULT 0"),
    ("alerts", "assignee", "TEXT"),
    ("devices", "coverage", "TEXT"),
    ("events", "destination", "TEXT"),
    ("events", "origin", "TEXT"),
    ("events", "process", "TEXT"),
    ("alerts", "severity_rank", "INTEGER NOT NULL DEFAULT -1"),
    ("devices", "last_stop", "TEXT"),
    ("devices", "last_gap", "TEXT"),
    ("devices", "health", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "version", "INTEGER NOT NULL DEFAULT 0"),
];

/// Indexes over added columns (created once those exist).
const INDEXES: &str = "
UPDATE alerts SET severity_rank = CASE severity WHEN 'low' THEN 0 WHEN 'medium' THEN 1
    WHEN 'high' THEN 2 ELSE 3 END WHERE severity_rank = -1;
CREATE INDEX IF NOT EXISTS alerts_by_severity ON alerts (severity_rank DESC, last_seen_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (last_seen_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_user ON alerts (user, last_seen_ms);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, time_ms);
CREATE INDEX IF NOT EXISTS events_by_user_corrected ON events (user, corrected_ms);
UPDATE alerts SET version = id WHERE version = 0;
CREATE INDEX IF NOT EXISTS alerts_by_version ON alerts (version);
-- Every insert and every change of an alert gives it the next version: forwarders follow
-- versions, so escalations and status changes reach them, whatever statement made them.
CREATE TRIGGER IF NOT EXISTS alerts_version_insert AFTER INSERT ON alerts
BEGIN
    UPDATE alerts SET version = (SELECT COALESCE(MAX(version), 0) + 1 FROM alerts)
    WHERE id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS alerts_version_update AFTER UPDATE ON alerts
WHEN NEW.version = OLD.version
BEGIN
    UPDATE alerts SET version = (SELECT COALESCE(MAX(version), 0) + 1 FROM alerts)
    WHERE id = NEW.id;
END;
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
            // Events, sessions and CSRF tokens are the collector's alone.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let conn = Connection::open(path)?;
        for file in [
            path.to_path_buf(),
            path.with_extension("db-wal"),
            path.with_extension("db-shm"),
        ] {
            if file.exists() {
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            }
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, decl) in ADDED_COLUMNS {
            let exists: bool = conn.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )?;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        conn.execute_batch(INDEXES)?;
        Ok(Store {
            conn,
            correlation: correlate::Correlation::default(),
        })
    }

    /// Records a new enrollment token (only the secret's hash is stored).
    pub fn add_token(
        &self,
        secret_sha256: &str,
        user: &str,
        now_ms: i64,
        expires_ms: i64,
        actor: &crate::Actor,
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO tokens (secret_sha256, user, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![secret_sha256, user, now_ms, expires_ms],
        )?;
        audit_in(
            &tx,
            &AuditEntry::by(
                actor,
                now_ms,
                "token.create",
                user,
                format!("enrollment token, expires {}", fmt_ms(expires_ms)),
            ),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Spends a token for `device_id`: succeeds once, before expiry. Returns the token's user.
    pub fn redeem_token(
        &self,
        secret_sha256: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Result<String, TokenRefusal>, StoreError> {
        let changed = self.conn.execute(
            "UPDATE tokens SET used_ms = ?2, used_by = ?3
             WHERE secret_sha256 = ?1 AND used_ms IS NULL AND expires_ms > ?2",
            params![secret_sha256, now_ms, device_id],
        )?;
        let row: Option<(String, i64, Option<String>)> = self
            .conn
            .query_row(
                "SELECT user, expires_ms, used_by FROM tokens WHERE secret_sha256 = ?1",
                [secret_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            None => Err(TokenRefusal::Unknown),
            Some((user, _, _)) if changed == 1 => Ok(user),
            Some((_, _, Some(_))) => Err(TokenRefusal::Used),
            Some(_) => Err(TokenRefusal::Expired),
        })
    }

    /// Registers an enrolled device.
    pub fn add_device(&self, d: &Device) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO devices (id, user, hostname, os, agent_version, cert_sha256, cert_serial, enrolled_ms,
                 first_seq, cert_issued_ms, cert_expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![d.id, d.user, d.hostname, d.os, d.agent_version, d.cert_sha256, d.cert_serial, d.enrolled_ms,
                d.first_seq as i64, d.cert_issued_ms, d.cert_expires_ms],
        )?;
        Ok(())
    }

    fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
        Ok(Device {
            id: r.get(0)?,
            user: r.get(1)?,
            hostname: r.get(2)?,
            os: r.get(3)?,
            agent_version: r.get(4)?,
            cert_sha256: r.get(5)?,
            cert_serial: r.get(6)?,
            enrolled_ms: r.get(7)?,
            last_seen_ms: r.get(8)?,
            revoked_ms: r.get(9)?,
            last_seq: r.get::<_, Option<i64>>(10)?.unwrap_or(0) as u64,
            spool_backlog: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
            first_seq: r.get::<_, i64>(12)? as u64,
            policy_version: r.get(13)?,
            clock_skew_ms: r.get(14)?,
            offline_since_ms: r.get(15)?,
            cert_issued_ms: r.get(16)?,
            cert_expires_ms: r.get(17)?,
            coverage: r
                .get::<_, Option<String>>(18)?
                .and_then(|c| serde_json::from_str(&c).ok()),
            last_stop: r.get(19)?,
            last_gap: r.get(20)?,
            health: match r.get::<_, String>(21)? {
                h if h.is_empty() => "ok".into(),
                h => format!("degraded: {h}"),
            },
        })
    }

    const DEVICE_COLUMNS: &'static str =
        "d.id, d.user, d.hostname, d.os, d.agent_version, d.cert_sha256, d.cert_serial,
        d.enrolled_ms, d.last_seen_ms, d.revoked_ms,
        (SELECT MAX(seq) FROM events e WHERE e.device_id = d.id), d.spool_backlog,
        d.first_seq, d.policy_version, d.clock_skew_ms, d.offline_since_ms,
        d.cert_issued_ms, d.cert_expires_ms, d.coverage, d.last_stop, d.last_gap, d.health";

    /// The device holding the certificate with this SHA-256 (its current one, or the one
    /// it renewed from), if any.
    pub fn device_by_cert(&self, cert_sha256: &str) -> Result<Option<Device>, StoreError> {
        let sql = format!(
            "SELECT {} FROM devices d WHERE d.cert_sha256 = ?1 OR d.prev_cert_sha256 = ?1",
            Self::DEVICE_COLUMNS
        );
        Ok(self
            .conn
            .query_row(&sql, [cert_sha256], Self::device_from_row)
            .optional()?)
    }

    /// All devices, most recently seen first.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {} FROM devices d ORDER BY COALESCE(d.last_seen_ms, d.enrolled_ms) DESC, d.id",
            Self::DEVICE_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], Self::device_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a heartbeat: registry facts, last seen, clock skew. Notes a return on the
    /// device's open offline alert, and raises a clock-skew alert when the skew first goes
    /// beyond `skew_tolerance_ms`. Returns the device's last committed sequence number.
    pub fn heartbeat(
        &mut self,
        device: &Device,
        beat: &Beat,
        now_ms: i64,
        skew_tolerance_ms: i64,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let (prev_skew, offline_since, prev_health): (Option<i64>, Option<i64>, String) = tx
            .query_row(
                "SELECT clock_skew_ms, offline_since_ms, health FROM devices WHERE id = ?1",
                [&device.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
        let health = beat.health.join("; ");
        if health != prev_health {
            tx.execute(
                "UPDATE devices SET health = ?2 WHERE id = ?1",
                params![device.id, health],
            )?;
            if !health.is_empty() {
                // One open alert per device while it is degraded; a new reason updates it.
                let detail = format!("the agent is degraded: {health}");
                upsert_alert(
                    &tx,
                    &system_hit(
                        &device.user,
                        &device.id,
                        system_rules::AGENT_DEGRADED,
                        Severity::High,
                        &detail,
                        now_ms,
                        0,
                    ),
                )?;
            } else {
                tx.execute(
                    "UPDATE alerts SET detail = detail || ?3, last_seen_ms = ?2
                     WHERE rule_id = ?1 AND device_id = ?4 AND status IN ('new', 'triaged')",
                    params![
                        system_rules::AGENT_DEGRADED,
                        now_ms,
                        format!("; recovered at {}", fmt_ms(now_ms)),
                        device.id
                    ],
                )?;
            }
        }
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?2, spool_backlog = ?3, agent_version = ?4,
                 hostname = ?5, os = ?6, policy_version = ?7, clock_skew_ms = ?8,
                 offline_since_ms = NULL, edm_version = ?9,
                 coverage = COALESCE(?10, coverage)
             WHERE id = ?1",
            params![
                device.id,
                now_ms,
                beat.backlog as i64,
                beat.agent_version.chars().take(64).collect::<String>(),
                beat.hostname.chars().take(255).collect::<String>(),
                beat.os.chars().take(64).collect::<String>(),
                beat.policy_version.chars().take(128).collect::<String>(),
                beat.skew_ms,
                beat.edm_version.chars().take(64).collect::<String>(),
                beat.coverage
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok()),
            ],
        )?;
        if let Some(since) = offline_since {
            tx.execute(
                "UPDATE alerts SET detail = detail || ?3, last_seen_ms = ?2
                 WHERE rule_id = ?1 AND device_id = ?4 AND status IN ('new', 'triaged')",
                params![
                    system_rules::AGENT_OFFLINE,
                    now_ms,
                    format!(
                        "; back at {} after {}",
                        fmt_ms(now_ms),
                        span(now_ms - since)
                    ),
                    device.id
                ],
            )?;
        }
        let beyond = |s: Option<i64>| s.is_some_and(|s| s.abs() > skew_tolerance_ms);
        if beyond(Some(beat.skew_ms)) && !beyond(prev_skew) {
            let detail = format!(
                "device clock is {} {} the collector's",
                span(beat.skew_ms.abs()),
                if beat.skew_ms > 0 {
                    "ahead of"
                } else {
                    "behind"
                }
            );
            upsert_alert(
                &tx,
                &system_hit(
                    &device.user,
                    &device.id,
                    system_rules::CLOCK_SKEW,
                    Severity::Medium,
                    &detail,
                    now_ms,
                    0,
                ),
            )?;
        }
        let last: Option<i64> = tx.query_row(
            "SELECT MAX(seq) FROM events WHERE device_id = ?1",
            [&device.id],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(last.unwrap_or(0) as u64)
    }

    /// Raises an "agent offline" alert for every live device silent for longer than
    /// `offline_after_ms`. Devices already flagged are left alone until they return.
    /// Returns the ids newly flagged.
    pub fn sweep_offline(
        &mut self,
        now_ms: i64,
        offline_after_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.conn.transaction()?;
        let silent: Vec<(String, String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, user, COALESCE(last_seen_ms, enrolled_ms) FROM devices
                 WHERE revoked_ms IS NULL AND offline_since_ms IS NULL
                   AND COALESCE(last_seen_ms, enrolled_ms) < ?1",
            )?;
            let rows = stmt.query_map([now_ms - offline_after_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, user, last) in &silent {
            tx.execute(
                "UPDATE devices SET offline_since_ms = ?2 WHERE id = ?1",
                params![id, last],
            )?;
            let detail = format!(
                "silent since {} (more than {})",
                fmt_ms(*last),
                span(offline_after_ms)
            );
            upsert_alert(
                &tx,
                &system_hit(
                    user,
                    id,
                    system_rules::AGENT_OFFLINE,
                    Severity::Medium,
                    &detail,
                    now_ms,
                    0,
                ),
            )?;
        }
        tx.commit()?;
        Ok(silent.into_iter().map(|(id, _, _)| id).collect())
    }

    /// Records a renewed certificate. The previous one stays accepted until it expires, so
    /// an agent that crashed before saving the new one can still connect and renew again.
    pub fn renew_cert(
        &self,
        device_id: &str,
        cert_sha256: &str,
        serial: &str,
        issued_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET prev_cert_sha256 = cert_sha256, cert_sha256 = ?2, cert_serial = ?3,
                 cert_issued_ms = ?4, cert_expires_ms = ?5
             WHERE id = ?1",
            params![device_id, cert_sha256, serial, issued_ms, expires_ms],
        )?;
        Ok(())
    }

    /// Stores a signed policy bundle as the one to distribute. Publishing the version already
    /// current changes nothing and returns `false`.
    pub fn publish_policy(
        &self,
        p: &PublishedPolicy,
        actor: &crate::Actor,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        if self
            .current_policy()?
            .is_some_and(|c| c.version == p.version)
        {
            return Ok(false);
        }
        audit_in(
            &tx,
            &AuditEntry::by(
                actor,
                p.published_ms,
                "policy.publish",
                &p.version,
                format!("{} file(s)", p.files),
            ),
        )?;
        tx.execute(
            "INSERT INTO policy_bundles (version, issued_ms, published_ms, files, signed)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                p.version,
                p.issued_ms,
                p.published_ms,
                p.files as i64,
                p.signed
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Stores a customer fingerprint set and its signed manifest as the current one (older
    /// ones are dropped: sets are large and only the newest is ever sent).
    pub fn publish_edm(
        &self,
        set: &NewCustomerSet<'_>,
        now_ms: i64,
        actor: &crate::Actor,
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO customer_sets (version, published_ms, customers, piece, manifest, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                set.version,
                now_ms,
                set.customers as i64,
                set.piece,
                set.manifest,
                set.payload
            ],
        )?;
        tx.execute(
            "DELETE FROM customer_sets WHERE id < (SELECT MAX(id) FROM customer_sets)",
            [],
        )?;
        tx.execute("DELETE FROM edm_sets", [])?;
        audit_in(
            &tx,
            &AuditEntry::by(
                actor,
                now_ms,
                "edm.import",
                set.version,
                format!("{} customers", set.customers),
            ),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets stored by versions before the signed manifest (format 2), which agents can no
    /// longer take: the list must be imported again.
    pub fn legacy_edm_sets(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM edm_sets", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// A piece of the current customer set: the piece from `offset` (at most `max` bytes),
    /// and the set's size, read with SQLite's incremental blob I/O so the set is never loaded
    /// whole. `None` when `version` is not the current set.
    pub fn edm_chunk(
        &self,
        version: &str,
        offset: u64,
        max: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        use std::io::{Read, Seek};
        let current: Option<(i64, String, i64)> = self
            .conn
            .query_row(
                "SELECT id, version, piece FROM customer_sets ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, current, piece)) = current else {
            return Ok(None);
        };
        if current != version {
            return Ok(None);
        }
        let mut blob =
            self.conn
                .blob_open(rusqlite::MAIN_DB, "customer_sets", "payload", id, true)?;
        let total = blob.len() as u64;
        let from = offset.min(total);
        let n = (total - from).min(max as u64).min(piece.max(1) as u64) as usize;
        let mut out = vec![0u8; n];
        let io = |e: std::io::Error| StoreError::Encode(format!("reading the customer set: {e}"));
        blob.seek(std::io::SeekFrom::Start(from)).map_err(io)?;
        blob.read_exact(&mut out).map_err(io)?;
        Ok(Some((total, out)))
    }

    /// The current customer set's version, size and signed manifest, without its bytes.
    pub fn current_edm_info(&self) -> Result<Option<CustomerSetInfo>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, length(payload), customers, manifest FROM customer_sets
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(CustomerSetInfo {
                        version: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        customers: r.get::<_, i64>(2)? as u64,
                        manifest: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// The policy bundle agents should run, if one was published.
    pub fn current_policy(&self) -> Result<Option<PublishedPolicy>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, issued_ms, published_ms, files, signed FROM policy_bundles
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(PublishedPolicy {
                        version: r.get(0)?,
                        issued_ms: r.get(1)?,
                        published_ms: r.get(2)?,
                        files: r.get::<_, i64>(3)? as u64,
                        signed: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Revokes a device from now on. Returns `false` when no such device exists; revoking
    /// twice keeps the first revocation time.
    /// Revokes a device (idempotent); the first revocation is audited in its transaction.
    pub fn revoke_device(
        &self,
        id: &str,
        now_ms: i64,
        actor: &crate::Actor,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let newly = tx.execute(
            "UPDATE devices SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if newly == 1 {
            audit_in(
                &tx,
                &AuditEntry::by(actor, now_ms, "device.revoke", id, String::new()),
            )?;
        }
        tx.commit()?;
        Ok(exists)
    }

    /// True when the device exists and is revoked.
    pub fn is_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let v: Option<Option<i64>> = self
            .conn
            .query_row("SELECT revoked_ms FROM devices WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(matches!(v, Some(Some(_))))
    }

    /// Highest committed sequence number for a device (0 when none).
    pub fn last_seq(&self, device_id: &str) -> Result<u64, StoreError> {
        let v: Option<i64> = self.conn.query_row(
            "SELECT MAX(seq) FROM events WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Stores a batch from `device` in one transaction; events already stored are skipped.
    /// Checks each event's link to its predecessor and raises an alert on a gap, an edited
    /// event, or a resent event whose content changed. Returns how many events were new.
    pub fn ingest(
        &mut self,
        device: &Device,
        events: &[SealedEvent],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        // IMMEDIATE: the write lock first, waiting on the busy timeout. A deferred
        // transaction that read before another connection (a forwarder, the API, a second
        // process) wrote would fail at its first write instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (first_seq, skew): (i64, Option<i64>) = tx.query_row(
            "SELECT first_seq, clock_skew_ms FROM devices WHERE id = ?1",
            [&device.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // From an offboarding's effective time on, any customer file the user touches is a
        // critical alert.
        // Between notice and that time the user is departing: their alerts rise in severity.
        let offboarding: Option<(i64, i64, i64)> = tx
            .query_row(
                "SELECT effective_ms, COALESCE(notice_ms, started_ms), raise_levels
                 FROM offboardings WHERE user = ?1 AND restored_ms IS NULL",
                [&device.user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let offboarded_at = offboarding.map(|(effective, _, _)| effective);
        let departing = |t: i64| -> u8 {
            match offboarding {
                Some((effective, notice, raise)) if t >= notice && t < effective => {
                    raise.clamp(0, 3) as u8
                }
                _ => 0,
            }
        };
        let mut sorted: Vec<&SealedEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.seq);
        let mut new = 0;
        // The device's chains: its own, then any stream opened for a spool that started over
        // or a second chain at the same sequence numbers.
        let mut streams: Vec<String> = vec![device.id.clone()];
        {
            let mut st = tx.prepare_cached(
                "SELECT stream FROM device_streams WHERE device_id = ?1 ORDER BY created_ms, stream",
            )?;
            for s in st.query_map([&device.id], |r| r.get::<_, String>(0))? {
                streams.push(s?);
            }
        }
        let mut last_stream: Option<String> = tx.query_row(
            "SELECT last_stream FROM devices WHERE id = ?1",
            [&device.id],
            |r| r.get(0),
        )?;
        for sealed in sorted {
            let seq = sealed.seq.min(i64::MAX as u64) as i64;
            let hash = sealed.hash();
            // Every channel alert of this event is high severity and about the device.
            let flag = |rule: &str, detail: &str| {
                upsert_alert(
                    &tx,
                    &system_hit(
                        &device.user,
                        &device.id,
                        rule,
                        Severity::High,
                        detail,
                        now_ms,
                        seq,
                    ),
                )
            };
            // Sent before and stored (on any chain): nothing to do.
            let mut known = false;
            for s in &streams {
                if stored_hash(&tx, s, seq)?
                    .flatten()
                    .is_some_and(|h| h == hash)
                {
                    known = true;
                    break;
                }
            }
            if known {
                continue;
            }
            // Which chain it continues: the one whose newest event it links to.
            let mut target: Option<String> = None;
            for s in &streams {
                let head: Option<(i64, Option<Vec<u8>>)> = tx
                    .query_row(
                        "SELECT seq, hash FROM events WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1",
                        [s],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((head_seq, Some(head_hash))) = head {
                    if head_seq + 1 == seq && head_hash == sealed.prev_hash {
                        target = Some(s.clone());
                        break;
                    }
                }
            }
            let mut opened = false;
            if target.is_none() && stored_hash(&tx, &device.id, seq)?.is_some() {
                // The device's own chain already holds other content at this number: a spool
                // that started over, or a second agent. Nothing is dropped: a new stream.
                let stream = format!("{}~{}", device.id, streams.len() + 1);
                let reset = seq == 1 && sealed.prev_hash == holdfast_shared::event::GENESIS;
                tx.execute(
                    "INSERT INTO device_streams (device_id, stream, kind, since_seq, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        device.id,
                        stream,
                        if reset { "reset" } else { "fork" },
                        seq,
                        now_ms
                    ],
                )?;
                let (rule, detail) = if reset {
                    (
                        system_rules::SPOOL_RESET,
                        format!("device {}: its spool started over (a new chain at seq 1); its events are kept as stream {stream}", device.id),
                    )
                } else {
                    (
                        system_rules::CHAIN_FORKED,
                        format!("device {}: two different events claim seq {seq} (a copied identity or a restored snapshot); both are kept, the second as stream {stream}", device.id),
                    )
                };
                flag(rule, &detail)?;
                streams.push(stream.clone());
                target = Some(stream);
                opened = true;
            }
            if let Some(t) = &target {
                if !opened && last_stream.as_deref().is_some_and(|l| l != t.as_str()) {
                    let detail = format!(
                        "device {}: two agents are sending as this device at once (chains {} and {t} both advance); the events of both are kept",
                        device.id,
                        last_stream.as_deref().unwrap_or_default()
                    );
                    upsert_alert(
                        &tx,
                        &system_hit(
                            &device.user,
                            &device.id,
                            system_rules::IDENTITY_CLONED,
                            Severity::Critical,
                            &detail,
                            now_ms,
                            seq,
                        ),
                    )?;
                }
            }
            let stream = target.unwrap_or_else(|| device.id.clone());
            if last_stream.as_deref() != Some(stream.as_str()) {
                tx.execute(
                    "UPDATE devices SET last_stream = ?2 WHERE id = ?1",
                    params![device.id, stream],
                )?;
                last_stream = Some(stream.clone());
            }
            let on_own_chain = stream == device.id;
            if on_own_chain && seq > first_seq {
                match stored_hash(&tx, &device.id, seq - 1)? {
                    Some(Some(h)) if h != sealed.prev_hash => flag(
                        system_rules::CHAIN_BROKEN,
                        &format!(
                            "event {seq} does not link to event {}: an event was edited on the device",
                            seq - 1
                        ),
                    )?,
                    Some(_) => {}
                    None => {
                        let below: Option<i64> = tx.query_row(
                            "SELECT MAX(seq) FROM events WHERE device_id = ?1 AND seq < ?2",
                            params![device.id, seq],
                            |r| r.get(0),
                        )?;
                        let from = below.map(|b| b + 1).unwrap_or(first_seq).max(first_seq);
                        flag(
                            system_rules::SEQUENCE_GAP,
                            &format!("events {from}..{} never arrived", seq - 1),
                        )?;
                    }
                }
            }
            let corrected = skew
                .map(|k| sealed.time_ms.saturating_sub(k))
                .unwrap_or(sealed.time_ms)
                .min(now_ms);
            let body = match EventBody::from_bytes(&sealed.body) {
                Ok(b) => Some(b),
                Err(e) => {
                    flag(
                        system_rules::UNDECODABLE,
                        &format!("event {seq} does not decode: {e}"),
                    )?;
                    None
                }
            };
            let (kind, file) = match &body {
                Some(EventBody::File(f)) => ("file", Some(f)),
                Some(EventBody::Notice(n)) => (n.kind.as_str(), None),
                None => ("undecodable", None),
            };
            let rules: Vec<&str> = file
                .map(|f| f.rules.iter().map(|r| r.id.as_str()).collect())
                .unwrap_or_default();
            let findings = file
                .and_then(|f| f.summary.as_ref())
                .map(|s| serde_json::to_string(&s.findings).unwrap_or_default());
            tx.execute(
                "INSERT INTO events (device_id, seq, user, time_ms, received_ms, kind, action, path, old_path,
                     size, sha256, records, findings, rules, body, hash, prev_hash, corrected_ms,
                     destination, origin, process)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                params![
                    stream,
                    seq,
                    device.user,
                    sealed.time_ms,
                    now_ms,
                    kind,
                    file.map(|f| f.action.as_str()),
                    file.map(|f| f.path.as_str()),
                    file.and_then(|f| f.old_path.as_deref()),
                    file.and_then(|f| f.size).map(|s| s as i64),
                    file.and_then(|f| f.sha256.as_deref()),
                    file.and_then(|f| f.summary.as_ref()).map(|s| s.records as i64),
                    findings,
                    serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
                    sealed.body,
                    hash.to_vec(),
                    sealed.prev_hash,
                    corrected,
                    file.and_then(|f| f.destination.as_ref())
                        .and_then(|d| serde_json::to_string(d).ok()),
                    file.and_then(|f| f.origin.as_ref())
                        .and_then(|o| serde_json::to_string(o).ok()),
                    file.and_then(|f| f.process.as_ref())
                        .and_then(|p| serde_json::to_string(p).ok()),
                ],
            )?;
            new += 1;
            if let Some(EventBody::Notice(n)) = &body {
                notice_alerts(&tx, device, n, corrected, now_ms, seq)?;
                if n.kind == "spool_dropped" {
                    let counts = n
                        .counts
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let d = format!(
                        "the agent's spool was full and it dropped {} events ({counts})",
                        n.count
                    );
                    let mut h = system_hit(
                        &device.user,
                        &device.id,
                        system_rules::SPOOL_OVERFLOW,
                        Severity::Medium,
                        &d,
                        now_ms,
                        seq,
                    );
                    h.records = n.count as i64;
                    h.time_ms = corrected;
                    upsert_alert(&tx, &h)?;
                }
            }
            let Some(f) = file else { continue };
            let records = f.summary.as_ref().map(|s| s.records).unwrap_or(0) as i64;
            if offboarded_at.is_some_and(|t| corrected >= t) && (records > 0 || !f.rules.is_empty())
            {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: system_rules::OFFBOARDED_ACCESS,
                        severity: Severity::Critical,
                        user: &device.user,
                        device_id: &device.id,
                        path: &f.path,
                        sha256: f.sha256.as_deref(),
                        records,
                        time_ms: corrected,
                        seq,
                        detail: "customer file touched after the user's offboarding took effect",
                    },
                )?;
            }
            let raise = departing(corrected);
            let bulk_detail = f
                .bulk
                .as_ref()
                .map(|b| bulk_read_detail(b, f.process.as_deref()));
            for m in &f.rules {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: &m.id,
                        severity: m.severity.raised(raise),
                        user: &device.user,
                        device_id: &device.id,
                        path: &f.path,
                        sha256: f.sha256.as_deref(),
                        records: f.summary.as_ref().map(|s| s.records).unwrap_or(0) as i64,
                        time_ms: corrected,
                        seq,
                        detail: bulk_detail.as_deref().unwrap_or(""),
                    },
                )?;
            }
            correlate::sequence(&tx, device, seq, f, corrected, &self.correlation)?;
            correlate::volume(&tx, device, seq, f, corrected, &self.correlation)?;
        }
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1",
            params![device.id, now_ms],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Sets how ingest correlates (collector.toml `[correlation]`).
    pub fn set_correlation(&mut self, c: correlate::Correlation) {
        self.correlation = c;
    }

    /// Alerts, most severe and newest first.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alert_page(&AlertFilter::default(), AlertOrder::Severity, None, limit)
    }

    /// Events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "1 ORDER BY received_ms DESC, id DESC LIMIT ?1",
            params![limit as i64],
        )
    }

    /// A user's events whose skew-corrected time is within `from_ms..=to_ms`, oldest first
    /// (at most `limit`).
    pub fn events_of_user(
        &self,
        user: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "user = ?1 AND COALESCE(corrected_ms, time_ms) BETWEEN ?2 AND ?3
             ORDER BY COALESCE(corrected_ms, time_ms), device_id, seq LIMIT ?4",
            params![user, from_ms, to_ms, limit as i64],
        )
    }

    fn events_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        events_where_in(&self.conn, clause, args)
    }
}

/// Stored events matching `clause` (after `WHERE`), on any connection or transaction.
fn events_where_in(
    conn: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT device_id, seq, user, time_ms, received_ms, kind, action, path, sha256, size, records, rules,
                    COALESCE(corrected_ms, time_ms), old_path, findings, id, destination, origin,
                    process, CASE WHEN kind NOT IN ('file', 'undecodable') OR (kind = 'file' AND sha256 IS NULL) THEN body END
             FROM events WHERE {clause}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            let rules: String = r.get(11)?;
            let findings: Option<String> = r.get(14)?;
            Ok(StoredEvent {
                destination: r
                    .get::<_, Option<String>>(16)?
                    .and_then(|d| serde_json::from_str(&d).ok()),
                origin: r
                    .get::<_, Option<String>>(17)?
                    .and_then(|o| serde_json::from_str(&o).ok()),
                process: r
                    .get::<_, Option<String>>(18)?
                    .and_then(|p| serde_json::from_str(&p).ok()),
                message: r.get::<_, Option<Vec<u8>>>(19)?.and_then(
                    |b| match EventBody::from_bytes(&b) {
                        Ok(EventBody::Notice(n)) => Some(n.message),
                        Ok(EventBody::File(f)) => f.error,
                        _ => None,
                    },
                ),
                id: r.get(15)?,
                old_path: r.get(13)?,
                findings: findings
                    .and_then(|f| serde_json::from_str(&f).ok())
                    .unwrap_or_default(),
                device_id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                user: r.get(2)?,
                time_ms: r.get(3)?,
                received_ms: r.get(4)?,
                corrected_ms: r.get(12)?,
                kind: r.get(5)?,
                action: r.get(6)?,
                path: r.get(7)?,
                sha256: r.get(8)?,
                size: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
                records: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
                rules: serde_json::from_str(&rules).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The stored hash of a device's event: `None` when there is no such event, `Some(None)`
/// for an event stored before hashes were kept.
fn stored_hash(
    tx: &Connection,
    device_id: &str,
    seq: i64,
) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT hash FROM events WHERE device_id = ?1 AND seq = ?2",
            params![device_id, seq],
            |r| r.get(0),
        )
        .optional()?)
}

/// What a bulk-read alert says: who opened how many customer files, where, how fast.
fn bulk_read_detail(
    b: &holdfast_shared::event::BulkRead,
    p: Option<&holdfast_shared::event::Process>,
) -> String {
    let who = match p {
        // The inotify fallback: the platform said a file was opened, not by whom.
        Some(p) if p.pid == 0 && p.exe.is_none() => format!(
            "a program of {} (which one is unknown: the device monitors reads without fanotify)",
            p.user.as_deref().unwrap_or("the device's user")
        ),
        Some(p) => {
            let exe = p.exe.as_deref().unwrap_or("an unknown program");
            let uid = p.uid.map(|u| format!(", uid {u}")).unwrap_or_default();
            let user = p
                .user
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            format!("{exe} (pid {}{uid}{user})", p.pid)
        }
        None => "the device's user".to_string(),
    };
    format!(
        "{who} opened {} customer files under {} within {} (counted by {})",
        b.files,
        b.folder,
        span(b.within_s.saturating_mul(1000).min(i64::MAX as u64) as i64),
        b.by
    )
}

/// A system alert about a device (no file path).
/// What the agent's stop and gap notices raise, and the device's record of them.
fn notice_alerts(
    tx: &Connection,
    device: &Device,
    n: &holdfast_shared::event::AgentNotice,
    corrected_ms: i64,
    now_ms: i64,
    seq: i64,
) -> Result<(), StoreError> {
    let (column, rule, severity, records) = match n.kind.as_str() {
        // Revocation is the only stop the collector orders, and a revoked agent cannot
        // report: every stop that arrives here was not ordered.
        holdfast_shared::event::notice::AGENT_STOPPED => (
            "last_stop",
            system_rules::AGENT_STOPPED,
            Severity::Medium,
            0,
        ),
        holdfast_shared::event::notice::AGENT_GAP => {
            let customer = n.counts.get("customer_files").copied().unwrap_or(0);
            (
                "last_gap",
                if customer > 0 {
                    system_rules::COVERAGE_GAP
                } else {
                    ""
                },
                Severity::High,
                customer,
            )
        }
        _ => return Ok(()),
    };
    tx.execute(
        &format!("UPDATE devices SET {column} = ?2 WHERE id = ?1"),
        params![device.id, n.message],
    )?;
    if rule.is_empty() {
        return Ok(());
    }
    let mut h = system_hit(
        &device.user,
        &device.id,
        rule,
        severity,
        &n.message,
        now_ms,
        seq,
    );
    h.records = i64::try_from(records).unwrap_or(i64::MAX);
    h.time_ms = corrected_ms;
    upsert_alert(tx, &h)
}

fn system_hit<'a>(
    user: &'a str,
    device_id: &'a str,
    rule_id: &'a str,
    severity: Severity,
    detail: &'a str,
    time_ms: i64,
    seq: i64,
) -> Hit<'a> {
    Hit {
        rule_id,
        severity,
        user,
        device_id,
        path: "",
        sha256: None,
        records: 0,
        time_ms,
        seq,
        detail,
    }
}

/// Raises an alert, or folds the hit into the open alert for the same rule, device and path
/// (more events, latest details, the higher severity).
fn upsert_alert(tx: &Connection, h: &Hit<'_>) -> Result<(), StoreError> {
    let updated = tx.execute(
        "UPDATE alerts SET last_seen_ms = MAX(last_seen_ms, ?5), event_count = event_count + 1,
             records = ?6, sha256 = ?7, last_event_seq = ?8,
             severity = CASE WHEN ?9 > severity_rank THEN ?4 ELSE severity END,
             severity_rank = MAX(severity_rank, ?9),
             detail = CASE WHEN ?10 = '' THEN detail ELSE ?10 END
         WHERE rule_id = ?1 AND device_id = ?2 AND path = ?3 AND status IN ('new', 'triaged')",
        params![
            h.rule_id,
            h.device_id,
            h.path,
            h.severity.as_str(),
            h.time_ms,
            h.records,
            h.sha256,
            h.seq,
            severity_rank(h.severity),
            h.detail
        ],
    )?;
    if updated == 0 {
        tx.execute(
            "INSERT INTO alerts (rule_id, severity, user, device_id, path, sha256, records, event_count,
                 first_seen_ms, last_seen_ms, last_event_seq, detail, severity_rank)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8, ?9, ?10, ?11)",
            params![h.rule_id, h.severity.as_str(), h.user, h.device_id, h.path, h.sha256, h.records, h.time_ms, h.seq, h.detail, severity_rank(h.severity)],
        )?;
    }
    Ok(())
}

/// A duration in words, to the second ("2h 0m 3s").
fn span(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

/// The rank of a stored severity name (unknown names rank lowest).
fn severity_rank_of(s: &str) -> i64 {
    Severity::parse(s).map(severity_rank).unwrap_or(0)
}

fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_shared::event::{
        Action, AgentNotice, ContentSummary, FileActivity, RuleMatch, GENESIS,
    };

    fn device() -> Device {
        Device {
            id: "dev-1".into(),
            user: "ada".into(),
            hostname: "h".into(),
            os: "linux".into(),
            agent_version: "0".into(),
            cert_sha256: "ff".into(),
            cert_serial: "01".into(),
            cert_issued_ms: 0,
            cert_expires_ms: 90,
            enrolled_ms: 1,
            last_seen_ms: None,
            revoked_ms: None,
            last_seq: 0,
            spool_backlog: None,
            first_seq: 1,
            policy_version: String::new(),
            clock_skew_ms: None,
            offline_since_ms: None,
            ..Default::default()
        }
    }

    fn file_body(path: &str, rules: &[(&str, Severity)]) -> EventBody {
        EventBody::File(FileActivity {
            action: Action::Created,
            path: path.into(),
            old_path: None,
            size: Some(10),
            sha256: Some("ab".repeat(32)),
            summary: Some(ContentSummary {
                file_type: "csv".into(),
                records: 200,
                ..Default::default()
            }),
            error: None,
            destination: None,
            origin: None,
            process: None,
            bulk: None,
            rules: rules
                .iter()
                .map(|(id, s)| RuleMatch {
                    id: (*id).into(),
                    severity: *s,
                })
                .collect(),
        })
    }

    /// A correctly chained run of events, seq 1..=n, as an agent would send them.
    fn chain(bodies: &[EventBody]) -> Vec<SealedEvent> {
        let mut prev = GENESIS;
        let mut out = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            let seq = i as u64 + 1;
            let e = SealedEvent::seal(seq, seq as i64 * 1000, "ada", prev, b).unwrap();
            prev = e.hash();
            out.push(e);
        }
        out
    }

    fn open_with_device() -> (tempfile::TempDir, Store, Device) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        let d = device();
        s.add_device(&d).unwrap();
        (dir, s, d)
    }

    fn system_alerts(s: &Store) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = s
            .alerts(100)
            .unwrap()
            .into_iter()
            .filter(|a| a.rule_id.starts_with("holdfast."))
            .map(|a| (a.rule_id, a.detail))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        s.add_token("h1", "ada", 0, 100, &crate::Actor::test())
            .unwrap();
        s.add_token("h2", "bob", 0, 100, &crate::Actor::test())
            .unwrap();
        assert_eq!(s.redeem_token("h1", "d1", 50).unwrap(), Ok("ada".into()));
        assert_eq!(
            s.redeem_token("h1", "d2", 51).unwrap(),
            Err(TokenRefusal::Used)
        );
        assert_eq!(
            s.redeem_token("h2", "d3", 100).unwrap(),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            s.redeem_token("nope", "d4", 1).unwrap(),
            Err(TokenRefusal::Unknown)
        );
    }

    /// A user who handles ten times their own daily average of customer records in a day
    /// raises one volume alert; a user with less than a week of history is not judged.
    #[test]
    fn a_day_ten_times_the_users_own_average_is_a_volume_spike() {
        let (_dir, mut s, d) = open_with_device();
        const DAY: i64 = 86_400_000;
        let t0 = 1_700_000_000_000i64;
        // One 200-record export a day for 20 days, then eleven in one morning.
        let mut times: Vec<i64> = (0..20).map(|day| t0 + day * DAY).collect();
        times.extend((0..11).map(|i| t0 + 21 * DAY + i * 60_000));
        let mut prev = GENESIS;
        let mut batch = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let body = file_body(&format!("/exports/{i}.csv"), &[("r", Severity::Low)]);
            let e = SealedEvent::seal(i as u64 + 1, *t, "ada", prev, &body).unwrap();
            prev = e.hash();
            batch.push(e);
        }
        // Before the eleven, nothing; after them, one alert with the day's total.
        s.ingest(&d, &batch[..20], t0 + 20 * DAY).unwrap();
        let spikes = |s: &Store| -> Vec<Alert> {
            s.alerts(100)
                .unwrap()
                .into_iter()
                .filter(|a| a.rule_id == system_rules::VOLUME_SPIKE)
                .collect()
        };
        assert!(spikes(&s).is_empty());
        s.ingest(&d, &batch[20..], t0 + 22 * DAY).unwrap();
        let v = spikes(&s);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].records, 2200);
        assert_eq!(v[0].severity, "high");
        assert!(
            v[0].detail
                .starts_with("2200 customer records handled in the 24 hours to")
                && v[0]
                    .detail
                    .contains("12× the daily average of the 20 days before (190)"),
            "{}",
            v[0].detail
        );
        // The user's risk shows it.
        let risk = crate::risk::users(&s, t0 + 22 * DAY).unwrap();
        let ada = risk.iter().find(|u| u.user == "ada").unwrap();
        assert!(ada.score >= 30, "{ada:?}");
        assert!(
            ada.signals.iter().any(|s| s
                .starts_with("1 volume spike(s) against their own 30-day baseline (up to 2200")),
            "{ada:?}"
        );

        // The same morning for a user seen only three days: not judged.
        let (_dir2, mut s2, d2) = open_with_device();
        let mut prev = GENESIS;
        let mut batch = Vec::new();
        let times: Vec<i64> = (0..3)
            .map(|day| t0 + day * DAY)
            .chain((0..11).map(|i| t0 + 4 * DAY + i * 60_000))
            .collect();
        for (i, t) in times.iter().enumerate() {
            let body = file_body(&format!("/exports/{i}.csv"), &[("r", Severity::Low)]);
            let e = SealedEvent::seal(i as u64 + 1, *t, "ada", prev, &body).unwrap();
            prev = e.hash();
            batch.push(e);
        }
        s2.ingest(&d2, &batch, t0 + 5 * DAY).unwrap();
        assert!(spikes(&s2).is_empty());
    }

    #[test]
    fn ingest_is_idempotent_and_aggregates_alerts() {
        let (_dir, mut s, d) = open_with_device();
        let batch = chain(&[
            file_body("/x.csv", &[("r", Severity::High)]),
            file_body("/y.csv", &[]),
            file_body("/x.csv", &[("r", Severity::Critical)]),
        ]);
        assert_eq!(s.ingest(&d, &batch, 5_000).unwrap(), 3);
        assert_eq!(s.ingest(&d, &batch, 6_000).unwrap(), 0);
        assert_eq!(s.events(100).unwrap().len(), 3);
        assert_eq!(s.last_seq("dev-1").unwrap(), 3);
        let alerts = s.alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].event_count, alerts[0].severity.as_str()),
            (2, "critical")
        );
        assert!(system_alerts(&s).is_empty());
        assert_eq!(s.device_by_cert("ff").unwrap().map(|d| d.last_seq), Some(3));
        assert!(!s.is_revoked("dev-1").unwrap());
        assert!(s.revoke_device("dev-1", 10, &crate::Actor::test()).unwrap());
        assert!(s.revoke_device("dev-1", 20, &crate::Actor::test()).unwrap());
        assert!(s.is_revoked("dev-1").unwrap());
        assert_eq!(
            s.device_by_cert("ff").unwrap().and_then(|d| d.revoked_ms),
            Some(10)
        );
        assert!(!s.revoke_device("nope", 10, &crate::Actor::test()).unwrap());
    }

    #[test]
    fn departing_users_alerts_rise_and_access_after_offboarding_is_critical() {
        let (_dir, mut s, d) = open_with_device();
        s.start_offboarding(
            &OffboardRow {
                user: "ada".into(),
                started_ms: 1_500,
                effective_ms: 2_500,
                lookback_ms: 1_000,
                reason: String::new(),
                restored_ms: None,
                notice_ms: 1_500,
                raise_levels: 1,
            },
            &[],
            &[],
            &offboard::AuditEntry {
                id: 0,
                time_ms: 1_500,
                actor: "t".into(),
                origin: "t".into(),
                action: "offboard".into(),
                target: "ada".into(),
                detail: String::new(),
            },
        )
        .unwrap();
        // Events at 1 s (before notice), 2 s (departing), 3 s (after the effective time).
        let batch = chain(&[
            file_body("/a.csv", &[("r", Severity::High)]),
            file_body("/b.csv", &[("r", Severity::High)]),
            file_body("/c.csv", &[("r", Severity::Medium)]),
        ]);
        s.ingest(&d, &batch, 10_000).unwrap();
        let mut got: Vec<(String, String, String)> = s
            .alerts(10)
            .unwrap()
            .into_iter()
            .map(|a| (a.path, a.rule_id, a.severity))
            .collect();
        got.sort();
        let want: Vec<(String, String, String)> = [
            ("/a.csv", "r", "high"),
            ("/b.csv", "r", "critical"),
            ("/c.csv", "holdfast.offboarded_access", "critical"),
            ("/c.csv", "r", "medium"),
        ]
        .iter()
        .map(|(p, r, sev)| (p.to_string(), r.to_string(), sev.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    /// One `check()` for the chain: ingest `batches` in order, compare the system alerts.
    fn check_chain(batches: Vec<Vec<SealedEvent>>, want: &[(&str, &str)]) {
        let (_dir, mut s, d) = open_with_device();
        for b in batches {
            s.ingest(&d, &b, 10_000).unwrap();
        }
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(system_alerts(&s), want);
    }

    #[test]
    fn the_chain_catches_gaps_edits_and_changed_resends() {
        let bodies: Vec<EventBody> = (0..6).map(|i| file_body(&format!("/f{i}"), &[])).collect();
        let good = chain(&bodies);
        // Intact, in any batching: nothing.
        check_chain(vec![good[..2].to_vec(), good[2..].to_vec()], &[]);
        // Rows 3 and 4 deleted from the spool.
        let mut gap = good.clone();
        gap.drain(2..4);
        check_chain(
            vec![gap],
            &[(system_rules::SEQUENCE_GAP, "events 3..4 never arrived")],
        );
        // Row 3's body edited on the device: event 4 no longer links.
        let mut edited = good.clone();
        edited[2].body = file_body("/innocent.txt", &[]).to_bytes().unwrap();
        check_chain(
            vec![edited],
            &[(
                system_rules::CHAIN_BROKEN,
                "event 4 does not link to event 3: an event was edited on the device",
            )],
        );
        // Event 2 sent again after its ack with other content: a second chain (a restored
        // snapshot, a copied identity), kept beside the first.
        let mut changed = good[..2].to_vec();
        changed[1].time_ms += 1;
        check_chain(
            vec![good.clone(), changed],
            &[(
                system_rules::CHAIN_FORKED,
                "device dev-1: two different events claim seq 2 (a copied identity or a restored snapshot); both are kept, the second as stream dev-1~2",
            )],
        );
        // Junk body: stored as undecodable and flagged.
        let mut junk = good[..1].to_vec();
        junk[0].body = vec![0xc1];
        check_chain(
            vec![junk],
            &[(
                system_rules::UNDECODABLE,
                "event 1 does not decode: event body: wrong msgpack marker Reserved",
            )],
        );
    }

    #[test]
    fn a_spool_that_starts_over_and_a_second_agent_lose_nothing() {
        let (_dir, mut s, d) = open_with_device();
        let first = chain(
            &(0..4)
                .map(|i| file_body(&format!("/a{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        s.ingest(&d, &first, 10_000).unwrap();
        // The spool started over: seq 1 again, a new chain. Kept as a new stream.
        let again = chain(
            &(0..3)
                .map(|i| file_body(&format!("/b{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        assert_eq!(s.ingest(&d, &again, 10_001).unwrap(), 3);
        // Resending either changes nothing.
        assert_eq!(s.ingest(&d, &again, 10_002).unwrap(), 0);
        assert_eq!(s.ingest(&d, &first, 10_003).unwrap(), 0);
        let paths: std::collections::BTreeSet<String> = s
            .events(100)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.path)
            .collect();
        assert_eq!(paths.len(), 7, "{paths:?}");
        let alerts = system_alerts(&s);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, system_rules::SPOOL_RESET);
        // Both chains then advance: two agents on one identity.
        let mut more_first = chain(
            &(0..5)
                .map(|i| file_body(&format!("/a{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        let a5 = more_first.pop().unwrap();
        let mut more_again = chain(
            &(0..4)
                .map(|i| file_body(&format!("/b{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        let b4 = more_again.pop().unwrap();
        assert_eq!(s.ingest(&d, &[a5], 10_004).unwrap(), 1);
        assert_eq!(s.ingest(&d, &[b4], 10_005).unwrap(), 1);
        let alerts = system_alerts(&s);
        let cloned: Vec<&(String, String)> = alerts
            .iter()
            .filter(|(r, _)| r == system_rules::IDENTITY_CLONED)
            .collect();
        assert_eq!(cloned.len(), 1, "{alerts:?}");
        assert!(
            cloned[0]
                .1
                .contains("two agents are sending as this device"),
            "{cloned:?}"
        );
        assert_eq!(s.events(100).unwrap().len(), 9);
    }

    #[test]
    fn drop_reports_raise_an_overflow_alert_with_the_counts() {
        let (_dir, mut s, d) = open_with_device();
        let report = EventBody::Notice(AgentNotice {
            kind: "spool_dropped".into(),
            message: "m".into(),
            count: 72,
            counts: [
                ("created/none".to_string(), 70),
                ("created/high".to_string(), 2),
            ]
            .into_iter()
            .collect(),
        });
        s.ingest(&d, &chain(&[report]), 10).unwrap();
        let a = s.alerts(10).unwrap();
        assert_eq!(a[0].rule_id, system_rules::SPOOL_OVERFLOW);
        assert_eq!(a[0].records, 72);
        assert_eq!(
            a[0].detail,
            "the agent's spool was full and it dropped 72 events (created/high=2, created/none=70)"
        );
    }

    /// Pieces of the customer set come from the stored bytes at their offsets, never longer
    /// than the set's piece, for the current version only; its manifest is offered with it.
    #[test]
    fn customer_set_pieces_are_read_at_their_offsets() {
        let (_dir, s, _d) = open_with_device();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let set = |version, payload| NewCustomerSet {
            version,
            customers: 3,
            piece: 4096,
            manifest: b"signed manifest",
            payload,
        };
        s.publish_edm(&set("v1", &bytes), 1, &crate::Actor::cli())
            .unwrap();
        for (offset, max, want) in [
            (0u64, 1 << 20, 0..4096),
            (4096, 4096, 4096..8192),
            (8192, 1 << 20, 8192..10_000),
            (9999, 10, 9999..10_000),
            (20_000, 10, 10_000..10_000),
            (100, 10, 100..110),
        ] {
            let (total, got) = s.edm_chunk("v1", offset, max).unwrap().unwrap();
            assert_eq!(total, 10_000);
            assert_eq!(got, bytes[want], "offset {offset}");
        }
        assert_eq!(
            s.edm_chunk("v0", 0, 10).unwrap(),
            None,
            "not the current set"
        );
        let info = s.current_edm_info().unwrap().unwrap();
        assert_eq!(
            (info.version.as_str(), info.size, info.customers),
            ("v1", 10_000, 3)
        );
        assert_eq!(info.manifest, b"signed manifest");
        s.publish_edm(&set("v2", b"new"), 2, &crate::Actor::cli())
            .unwrap();
        assert_eq!(s.edm_chunk("v1", 0, 10).unwrap(), None, "replaced");
        assert_eq!(
            s.edm_chunk("v2", 0, 10).unwrap(),
            Some((3, b"new".to_vec()))
        );
        assert_eq!(s.legacy_edm_sets().unwrap(), 0);
    }

    /// A stop notice raises `agent_stopped`; a gap notice raises `coverage_gap` only when
    /// customer files changed meanwhile; the device keeps the last of each.
    #[test]
    fn stop_and_gap_notices_raise_alerts_and_show_on_the_device() {
        let notice = |kind: &str, message: &str, customer: u64| {
            EventBody::Notice(AgentNotice {
                kind: kind.into(),
                message: message.into(),
                count: 3,
                counts: [("customer_files".to_string(), customer)]
                    .into_iter()
                    .collect(),
            })
        };
        use holdfast_shared::event::notice::{AGENT_GAP, AGENT_STOPPED};
        for (events, want) in [
            (vec![notice(AGENT_GAP, "gap with nothing", 0)], vec![]),
            (
                vec![notice(AGENT_STOPPED, "SIGTERM from pid 9", 0)],
                vec![(system_rules::AGENT_STOPPED, 0)],
            ),
            (
                vec![
                    notice(AGENT_STOPPED, "SIGTERM from pid 9", 0),
                    notice(AGENT_GAP, "gap with two customer files", 2),
                ],
                vec![
                    (system_rules::COVERAGE_GAP, 2),
                    (system_rules::AGENT_STOPPED, 0),
                ],
            ),
        ] {
            let (_dir, mut s, d) = open_with_device();
            s.ingest(&d, &chain(&events), 10).unwrap();
            let mut got: Vec<(String, u64)> = s
                .alerts(10)
                .unwrap()
                .into_iter()
                .map(|a| (a.rule_id, a.records))
                .collect();
            got.sort();
            let mut want: Vec<(String, u64)> =
                want.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
            want.sort();
            assert_eq!(got, want);
            let dev = s.devices().unwrap().remove(0);
            let last = |kind: &str| {
                events.iter().rev().find_map(|e| match e {
                    EventBody::Notice(n) if n.kind == kind => Some(n.message.clone()),
                    _ => None,
                })
            };
            assert_eq!(dev.last_gap, last(AGENT_GAP));
            assert_eq!(dev.last_stop, last(AGENT_STOPPED));
        }
    }

    fn beat(skew_ms: i64) -> Beat {
        Beat {
            agent_version: "9".into(),
            hostname: "laptop".into(),
            os: "linux".into(),
            policy_version: "pv".into(),
            edm_version: String::new(),
            skew_ms,
            backlog: 4,
            coverage: Some(holdfast_shared::event::Coverage {
                watched_roots: 1,
                files: 12,
                ..Default::default()
            }),
            health: Vec::new(),
        }
    }

    /// A heartbeat naming failing stages shows the device degraded and raises one alert;
    /// a healthy one shows it ok and notes the recovery on that alert.
    #[test]
    fn degraded_heartbeats_alert_once_and_recovery_is_noted() {
        let (_dir, mut s, d) = open_with_device();
        let degraded = Beat {
            health: vec!["pipeline: spool database: disk I/O error".into()],
            ..beat(0)
        };
        for (t, b) in [(10, &degraded), (20, &degraded)] {
            s.heartbeat(&d, b, t, 60_000).unwrap();
        }
        let dev = s.devices().unwrap().remove(0);
        assert_eq!(
            dev.health,
            "degraded: pipeline: spool database: disk I/O error"
        );
        let alerts = s.alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule_id, system_rules::AGENT_DEGRADED);
        s.heartbeat(&d, &beat(0), 30, 60_000).unwrap();
        assert_eq!(s.devices().unwrap()[0].health, "ok");
        let a = s.alerts(10).unwrap().remove(0);
        assert!(a.detail.contains("; recovered at"), "{}", a.detail);
    }

    #[test]
    fn heartbeats_skew_offline_and_return() {
        let (_dir, mut s, d) = open_with_device();
        let hour = 3_600_000;
        assert_eq!(
            s.heartbeat(&d, &beat(1_000), 10 * hour, 300_000).unwrap(),
            0
        );
        let row = s.device_by_cert("ff").unwrap().unwrap();
        assert_eq!(
            (
                row.agent_version.as_str(),
                row.hostname.as_str(),
                row.policy_version.as_str(),
                row.clock_skew_ms,
                row.spool_backlog
            ),
            ("9", "laptop", "pv", Some(1_000), Some(4))
        );
        assert_eq!(
            row.coverage.map(|c| (c.watched_roots, c.files)),
            Some((1, 12))
        );
        assert!(system_alerts(&s).is_empty());
        // Two hours ahead: flagged once, not on every heartbeat.
        s.heartbeat(&d, &beat(2 * hour), 10 * hour, 300_000)
            .unwrap();
        s.heartbeat(&d, &beat(2 * hour), 10 * hour + 1, 300_000)
            .unwrap();
        let skew: Vec<_> = s
            .alerts(10)
            .unwrap()
            .into_iter()
            .filter(|a| a.rule_id == system_rules::CLOCK_SKEW)
            .collect();
        assert_eq!((skew.len(), skew[0].event_count), (1, 1));
        assert_eq!(
            skew[0].detail,
            "device clock is 2h ahead of the collector's"
        );
        // Events from the skewed device are placed at collector time, never in the future.
        s.ingest(&d, &chain(&[file_body("/a", &[])]), 10 * hour)
            .unwrap();
        let e = &s.events(1).unwrap()[0];
        assert_eq!((e.time_ms, e.corrected_ms), (1000, 1000 - 2 * hour));
        // Silent for longer than 10 minutes: flagged once; a heartbeat notes the return.
        let minute = 60_000;
        assert!(s
            .sweep_offline(10 * hour + 5 * minute, 10 * minute)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.sweep_offline(10 * hour + 11 * minute, 10 * minute)
                .unwrap(),
            ["dev-1"]
        );
        assert!(s
            .sweep_offline(10 * hour + 20 * minute, 10 * minute)
            .unwrap()
            .is_empty());
        s.heartbeat(&d, &beat(0), 11 * hour, 300_000).unwrap();
        let off: Vec<_> = s
            .alerts(10)
            .unwrap()
            .into_iter()
            .filter(|a| a.rule_id == system_rules::AGENT_OFFLINE)
            .collect();
        assert_eq!(off.len(), 1);
        assert!(off[0].detail.starts_with("silent since 1970-01-01T10:00:00Z (more than 10m); back at 1970-01-01T11:00:00Z after 1h"), "{}", off[0].detail);
        assert_eq!(
            s.device_by_cert("ff").unwrap().unwrap().offline_since_ms,
            None
        );
    }

    #[test]
    fn renewal_keeps_the_previous_certificate_usable() {
        let (_dir, s, _d) = open_with_device();
        s.renew_cert("dev-1", "ee", "02", 50, 150).unwrap();
        let by_new = s.device_by_cert("ee").unwrap().unwrap();
        assert_eq!(
            (
                by_new.cert_serial.as_str(),
                by_new.cert_issued_ms,
                by_new.cert_expires_ms
            ),
            ("02", 50, 150)
        );
        assert_eq!(
            s.device_by_cert("ff").unwrap().map(|d| d.id),
            Some("dev-1".into())
        );
        s.renew_cert("dev-1", "dd", "03", 100, 200).unwrap();
        assert!(s.device_by_cert("ff").unwrap().is_none());
    }

    #[test]
    fn publishing_the_same_policy_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        assert!(s.current_policy().unwrap().is_none());
        let p = PublishedPolicy {
            version: "v1".into(),
            issued_ms: 1,
            published_ms: 1,
            files: 2,
            signed: vec![1, 2, 3],
        };
        assert!(s.publish_policy(&p, &crate::Actor::test()).unwrap());
        assert!(!s.publish_policy(&p, &crate::Actor::test()).unwrap());
        let v2 = PublishedPolicy {
            version: "v2".into(),
            ..p.clone()
        };
        assert!(s.publish_policy(&v2, &crate::Actor::test()).unwrap());
        assert_eq!(
            s.current_policy().unwrap().map(|c| c.version),
            Some("v2".into())
        );
    }
}
