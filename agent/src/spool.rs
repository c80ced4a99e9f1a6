//! The local spool: every event is written here (SQLite, WAL, synchronous=FULL) before it is
//! sent, and leaves only when the collector has acknowledged its commit. The only module
//! that touches the spool database.

use holdfast_shared::event::{AgentNotice, Event, EventBody};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// SQLite refused (disk full, corrupt file, locked beyond the busy timeout).
    #[error("spool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An event body could not be serialized.
    #[error("cannot encode event: {0}")]
    Encode(String),
}

/// One connection to the spool. Open one per thread: the pipeline writes, the uplink
/// reads and deletes.
pub struct Spool {
    conn: Connection,
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 time_ms INTEGER NOT NULL,
                 user TEXT NOT NULL,
                 body BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        Ok(Spool { conn })
    }

    /// Appends an event and returns its sequence number (monotonic, never reused).
    pub fn append(&self, time_ms: i64, user: &str, body: &EventBody) -> Result<u64, SpoolError> {
        let blob = body
            .to_bytes()
            .map_err(|e| SpoolError::Encode(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO spool (time_ms, user, body) VALUES (?1, ?2, ?3)",
            params![time_ms, user, blob],
        )?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// Up to `limit` unacknowledged events, oldest first. A row that no longer decodes is
    /// sent as a `spool_corrupt_row` notice in its place, never skipped.
    pub fn pending(&self, device_id: &str, limit: usize) -> Result<Vec<Event>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, time_ms, user, body FROM spool ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time_ms, user, blob) = row?;
            let body = EventBody::from_bytes(&blob).unwrap_or_else(|e| {
                EventBody::Notice(AgentNotice {
                    kind: "spool_corrupt_row".into(),
                    message: format!("spool row {seq} could not be decoded: {e}"),
                    count: 1,
                })
            });
            out.push(Event {
                device_id: device_id.to_string(),
                user,
                seq: seq as u64,
                time_ms,
                body,
            });
        }
        Ok(out)
    }

    /// Removes every event up to and including `through_seq`: the collector committed them.
    pub fn ack(&self, through_seq: u64) -> Result<usize, SpoolError> {
        Ok(self
            .conn
            .execute("DELETE FROM spool WHERE seq <= ?1", [through_seq as i64])?)
    }

    /// Events waiting to be acknowledged.
    pub fn backlog(&self) -> Result<u64, SpoolError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM spool", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// The highest sequence number ever assigned (0 when none).
    pub fn last_seq(&self) -> Result<u64, SpoolError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spool'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Stores a status value (last error, last contact) for `holdfast-agent status`.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), SpoolError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Reads a status value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, SpoolError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(n: u64) -> EventBody {
        EventBody::Notice(AgentNotice {
            kind: "t".into(),
            message: format!("n{n}"),
            count: n,
        })
    }

    #[test]
    fn append_pending_ack_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let s = Spool::open(&path).unwrap();
        for n in 1..=5 {
            assert_eq!(s.append(n as i64, "u", &notice(n)).unwrap(), n);
        }
        let p = s.pending("d", 3).unwrap();
        assert_eq!(p.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(p[1].body, notice(2));
        assert_eq!(s.ack(3).unwrap(), 3);
        drop(s);
        // A restart keeps the unacknowledged tail and never reuses a sequence number.
        let s = Spool::open(&path).unwrap();
        assert_eq!(s.backlog().unwrap(), 2);
        s.ack(5).unwrap();
        assert_eq!(s.backlog().unwrap(), 0);
        assert_eq!(s.append(9, "u", &notice(9)).unwrap(), 6);
        assert_eq!(s.last_seq().unwrap(), 6);
    }

    #[test]
    fn corrupt_row_becomes_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(&dir.path().join("spool.db")).unwrap();
        s.append(1, "u", &notice(1)).unwrap();
        s.conn
            .execute("UPDATE spool SET body = x'c1c1'", [])
            .unwrap();
        let p = s.pending("d", 10).unwrap();
        assert!(matches!(&p[0].body, EventBody::Notice(n) if n.kind == "spool_corrupt_row"));
    }

    #[test]
    fn meta_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(&dir.path().join("spool.db")).unwrap();
        assert_eq!(s.meta("k").unwrap(), None);
        s.set_meta("k", "a").unwrap();
        s.set_meta("k", "b").unwrap();
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("b"));
    }
}
