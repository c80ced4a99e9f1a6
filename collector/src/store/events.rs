//! Events as stored, and the queries over them (newest first, by user and time).

use super::{Store, StoreError};
use holdfast_shared::event::EventBody;
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A stored event as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StoredEvent {
    /// The collector's row id: the order events were stored in.
    pub id: i64,
    pub device_id: String,
    pub seq: u64,
    pub user: String,
    /// The device's timestamp, as sent.
    pub time_ms: UnixMs,
    /// The collector's clock when the event was stored.
    pub received_ms: UnixMs,
    /// Device time corrected by the device's measured clock skew (never after `received_ms`):
    /// what look-back windows use.
    pub corrected_ms: UnixMs,
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

impl Store {
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
        from_ms: UnixMs,
        to_ms: UnixMs,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "user = ?1 AND COALESCE(corrected_ms, time_ms) BETWEEN ?2 AND ?3
             ORDER BY COALESCE(corrected_ms, time_ms), device_id, seq LIMIT ?4",
            params![user, from_ms, to_ms, limit as i64],
        )
    }

    pub(super) fn events_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        events_where_in(&self.conn, clause, args)
    }
}

/// Stored events matching `clause` (after `WHERE`), on any connection or transaction.
pub(super) fn events_where_in(
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
            from_columns!(
                r,
                StoredEvent {
                    device_id,
                    seq,
                    user,
                    time_ms,
                    received_ms,
                    kind,
                    action,
                    path,
                    sha256,
                    size,
                    records,
                    rules: super::json_or_empty,
                    corrected_ms,
                    old_path,
                    findings: super::json_or_empty,
                    id,
                    destination: super::json_column,
                    origin: super::json_column,
                    process: super::json_column,
                    message: |b: Option<Vec<u8>>| match EventBody::from_bytes(&b?) {
                        Ok(EventBody::Notice(n)) => Some(n.message),
                        Ok(EventBody::File(f)) => f.error,
                        _ => None,
                    },
                }
            )
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The stored hash of a device's event: `None` when there is no such event, `Some(None)`
/// for an event stored before hashes were kept.
pub(super) fn stored_hash(
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
