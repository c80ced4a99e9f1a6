//! What the collector publishes to agents: signed policy bundles and customer sets (the
//! set's pieces read with SQLite's incremental blob I/O, never whole).

use super::{audit_in, AuditEntry, Store, StoreError};
use holdfast_shared::time::UnixMs;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

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
    pub issued_ms: UnixMs,
    pub published_ms: UnixMs,
    pub files: u64,
    #[serde(skip)]
    pub signed: Vec<u8>,
}

impl Store {
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
        now_ms: UnixMs,
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
                    from_columns!(
                        r,
                        CustomerSetInfo {
                            version,
                            size,
                            customers,
                            manifest,
                        }
                    )
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
                    from_columns!(
                        r,
                        PublishedPolicy {
                            version,
                            issued_ms,
                            published_ms,
                            files,
                            signed,
                        }
                    )
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::*;

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
        s.publish_edm(&set("v1", &bytes), UnixMs(1), &crate::Actor::cli())
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
        s.publish_edm(&set("v2", b"new"), UnixMs(2), &crate::Actor::cli())
            .unwrap();
        assert_eq!(s.edm_chunk("v1", 0, 10).unwrap(), None, "replaced");
        assert_eq!(
            s.edm_chunk("v2", 0, 10).unwrap(),
            Some((3, b"new".to_vec()))
        );
        assert_eq!(s.legacy_edm_sets().unwrap(), 0);
    }

    #[test]
    fn publishing_the_same_policy_twice_changes_nothing() {
        let (_dir, s) = crate::store::fixtures::open();
        assert!(s.current_policy().unwrap().is_none());
        let p = PublishedPolicy {
            version: "v1".into(),
            issued_ms: UnixMs(1),
            published_ms: UnixMs(1),
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
