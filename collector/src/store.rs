//! Storage: the only module that writes SQL. One SQLite file (WAL) holds tokens, devices,
//! events and alerts. Ingest is idempotent on `(device_id, seq)` and one batch is one
//! transaction, so an acknowledged batch is durable and a resent one changes nothing.

use holdfast_shared::event::{Event, EventBody, Severity};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

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

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub user: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub cert_sha256: String,
    pub cert_serial: String,
    pub enrolled_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub last_seq: u64,
    pub spool_backlog: Option<u64>,
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// A stored event as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub device_id: String,
    pub seq: u64,
    pub user: String,
    pub time_ms: i64,
    pub received_ms: i64,
    pub kind: String,
    pub action: Option<String>,
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub records: Option<u64>,
    pub rules: Vec<String>,
}

/// One connection to the collector database.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
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
    spool_backlog INTEGER
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
    last_event_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (rule_id, device_id, path, status);
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Records a new enrollment token (only the secret's hash is stored).
    pub fn add_token(
        &self,
        secret_sha256: &str,
        user: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tokens (secret_sha256, user, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![secret_sha256, user, now_ms, expires_ms],
        )?;
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
            "INSERT INTO devices (id, user, hostname, os, agent_version, cert_sha256, cert_serial, enrolled_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![d.id, d.user, d.hostname, d.os, d.agent_version, d.cert_sha256, d.cert_serial, d.enrolled_ms],
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
        })
    }

    const DEVICE_COLUMNS: &'static str =
        "d.id, d.user, d.hostname, d.os, d.agent_version, d.cert_sha256, d.cert_serial,
        d.enrolled_ms, d.last_seen_ms, d.revoked_ms,
        (SELECT MAX(seq) FROM events e WHERE e.device_id = d.id), d.spool_backlog";

    /// The device holding the certificate with this SHA-256, if any.
    pub fn device_by_cert(&self, cert_sha256: &str) -> Result<Option<Device>, StoreError> {
        let sql = format!(
            "SELECT {} FROM devices d WHERE d.cert_sha256 = ?1",
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

    /// Marks a device as seen, with its reported backlog when known.
    pub fn touch_device(
        &self,
        id: &str,
        now_ms: i64,
        backlog: Option<u64>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET last_seen_ms = ?2, spool_backlog = COALESCE(?3, spool_backlog) WHERE id = ?1",
            params![id, now_ms, backlog.map(|b| b as i64)],
        )?;
        Ok(())
    }

    /// Revokes a device from now on. Returns `false` when no such device exists; revoking
    /// twice keeps the first revocation time.
    pub fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let exists = self.conn.execute(
            "UPDATE devices SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(exists == 1)
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
    /// Every event must belong to `device` (the caller checks). Returns how many were new.
    pub fn ingest(
        &mut self,
        device: &Device,
        events: &[Event],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut new = 0;
        for ev in events {
            let body = ev
                .body
                .to_bytes()
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            let (kind, file) = match &ev.body {
                EventBody::File(f) => ("file", Some(f)),
                EventBody::Notice(n) => (n.kind.as_str(), None),
            };
            let rules: Vec<&str> = file
                .map(|f| f.rules.iter().map(|r| r.id.as_str()).collect())
                .unwrap_or_default();
            let findings = file
                .and_then(|f| f.summary.as_ref())
                .map(|s| serde_json::to_string(&s.findings).unwrap_or_default());
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO events (device_id, seq, user, time_ms, received_ms, kind, action, path, old_path,
                     size, sha256, records, findings, rules, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    device.id,
                    ev.seq as i64,
                    device.user,
                    ev.time_ms,
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
                    body,
                ],
            )?;
            if inserted == 0 {
                continue;
            }
            new += 1;
            let Some(f) = file else { continue };
            for m in &f.rules {
                let records = f.summary.as_ref().map(|s| s.records).unwrap_or(0) as i64;
                let updated = tx.execute(
                    "UPDATE alerts SET last_seen_ms = MAX(last_seen_ms, ?5), event_count = event_count + 1,
                         records = ?6, sha256 = ?7, last_event_seq = ?8,
                         severity = CASE WHEN ?9 > (CASE severity WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END) THEN ?4 ELSE severity END
                     WHERE rule_id = ?1 AND device_id = ?2 AND path = ?3 AND status IN ('new', 'triaged')",
                    params![m.id, device.id, f.path, m.severity.as_str(), ev.time_ms, records, f.sha256, ev.seq as i64, severity_rank(m.severity)],
                )?;
                if updated == 0 {
                    tx.execute(
                        "INSERT INTO alerts (rule_id, severity, user, device_id, path, sha256, records, event_count,
                             first_seen_ms, last_seen_ms, last_event_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8, ?9)",
                        params![m.id, m.severity.as_str(), device.user, device.id, f.path, f.sha256, records, ev.time_ms, ev.seq as i64],
                    )?;
                }
            }
        }
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1",
            params![device.id, now_ms],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Alerts, most severe and newest first.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, rule_id, severity, status, user, device_id, path, sha256, records, event_count,
                    first_seen_ms, last_seen_ms
             FROM alerts
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
                      last_seen_ms DESC, id DESC
             LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Alert {
                id: r.get(0)?,
                rule_id: r.get(1)?,
                severity: r.get(2)?,
                status: r.get(3)?,
                user: r.get(4)?,
                device_id: r.get(5)?,
                path: r.get(6)?,
                sha256: r.get(7)?,
                records: r.get::<_, i64>(8)? as u64,
                event_count: r.get::<_, i64>(9)? as u64,
                first_seen_ms: r.get(10)?,
                last_seen_ms: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT device_id, seq, user, time_ms, received_ms, kind, action, path, sha256, size, records, rules
             FROM events ORDER BY received_ms DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            let rules: String = r.get(11)?;
            Ok(StoredEvent {
                device_id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                user: r.get(2)?,
                time_ms: r.get(3)?,
                received_ms: r.get(4)?,
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
    use holdfast_shared::event::{Action, ContentSummary, FileActivity, RuleMatch};

    fn device() -> Device {
        Device {
            id: "dev-1".into(),
            user: "ada".into(),
            hostname: "h".into(),
            os: "linux".into(),
            agent_version: "0".into(),
            cert_sha256: "ff".into(),
            cert_serial: "01".into(),
            enrolled_ms: 1,
            last_seen_ms: None,
            revoked_ms: None,
            last_seq: 0,
            spool_backlog: None,
        }
    }

    fn file_event(seq: u64, path: &str, rules: &[(&str, Severity)]) -> Event {
        Event {
            device_id: "dev-1".into(),
            user: "ada".into(),
            seq,
            time_ms: seq as i64 * 1000,
            body: EventBody::File(FileActivity {
                action: Action::Created,
                path: path.into(),
                old_path: None,
                size: Some(10),
                sha256: Some(format!("{seq:064}")),
                summary: Some(ContentSummary {
                    file_type: "csv".into(),
                    records: 200,
                    ..Default::default()
                }),
                error: None,
                rules: rules
                    .iter()
                    .map(|(id, s)| RuleMatch {
                        id: (*id).into(),
                        severity: *s,
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        s.add_token("h1", "ada", 0, 100).unwrap();
        s.add_token("h2", "bob", 0, 100).unwrap();
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

    #[test]
    fn ingest_is_idempotent_and_aggregates_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("c.db")).unwrap();
        let d = device();
        s.add_device(&d).unwrap();
        let batch = vec![
            file_event(1, "/x.csv", &[("r", Severity::High)]),
            file_event(2, "/y.csv", &[]),
            file_event(3, "/x.csv", &[("r", Severity::Critical)]),
        ];
        assert_eq!(s.ingest(&d, &batch, 5).unwrap(), 3);
        assert_eq!(s.ingest(&d, &batch, 6).unwrap(), 0);
        assert_eq!(s.events(100).unwrap().len(), 3);
        assert_eq!(s.last_seq("dev-1").unwrap(), 3);
        let alerts = s.alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].event_count, alerts[0].severity.as_str()),
            (2, "critical")
        );
        assert_eq!(s.device_by_cert("ff").unwrap().map(|d| d.last_seq), Some(3));
        assert!(!s.is_revoked("dev-1").unwrap());
        assert!(s.revoke_device("dev-1", 10).unwrap());
        assert!(s.revoke_device("dev-1", 20).unwrap());
        assert!(s.is_revoked("dev-1").unwrap());
        assert_eq!(
            s.device_by_cert("ff").unwrap().and_then(|d| d.revoked_ms),
            Some(10)
        );
        assert!(!s.revoke_device("nope", 10).unwrap());
    }
}
