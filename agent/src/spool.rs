//! The local spool: every event is sealed here (sequence number, hash chain) and written to
//! SQLite (WAL, synchronous=FULL) before it is sent, and leaves only when the collector has
//! acknowledged its commit. The only module that touches the spool database, which also keeps
//! the agent's status values and its lineage memory (first sightings of customer content).
//!
//! The spool is bounded in bytes. As it fills, low-value events are refused first (low and
//! rule-less events above 80 %, medium above 90 %, everything at 100 %), so high-severity
//! events and the agent's own notices keep their room. A refused event never gets a sequence
//! number, so the chain has no hole; what was refused is counted by kind and reported, exactly,
//! in one `spool_dropped` notice once the collector's acknowledgements have made room again.

use crate::lineage::Sighting;
use crate::tree::Stamp;
use holdfast_shared::event::{AgentNotice, EventBody, SealedEvent, Severity, GENESIS};
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;

/// The spool's file name inside the agent's data directory.
pub const SPOOL_FILE: &str = "spool.db";

/// Fixed per-row overhead counted against the bound, besides body and user.
const ROW_OVERHEAD: u64 = 64;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// SQLite refused (disk full, corrupt file, locked beyond the busy timeout).
    #[error("spool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An event body could not be serialized.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The chain state in the spool is not a 32-byte hash: the file was edited or damaged.
    #[error("spool chain state is damaged: {0}")]
    Chain(String),
}

/// What happened to an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Stored under this sequence number.
    Stored(u64),
    /// Refused because the spool is full for its severity; counted for the drop report.
    Dropped,
}

/// One connection to the spool. Open one per thread: the pipeline writes, the uplink
/// reads, deletes and (after freeing room) writes the drop report.
pub struct Spool {
    conn: Connection,
    max_bytes: u64,
    user: String,
}

/// The severity an event is kept by: its most severe rule; notices count as high.
fn retention(body: &EventBody) -> Option<Severity> {
    match body {
        EventBody::File(f) => f.rules.iter().map(|r| r.severity).max(),
        EventBody::Notice(_) => Some(Severity::High),
    }
}

/// The kind a dropped event is counted under, e.g. `created/low` or `modified/none`.
fn drop_kind(body: &EventBody) -> String {
    match body {
        EventBody::File(f) => format!(
            "{}/{}",
            f.action.as_str(),
            retention(body).map(|s| s.as_str()).unwrap_or("none")
        ),
        EventBody::Notice(n) => format!("notice/{}", n.kind),
    }
}

/// The share of the bound an event of this severity may fill, in percent.
fn fill_limit(sev: Option<Severity>) -> u64 {
    match sev {
        None | Some(Severity::Low) => 80,
        Some(Severity::Medium) => 90,
        Some(Severity::High) | Some(Severity::Critical) => 100,
    }
}

/// The persistent index as loaded: key → (stamp, content fingerprint).
pub type SavedIndex = HashMap<u64, (Stamp, u64)>;

/// Eight bytes of a SHA-256 in hex, for telling "same content as last reported" in memory
/// (0: none). The spool keeps the whole hash.
pub fn fingerprint(sha256: Option<&str>) -> u64 {
    sha256
        .and_then(|h| h.get(..16))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// One change to the persistent file index, applied with the events it goes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// The file at `path` (whose index key is `key`) is as `stamp` says, and its content was
    /// last reported with `sha256` (`None`: indexed, never read).
    Put {
        key: u64,
        path: std::path::PathBuf,
        stamp: Stamp,
        sha256: Option<String>,
    },
    /// Nothing is indexed under `key` any more.
    Remove { key: u64 },
}

fn apply_index(tx: &Connection, changes: &[IndexChange]) -> Result<(), SpoolError> {
    use std::os::unix::ffi::OsStrExt;
    let mut put = tx.prepare_cached(
        "INSERT INTO file_index (key, path, len, mtime_ns, ino, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(key) DO UPDATE SET path = excluded.path, len = excluded.len,
             mtime_ns = excluded.mtime_ns, ino = excluded.ino, sha256 = excluded.sha256",
    )?;
    let mut remove = tx.prepare_cached("DELETE FROM file_index WHERE key = ?1")?;
    for c in changes {
        match c {
            IndexChange::Put {
                key,
                path,
                stamp,
                sha256,
            } => {
                put.execute(params![
                    *key as i64,
                    path.as_os_str().as_bytes(),
                    stamp.len as i64,
                    stamp.mtime_ns,
                    stamp.ino as i64,
                    sha256,
                ])?;
            }
            IndexChange::Remove { key } => {
                remove.execute([*key as i64])?;
            }
        }
    }
    Ok(())
}

fn meta_get(tx: &Connection, key: &str) -> Result<Option<String>, SpoolError> {
    Ok(tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn meta_set(tx: &Connection, key: &str, value: &str) -> Result<(), SpoolError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn meta_u64(tx: &Connection, key: &str) -> Result<u64, SpoolError> {
    Ok(meta_get(tx, key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`, unbounded: for reading and acking.
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
                 prev_hash BLOB NOT NULL,
                 body BLOB NOT NULL,
                 size INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS lineage (
                 sha256 TEXT NOT NULL UNIQUE,
                 path TEXT NOT NULL,
                 time_ms INTEGER NOT NULL,
                 records INTEGER NOT NULL,
                 seq INTEGER
             );
             CREATE TABLE IF NOT EXISTS file_index (
                 key INTEGER PRIMARY KEY,
                 path BLOB NOT NULL,
                 len INTEGER NOT NULL,
                 mtime_ns INTEGER NOT NULL,
                 ino INTEGER NOT NULL,
                 sha256 TEXT
             );",
        )?;
        Ok(Spool {
            conn,
            max_bytes: u64::MAX,
            user: String::new(),
        })
    }

    /// Opens the spool for writing events of `user`, bounded to `max_bytes`.
    pub fn writer(path: &Path, max_bytes: u64, user: &str) -> Result<Spool, SpoolError> {
        let mut s = Spool::open(path)?;
        s.max_bytes = max_bytes;
        s.user = user.to_string();
        s.set_meta("max_bytes", &max_bytes.to_string())?;
        Ok(s)
    }

    fn immediate(&self) -> Result<Transaction<'_>, SpoolError> {
        // IMMEDIATE: pipeline and uplink both append; the chain head must not race.
        Ok(Transaction::new_unchecked(
            &self.conn,
            TransactionBehavior::Immediate,
        )?)
    }

    /// Appends one event; see [`Spool::append_all`].
    pub fn append(&self, time_ms: UnixMs, body: &EventBody) -> Result<Admit, SpoolError> {
        Ok(self.append_all(&[(time_ms, body.clone())])?[0])
    }

    /// Seals and stores events in one transaction (one fsync for the lot), or counts them
    /// as dropped when the spool is too full for their severity.
    pub fn append_all(&self, events: &[(UnixMs, EventBody)]) -> Result<Vec<Admit>, SpoolError> {
        self.seal(events, &[], &[])
    }

    /// Like [`Spool::append_all`], and applies `index` (what the described files left on
    /// disk) and `meta` (status values that go with these events) in the same transaction:
    /// after a crash the index says "reported" for exactly the files whose events were
    /// sealed, so a restart reports each file once.
    pub fn seal(
        &self,
        events: &[(UnixMs, EventBody)],
        index: &[IndexChange],
        meta: &[(&str, &str)],
    ) -> Result<Vec<Admit>, SpoolError> {
        let tx = self.immediate()?;
        let mut out = Vec::with_capacity(events.len());
        for (time_ms, body) in events {
            out.push(self.admit(&tx, *time_ms, body)?);
        }
        apply_index(&tx, index)?;
        for (k, v) in meta {
            meta_set(&tx, k, v)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// The persistent file index, or `None` when none was ever written (a first start):
    /// key → stamp of what was last reported or indexed, and the fingerprint of the content
    /// last reported.
    pub fn index_load(&self) -> Result<Option<SavedIndex>, SpoolError> {
        if meta_get(&self.conn, "index_ready")?.is_none() {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT key, len, mtime_ns, ino, sha256 FROM file_index")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                (
                    Stamp {
                        len: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        ino: r.get::<_, i64>(3)? as u64,
                    },
                    fingerprint(r.get::<_, Option<String>>(4)?.as_deref()),
                ),
            ))
        })?;
        Ok(Some(rows.collect::<Result<_, _>>()?))
    }

    /// Replaces the whole index with a baseline (the first start's walk), in one
    /// transaction, and marks the index as kept from now on.
    pub fn index_replace(&self, rows: &[IndexChange]) -> Result<(), SpoolError> {
        let tx = self.immediate()?;
        tx.execute("DELETE FROM file_index", [])?;
        apply_index(&tx, rows)?;
        meta_set(&tx, "index_ready", "1")?;
        tx.commit()?;
        Ok(())
    }

    /// The indexed paths whose key is not in `seen`, for finding what was deleted while the
    /// agent was not running. Streams the table: nothing but the answer is held.
    pub fn index_unseen(
        &self,
        seen: &std::collections::HashSet<u64>,
    ) -> Result<Vec<(u64, std::path::PathBuf)>, SpoolError> {
        use std::os::unix::ffi::OsStringExt;
        let mut stmt = self.conn.prepare("SELECT key, path FROM file_index")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let key = r.get::<_, i64>(0)? as u64;
            if !seen.contains(&key) {
                let path: Vec<u8> = r.get(1)?;
                out.push((key, std::ffi::OsString::from_vec(path).into()));
            }
        }
        Ok(out)
    }

    fn admit(
        &self,
        tx: &Connection,
        time_ms: UnixMs,
        body: &EventBody,
    ) -> Result<Admit, SpoolError> {
        let blob = body
            .to_bytes()
            .map_err(|e| SpoolError::Encode(e.to_string()))?;
        let size = blob.len() as u64 + self.user.len() as u64 + ROW_OVERHEAD;
        let used = meta_u64(tx, "bytes")?;
        let limit = self.max_bytes / 100 * fill_limit(retention(body));
        if used.saturating_add(size) > limit {
            let mut dropped = self.dropped_in(tx)?;
            *dropped.entry(drop_kind(body)).or_insert(0) += 1;
            let json =
                serde_json::to_string(&dropped).map_err(|e| SpoolError::Encode(e.to_string()))?;
            meta_set(tx, "dropped", &json)?;
            if meta_get(tx, "dropped_since_ms")?.is_none() {
                meta_set(tx, "dropped_since_ms", &time_ms.to_string())?;
            }
            return Ok(Admit::Dropped);
        }
        let prev = self.chain_head(tx)?;
        tx.execute(
            "INSERT INTO spool (time_ms, user, prev_hash, body, size) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![time_ms, self.user, prev.to_vec(), blob, size as i64],
        )?;
        let seq = tx.last_insert_rowid() as u64;
        let sealed = SealedEvent {
            seq,
            time_ms,
            user: self.user.clone(),
            prev_hash: prev.to_vec(),
            body: blob,
        };
        meta_set(tx, "chain_head", &hex::encode(sealed.hash()))?;
        meta_set(tx, "bytes", &(used + size).to_string())?;
        Ok(Admit::Stored(seq))
    }

    fn chain_head(&self, tx: &Connection) -> Result<[u8; 32], SpoolError> {
        match meta_get(tx, "chain_head")? {
            None => Ok(GENESIS),
            Some(h) => hex::decode(&h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(SpoolError::Chain(h)),
        }
    }

    fn dropped_in(&self, tx: &Connection) -> Result<BTreeMap<String, u64>, SpoolError> {
        Ok(meta_get(tx, "dropped")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default())
    }

    /// Writes the drop report when events were refused and acknowledgements made room again
    /// (below the lowest fill limit), so the report never displaces a kept event. Only `ack`
    /// calls it: appends never free room, and a report written while the spool is still full
    /// would split one episode into many.
    fn flush_drops(&self, tx: &Connection, now_ms: UnixMs) -> Result<(), SpoolError> {
        let dropped = self.dropped_in(tx)?;
        if dropped.is_empty() {
            return Ok(());
        }
        let used = meta_u64(tx, "bytes")?;
        if used >= self.max_bytes / 100 * fill_limit(None) {
            return Ok(());
        }
        let total: u64 = dropped.values().sum();
        let since = meta_get(tx, "dropped_since_ms")?.unwrap_or_default();
        let report = EventBody::Notice(AgentNotice {
            kind: "spool_dropped".into(),
            message: format!(
                "spool full ({} bytes): {total} events were not kept, from {since} ms to {now_ms} ms",
                self.max_bytes
            ),
            count: total,
            counts: dropped,
        });
        tx.execute(
            "DELETE FROM meta WHERE key IN ('dropped', 'dropped_since_ms')",
            [],
        )?;
        // The report is a notice (kept up to 100 %) and there is room: it is stored.
        self.admit(tx, now_ms, &report)?;
        Ok(())
    }

    /// Up to `limit` unacknowledged events, oldest first, exactly as sealed.
    pub fn pending(&self, limit: usize) -> Result<Vec<SealedEvent>, SpoolError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, time_ms, user, prev_hash, body FROM spool ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(SealedEvent {
                seq: r.get::<_, i64>(0)? as u64,
                time_ms: r.get(1)?,
                user: r.get(2)?,
                prev_hash: r.get(3)?,
                body: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes the events of `sent` (a batch this spool sent, whose commit the collector
    /// acknowledged on that connection), then writes the drop report if room came back.
    /// Nothing outside the batch is ever removed: a collector's word about other sequence
    /// numbers (another agent on a copied identity, a spool started over) cannot delete
    /// events it never received. Returns how many rows left.
    pub fn ack(
        &self,
        sent: std::ops::RangeInclusive<u64>,
        now_ms: UnixMs,
    ) -> Result<usize, SpoolError> {
        let (from, through) = (
            (*sent.start()).min(i64::MAX as u64) as i64,
            (*sent.end()).min(i64::MAX as u64) as i64,
        );
        let tx = self.immediate()?;
        let freed: i64 = tx.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM spool WHERE seq BETWEEN ?1 AND ?2",
            [from, through],
            |r| r.get(0),
        )?;
        let n = tx.execute(
            "DELETE FROM spool WHERE seq BETWEEN ?1 AND ?2",
            [from, through],
        )?;
        let used = meta_u64(&tx, "bytes")?.saturating_sub(freed as u64);
        meta_set(&tx, "bytes", &used.to_string())?;
        self.flush_drops(&tx, now_ms)?;
        tx.commit()?;
        Ok(n)
    }

    /// Writes the pending drop report if there is room for it (at every heartbeat).
    pub fn report_drops(&self, now_ms: UnixMs) -> Result<(), SpoolError> {
        let tx = self.immediate()?;
        self.flush_drops(&tx, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// Events waiting to be acknowledged.
    /// SQLite's quick integrity check of the spool: `None` when sound, else what it found.
    pub fn integrity(&self) -> Result<Option<String>, SpoolError> {
        let said: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        Ok((said != "ok").then_some(said))
    }

    pub fn backlog(&self) -> Result<u64, SpoolError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM spool", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Bytes the waiting events count against the bound.
    pub fn bytes(&self) -> Result<u64, SpoolError> {
        meta_u64(&self.conn, "bytes")
    }

    /// Events refused and not yet reported, by kind.
    pub fn dropped(&self) -> Result<BTreeMap<String, u64>, SpoolError> {
        self.dropped_in(&self.conn)
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
        meta_set(&self.conn, key, value)
    }

    /// Reads a status value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, SpoolError> {
        meta_get(&self.conn, key)
    }

    /// Keeps first sightings of customer content for the agent's next start, the newest
    /// `keep` of them (a content already kept keeps its first sighting).
    pub fn keep_sightings(&self, sightings: &[Sighting], keep: usize) -> Result<(), SpoolError> {
        if sightings.is_empty() {
            return Ok(());
        }
        let tx = self.immediate()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO lineage (sha256, path, time_ms, records, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for s in sightings {
                insert.execute(params![
                    s.sha256,
                    s.path,
                    s.time_ms,
                    i64::try_from(s.records).unwrap_or(i64::MAX),
                    s.seq.and_then(|q| i64::try_from(q).ok()),
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM lineage WHERE rowid <= (SELECT max(rowid) FROM lineage) - ?1",
            params![i64::try_from(keep).unwrap_or(i64::MAX)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The first sightings kept, oldest first: the newest `keep`.
    pub fn sightings(&self, keep: usize) -> Result<Vec<Sighting>, SpoolError> {
        let mut stmt = self.conn.prepare(
            "SELECT sha256, path, time_ms, records, seq FROM lineage ORDER BY rowid DESC LIMIT ?1",
        )?;
        let mut rows = stmt
            .query_map(params![i64::try_from(keep).unwrap_or(i64::MAX)], |r| {
                Ok(Sighting {
                    sha256: r.get(0)?,
                    path: r.get(1)?,
                    time_ms: r.get(2)?,
                    records: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    seq: r
                        .get::<_, Option<i64>>(4)?
                        .and_then(|q| u64::try_from(q).ok()),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }
}

/// A created file's event, its rule of severity `sev` (none: no rule): for the spool's tests
/// and its model.
#[cfg(test)]
fn created_file(path: String, size: u64, sev: Option<Severity>) -> EventBody {
    use holdfast_shared::event::{Action, FileActivity, RuleMatch};
    EventBody::File(FileActivity {
        size: Some(size),
        rules: sev
            .map(|severity| {
                vec![RuleMatch {
                    id: "r".into(),
                    severity,
                }]
            })
            .unwrap_or_default(),
        ..FileActivity::new(Action::Created, path)
    })
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(n: u64) -> EventBody {
        EventBody::notice("t", format!("n{n}"), n)
    }

    fn file(n: u64, sev: Option<Severity>) -> EventBody {
        created_file(format!("/f{n:06}"), n, sev)
    }

    /// Sightings kept are given back oldest first across a reopen, a content kept once
    /// keeps its first sighting, and only the newest `keep` stay.
    #[test]
    fn sightings_are_kept_bounded_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPOOL_FILE);
        let sighting = |i: u64| Sighting {
            sha256: format!("{i:064x}"),
            path: format!("/home/ana/Downloads/export-{i}.csv"),
            time_ms: UnixMs(1_700_000_000_000 + i as i64),
            records: 100 + i,
            seq: i.is_multiple_of(2).then_some(i),
        };
        let spool = Spool::open(&path).unwrap();
        let first: Vec<Sighting> = (0..3).map(sighting).collect();
        spool.keep_sightings(&first, 4).unwrap();
        let mut again = sighting(1);
        again.path = "/elsewhere/copy.csv".into();
        spool
            .keep_sightings(&[again, sighting(3), sighting(4)], 4)
            .unwrap();
        drop(spool);
        let spool = Spool::open(&path).unwrap();
        let kept = spool.sightings(4).unwrap();
        assert_eq!(kept, (1..5).map(sighting).collect::<Vec<_>>());
        assert_eq!(spool.sightings(2).unwrap(), vec![sighting(3), sighting(4)]);
    }

    fn stored(a: Admit) -> u64 {
        match a {
            Admit::Stored(s) => s,
            Admit::Dropped => panic!("dropped"),
        }
    }

    #[test]
    fn append_pending_ack_survive_reopen_and_chain() {
        let (_dir, path) = holdfast_io::testing::scratch("spool.db");
        let s = Spool::writer(&path, u64::MAX, "u").unwrap();
        for n in 1..=5 {
            assert_eq!(stored(s.append(UnixMs(n as i64), &notice(n)).unwrap()), n);
        }
        let p = s.pending(3).unwrap();
        assert_eq!(p.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(p[0].prev_hash, GENESIS.to_vec());
        assert_eq!(p[1].prev_hash, p[0].hash().to_vec());
        assert_eq!(p[2].prev_hash, p[1].hash().to_vec());
        assert_eq!(p[1].open("d").unwrap().body, notice(2));
        assert_eq!(s.ack(0..=3, UnixMs(0)).unwrap(), 3);
        drop(s);
        // A restart keeps the unacknowledged tail, the chain head, and never reuses a seq.
        let s = Spool::writer(&path, u64::MAX, "u").unwrap();
        assert_eq!(s.backlog().unwrap(), 2);
        let tail = s.pending(10).unwrap();
        s.ack(0..=5, UnixMs(0)).unwrap();
        assert_eq!((s.backlog().unwrap(), s.bytes().unwrap()), (0, 0));
        assert_eq!(stored(s.append(UnixMs(9), &notice(9)).unwrap()), 6);
        assert_eq!(s.pending(1).unwrap()[0].prev_hash, tail[1].hash().to_vec());
        assert_eq!(s.last_seq().unwrap(), 6);
    }

    #[test]
    fn a_full_spool_keeps_high_severity_and_reports_drops_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let row = |b: &EventBody| b.to_bytes().unwrap().len() as u64 + 1 + ROW_OVERHEAD;
        let (low, med, high) = (
            row(&file(0, None)),
            row(&file(0, Some(Severity::Medium))),
            row(&file(0, Some(Severity::High))),
        );
        // Room for exactly 100 rule-less rows at 100 %, 80 at 80 %.
        let max = low * 100;
        let s = Spool::writer(&dir.path().join("spool.db"), max, "u").unwrap();
        let kept = |admits: Vec<Admit>| {
            admits
                .iter()
                .filter(|a| matches!(a, Admit::Stored(_)))
                .count() as u64
        };
        let lows: Vec<_> = (0..150)
            .map(|n| (UnixMs(n as i64), file(n % 100, None)))
            .collect();
        assert_eq!(kept(s.append_all(&lows).unwrap()), 80);
        // Medium events fill up to 90 %, high ones up to 100 %.
        let meds: Vec<_> = (0..40)
            .map(|n| (UnixMs(200), file(n % 100, Some(Severity::Medium))))
            .collect();
        let kept_med = kept(s.append_all(&meds).unwrap());
        assert_eq!(kept_med, (max / 100 * 90 - 80 * low) / med);
        let highs: Vec<_> = (0..40)
            .map(|n| (UnixMs(300), file(n % 100, Some(Severity::High))))
            .collect();
        let kept_high = kept(s.append_all(&highs).unwrap());
        assert_eq!(kept_high, (max - 80 * low - kept_med * med) / high);
        assert!(kept_high > 0 && kept_high < 40);
        assert!(s.bytes().unwrap() <= max);
        let want: BTreeMap<String, u64> = [
            ("created/none".to_string(), 70),
            ("created/medium".to_string(), 40 - kept_med),
            ("created/high".to_string(), 40 - kept_high),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.dropped().unwrap(), want);
        // No hole in the sequence: every stored event has the next number.
        let stored = 80 + kept_med + kept_high;
        assert_eq!(s.last_seq().unwrap(), stored);
        // The collector takes everything: the report follows the kept events, with the counts.
        s.ack(0..=stored, UnixMs(500)).unwrap();
        assert!(s.dropped().unwrap().is_empty());
        let report = s.pending(10).unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].seq, stored + 1);
        match report[0].open("d").unwrap().body {
            EventBody::Notice(n) => {
                assert_eq!(n.kind, "spool_dropped");
                assert_eq!(n.count, 70 + 80 - kept_med - kept_high);
                assert_eq!(n.counts, want);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_full_episode_gives_one_report() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::writer(&dir.path().join("spool.db"), 20_000, "u").unwrap();
        let mut n = 0;
        while s.dropped().unwrap().is_empty() {
            s.append(UnixMs(n), &file(n as u64, None)).unwrap();
            n += 1;
        }
        // Below the low-severity limit by less than a row: appends must not write the report.
        for i in 0..10 {
            s.append(UnixMs(1000 + i), &notice(i as u64)).unwrap();
            s.append(UnixMs(2000 + i), &file(i as u64, None)).unwrap();
        }
        let kinds = |s: &Spool| -> Vec<String> {
            s.pending(10_000)
                .unwrap()
                .iter()
                .filter_map(|e| match e.open("d").unwrap().body {
                    EventBody::Notice(n) => Some(n.kind),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(kinds(&s), vec!["t"; 10]);
        assert_eq!(s.dropped().unwrap()["created/none"], 11);
        let last = s.last_seq().unwrap();
        s.ack(0..=last, UnixMs(0)).unwrap();
        assert_eq!(kinds(&s), vec!["spool_dropped"]);
        // Acks with nothing pending write nothing more.
        s.ack(0..=last, UnixMs(0)).unwrap();
        assert_eq!(s.backlog().unwrap(), 1);
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
