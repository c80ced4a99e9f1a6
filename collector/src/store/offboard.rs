//! Offboarding storage: offboardings (one open per user), the signed revocation orders for
//! each device with their delivery and receipts (connector runs: `connector_runs`), and the
//! append-only audit log (triggers refuse UPDATE and DELETE on it).

use super::{Store, StoreError};
use holdfast_shared::order::ActionReceipt;
use holdfast_shared::time::UnixMs;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// An offboarding as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OffboardRow {
    pub user: String,
    pub started_ms: UnixMs,
    pub effective_ms: UnixMs,
    pub lookback_ms: i64,
    pub reason: String,
    pub restored_ms: Option<UnixMs>,
    /// When notice was given (the user is departing until `effective_ms`).
    pub notice_ms: UnixMs,
    /// Severity levels a departing user's alerts rise by.
    pub raise_levels: u8,
    /// Who takes the leaver's customers over (`--successor`): connectors that transfer
    /// customers (`wecom`) hand them to this user, and the handover names them.
    pub successor: Option<String>,
}

/// An order to record: already signed.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: String,
    pub device_id: String,
    /// `offboard` or `restore`.
    pub kind: String,
    pub effective_ms: UnixMs,
    pub signed: Vec<u8>,
}

/// An order and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OrderRow {
    pub id: String,
    pub user: String,
    pub device_id: String,
    pub kind: String,
    pub created_ms: UnixMs,
    pub effective_ms: UnixMs,
    pub delivered_ms: Option<UnixMs>,
    pub done_ms: Option<UnixMs>,
    /// Whether every action succeeded (once done).
    pub ok: Option<bool>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub receipts: Vec<ActionReceipt>,
}

impl OrderRow {
    /// `scheduled` (effective later), `pending`, `delivered`, `done` or `failed`.
    pub fn state(&self, now_ms: UnixMs) -> &'static str {
        match (self.done_ms, self.ok, self.delivered_ms) {
            (Some(_), Some(true), _) => "done",
            (Some(_), _, _) => "failed",
            (None, _, Some(_)) => "delivered",
            (None, _, None) if self.effective_ms > now_ms => "scheduled",
            _ => "pending",
        }
    }
}

/// A user, with their devices and where they stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UserRow {
    pub user: String,
    pub devices: u64,
    /// `active`, `departing` (notice given, not yet effective), `offboarded` or `restored`.
    pub state: String,
    pub effective_ms: Option<UnixMs>,
    pub notice_ms: Option<UnixMs>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub time_ms: UnixMs,
    /// Who: an operator (`cli:root`), a device id, or the collector itself.
    pub actor: String,
    /// From where: `cli@host`, `device`, `http 127.0.0.1`.
    pub origin: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    from_columns!(
        r,
        OrderRow {
            id,
            user,
            device_id,
            kind,
            created_ms,
            effective_ms,
            delivered_ms,
            done_ms,
            ok,
            receipts: super::json_or_empty,
        }
    )
}

const ORDER_COLUMNS: &str =
    "id, user, device_id, kind, created_ms, effective_ms, delivered_ms, done_ms, ok, receipts";

impl AuditEntry {
    /// A line saying `actor` did `action` to `target` at `now_ms`.
    pub fn by(
        actor: &crate::Actor,
        now_ms: UnixMs,
        action: &str,
        target: &str,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            time_ms: now_ms,
            actor: actor.who.clone(),
            origin: actor.origin.clone(),
            action: action.to_string(),
            target: target.to_string(),
            detail,
        }
    }
}

pub(super) fn audit_in(tx: &rusqlite::Connection, e: &AuditEntry) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (time_ms, actor, origin, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.time_ms, e.actor, e.origin, e.action, e.target, e.detail],
    )?;
    Ok(())
}

impl Store {
    /// Runs `change` in one transaction and, when it says it changed something (`true`),
    /// writes `audit` in the same transaction: a change and its audit line land together or
    /// not at all. Returns what `change` said.
    pub(super) fn audited(
        &mut self,
        audit: &AuditEntry,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let changed = change(&tx)?;
        if changed {
            audit_in(&tx, audit)?;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Every user who enrolled a device or was given a token, with their offboarding state.
    pub fn users(&self, now_ms: UnixMs) -> Result<Vec<UserRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT u.user,
                    (SELECT COUNT(*) FROM devices d WHERE d.user = u.user),
                    o.effective_ms, COALESCE(o.notice_ms, o.started_ms), o.restored_ms
             FROM (SELECT user FROM devices UNION SELECT user FROM tokens) u
             LEFT JOIN offboardings o ON o.user = u.user
             ORDER BY u.user",
        )?;
        let rows = st.query_map([], |r| {
            let effective: Option<UnixMs> = r.get(2)?;
            let restored: Option<UnixMs> = r.get(4)?;
            let state = match (effective, restored) {
                (None, _) => "active",
                (Some(_), Some(_)) => "restored",
                (Some(e), None) if e > now_ms => "departing",
                (Some(_), None) => "offboarded",
            };
            Ok(UserRow {
                user: r.get(0)?,
                devices: r.get::<_, i64>(1)? as u64,
                state: state.into(),
                effective_ms: effective,
                notice_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `user` is known: enrolled a device or was ever given a token.
    pub fn user_known(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE user = ?1)
                 OR EXISTS (SELECT 1 FROM tokens WHERE user = ?1)",
            [user],
            |r| r.get(0),
        )?)
    }

    /// The user's offboarding, if one was ever started.
    pub fn offboarding(&self, user: &str) -> Result<Option<OffboardRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, started_ms, effective_ms, lookback_ms, reason, restored_ms,
                        COALESCE(notice_ms, started_ms), raise_levels, successor
                 FROM offboardings WHERE user = ?1",
                [user],
                |r| {
                    from_columns!(
                        r,
                        OffboardRow {
                            user,
                            started_ms,
                            effective_ms,
                            lookback_ms,
                            reason,
                            restored_ms,
                            notice_ms,
                            raise_levels,
                            successor,
                        }
                    )
                },
            )
            .optional()?)
    }

    /// Starts (or, after a restore, starts again) an offboarding with its orders and audit
    /// line, in one transaction. Returns false, changing nothing, when one is already open.
    pub fn start_offboarding(
        &mut self,
        row: &OffboardRow,
        orders: &[NewOrder],
        connectors: &[String],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.audited(audit, |tx| {
            let open: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM offboardings WHERE user = ?1 AND restored_ms IS NULL)",
                [&row.user],
                |r| r.get(0),
            )?;
            if open {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR REPLACE INTO offboardings (user, started_ms, effective_ms, lookback_ms,
                     reason, restored_ms, notice_ms, raise_levels, successor)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8)",
                params![
                    row.user,
                    row.started_ms,
                    row.effective_ms,
                    row.lookback_ms,
                    row.reason,
                    row.notice_ms,
                    row.raise_levels,
                    row.successor
                ],
            )?;
            insert_orders(tx, &row.user, row.started_ms, orders)?;
            queue_runs(
                tx,
                &row.user,
                "offboard",
                connectors,
                row.started_ms,
                row.effective_ms,
            )?;
            Ok(true)
        })
    }

    /// Marks the user's open offboarding restored and records the restore orders. Returns
    /// false, changing nothing, when there is no open offboarding.
    pub fn restore_offboarding(
        &mut self,
        user: &str,
        now_ms: UnixMs,
        orders: &[NewOrder],
        connectors: &[String],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.audited(audit, |tx| {
            let n = tx.execute(
                "UPDATE offboardings SET restored_ms = ?2 WHERE user = ?1 AND restored_ms IS NULL",
                params![user, now_ms],
            )?;
            if n == 0 {
                return Ok(false);
            }
            // Offboarding orders not yet delivered are withdrawn: they would only be undone.
            tx.execute(
                "UPDATE orders SET done_ms = ?2, ok = 0, receipts = '[]'
             WHERE user = ?1 AND kind = 'offboard' AND delivered_ms IS NULL AND done_ms IS NULL",
                params![user, now_ms],
            )?;
            insert_orders(tx, user, now_ms, orders)?;
            queue_runs(tx, user, "restore", connectors, now_ms, now_ms)?;
            Ok(true)
        })
    }

    /// The user's orders, oldest first.
    pub fn orders_of(&self, user: &str) -> Result<Vec<OrderRow>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = st.query_map([user], order_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Signed orders a device should carry out now (effective, not yet receipted), oldest
    /// first; each is marked delivered.
    pub fn orders_due(
        &mut self,
        device_id: &str,
        now_ms: UnixMs,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.conn.transaction()?;
        let due: Vec<(String, Vec<u8>)> = {
            let mut st = tx.prepare(
                "SELECT id, signed FROM orders
                 WHERE device_id = ?1 AND done_ms IS NULL AND effective_ms <= ?2
                 ORDER BY created_ms, id LIMIT 16",
            )?;
            let rows = st.query_map(params![device_id, now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, _) in &due {
            tx.execute(
                "UPDATE orders SET delivered_ms = COALESCE(delivered_ms, ?2) WHERE id = ?1",
                params![id, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(due.into_iter().map(|(_, s)| s).collect())
    }

    /// Records a device's receipt for one of its orders (the first receipt counts; a copy
    /// changes nothing). Returns false when the order is not this device's.
    pub fn record_receipt(
        &mut self,
        device_id: &str,
        order_id: &str,
        receipts: &[ActionReceipt],
        now_ms: UnixMs,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let found: Option<Option<i64>> = tx
            .query_row(
                "SELECT done_ms FROM orders WHERE id = ?1 AND device_id = ?2",
                params![order_id, device_id],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            None => return Ok(false),
            Some(Some(_)) => return Ok(true),
            Some(None) => {}
        }
        let ok = receipts.iter().all(|r| r.ok);
        let json =
            serde_json::to_string(receipts).map_err(|e| StoreError::Encode(e.to_string()))?;
        tx.execute(
            "UPDATE orders SET done_ms = ?2, ok = ?3, receipts = ?4,
                 delivered_ms = COALESCE(delivered_ms, ?2) WHERE id = ?1",
            params![order_id, now_ms, ok, json],
        )?;
        let summary: Vec<String> = receipts
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({} items)",
                    r.action,
                    if r.ok { "ok" } else { "FAILED" },
                    r.items
                )
            })
            .collect();
        audit_in(
            &tx,
            &AuditEntry {
                id: 0,
                time_ms: now_ms,
                actor: device_id.to_string(),
                origin: "device".into(),
                action: "order.receipt".into(),
                target: order_id.to_string(),
                detail: summary.join("; "),
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Appends one line to the audit log.
    pub fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        audit_in(&self.conn, e)
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_page(None, limit)
    }
}

pub(super) fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    from_columns!(
        r,
        AuditEntry {
            id,
            time_ms,
            actor,
            origin,
            action,
            target,
            detail,
        }
    )
}

fn queue_runs(
    tx: &rusqlite::Transaction<'_>,
    user: &str,
    event: &str,
    connectors: &[String],
    now_ms: UnixMs,
    due_ms: UnixMs,
) -> Result<(), StoreError> {
    for c in connectors {
        tx.execute(
            "INSERT INTO connector_runs (user, event, connector, created_ms, next_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, event, c, now_ms, due_ms],
        )?;
    }
    Ok(())
}

fn insert_orders(
    tx: &rusqlite::Transaction<'_>,
    user: &str,
    now_ms: UnixMs,
    orders: &[NewOrder],
) -> Result<(), StoreError> {
    for o in orders {
        tx.execute(
            "INSERT INTO orders (id, user, device_id, kind, created_ms, effective_ms, signed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                o.id,
                user,
                o.device_id,
                o.kind,
                now_ms,
                o.effective_ms,
                o.signed
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::audit_actions;
    use crate::store::{AfterAttempt, LastAttempt};

    fn audit(action: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            time_ms: UnixMs(1),
            actor: "cli:root".into(),
            origin: "cli@host".into(),
            action: action.into(),
            target: "kim".into(),
            detail: String::new(),
        }
    }

    fn order(id: &str, device: &str, effective_ms: UnixMs) -> NewOrder {
        NewOrder {
            id: id.into(),
            device_id: device.into(),
            kind: "offboard".into(),
            effective_ms,
            signed: id.as_bytes().to_vec(),
        }
    }

    fn row(user: &str, effective_ms: UnixMs) -> OffboardRow {
        OffboardRow {
            user: user.into(),
            started_ms: UnixMs(10),
            effective_ms,
            lookback_ms: 90,
            reason: "resigned".into(),
            restored_ms: None,
            notice_ms: UnixMs(10),
            raise_levels: 1,
            successor: None,
        }
    }

    #[test]
    fn an_offboarding_waits_for_another_connections_write_instead_of_failing() {
        // The CLI's `offboard` reads, then writes, while the running collector commits a batch.
        let (d, mut s) = crate::store::fixtures::open();
        let path = d.path().join("c.db");
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE scratch (x)").unwrap();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            other
                .execute_batch("BEGIN IMMEDIATE; INSERT INTO scratch VALUES (1)")
                .unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        is_locked.recv().unwrap();
        let started = s.start_offboarding(&row("kim", UnixMs(10)), &[], &[], &audit("offboard"));
        writer.join().unwrap();
        assert!(matches!(started, Ok(true)), "{started:?}");
        assert_eq!(audit_actions(&s), ["offboard"]);
    }

    #[test]
    fn offboarding_is_idempotent_and_orders_flow_to_receipts() {
        let (_d, mut s) = crate::store::fixtures::open();
        let a = audit("offboard");
        assert!(s
            .start_offboarding(
                &row("kim", UnixMs(10)),
                &[order("o1", "d1", UnixMs(10)), order("o2", "d2", UnixMs(10))],
                &[],
                &a
            )
            .unwrap());
        // A second start changes nothing.
        assert!(!s
            .start_offboarding(
                &row("kim", UnixMs(10)),
                &[order("o3", "d1", UnixMs(10))],
                &[],
                &a
            )
            .unwrap());
        assert_eq!(s.orders_of("kim").unwrap().len(), 2);
        // Due orders go out and are marked delivered; not-yet-effective ones wait.
        assert_eq!(
            s.orders_due("d1", UnixMs(5)).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            s.orders_due("d1", UnixMs(20)).unwrap(),
            vec![b"o1".to_vec()]
        );
        let states = |s: &Store| -> Vec<String> {
            s.orders_of("kim")
                .unwrap()
                .iter()
                .map(|o| format!("{}:{}", o.id, o.state(UnixMs(20))))
                .collect()
        };
        assert_eq!(states(&s), ["o1:delivered", "o2:pending"]);
        let r = ActionReceipt {
            action: "quarantine".into(),
            ok: true,
            items: 3,
            bytes: 100,
            detail: String::new(),
        };
        // Another device cannot receipt d1's order.
        assert!(!s
            .record_receipt("d2", "o1", std::slice::from_ref(&r), UnixMs(30))
            .unwrap());
        assert!(s
            .record_receipt("d1", "o1", std::slice::from_ref(&r), UnixMs(30))
            .unwrap());
        // A copy of the receipt changes nothing.
        let failed = ActionReceipt {
            ok: false,
            ..r.clone()
        };
        assert!(s
            .record_receipt("d1", "o1", std::slice::from_ref(&failed), UnixMs(40))
            .unwrap());
        assert_eq!(states(&s), ["o1:done", "o2:pending"]);
        assert!(s.record_receipt("d2", "o2", &[failed], UnixMs(40)).unwrap());
        assert_eq!(states(&s), ["o1:done", "o2:failed"]);
        assert_eq!(
            s.orders_due("d1", UnixMs(50)).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        // Restore: once; withdrawn orders are those never delivered.
        assert!(s
            .restore_offboarding(
                "kim",
                UnixMs(60),
                &[order("r1", "d1", UnixMs(60))],
                &[],
                &audit("restore")
            )
            .unwrap());
        assert!(!s
            .restore_offboarding("kim", UnixMs(61), &[], &[], &audit("restore"))
            .unwrap());
        assert_eq!(
            s.offboarding("kim").unwrap().unwrap().restored_ms,
            Some(UnixMs(60))
        );
        // After a restore, offboarding again starts afresh.
        assert!(s
            .start_offboarding(
                &row("kim", UnixMs(70)),
                &[order("o4", "d1", UnixMs(70))],
                &[],
                &a
            )
            .unwrap());
        assert_eq!(
            audit_actions(&s),
            [
                "offboard",
                "restore",
                "order.receipt",
                "order.receipt",
                "offboard"
            ]
        );
    }

    #[test]
    fn connector_runs_retry_then_settle_and_are_audited() {
        let (_d, mut s) = crate::store::fixtures::open();
        let a = audit("offboard");
        s.start_offboarding(
            &row("kim", UnixMs(50)),
            &[],
            &["crm".into(), "idp".into()],
            &a,
        )
        .unwrap();
        // Due at the effective time, not before.
        assert!(s.connector_runs_due(UnixMs(49), 10).unwrap().is_empty());
        let due = s.connector_runs_due(UnixMs(50), 10).unwrap();
        assert_eq!(due.len(), 2);
        let ended = |code, detail: &str, ms| LastAttempt {
            ended_ms: UnixMs(ms),
            code,
            detail: detail.into(),
        };
        s.record_attempt(
            &due[0],
            &ended(Some(500), "boom", 50),
            AfterAttempt::RetryAt(UnixMs(60)),
        )
        .unwrap();
        s.record_attempt(&due[1], &ended(None, "exit 1", 50), AfterAttempt::GiveUp)
            .unwrap();
        let due = s.connector_runs_due(UnixMs(59), 10).unwrap();
        assert!(due.is_empty());
        let due = s.connector_runs_due(UnixMs(60), 10).unwrap();
        assert_eq!((due.len(), due[0].attempts), (1, 1));
        s.record_attempt(&due[0], &ended(Some(200), "done", 60), AfterAttempt::Done)
            .unwrap();
        let runs = s.connector_runs_of("kim").unwrap();
        let states: Vec<(&str, &str, u32)> = runs
            .iter()
            .map(|r| (r.connector.as_str(), r.status.as_str(), r.attempts))
            .collect();
        assert_eq!(states, [("crm", "ok", 2), ("idp", "failed", 1)]);
        assert_eq!(
            s.retry_connectors("kim", UnixMs(70), &audit("retry"))
                .unwrap(),
            1
        );
        assert_eq!(
            s.connector_runs_due(UnixMs(70), 10).unwrap()[0].connector,
            "idp"
        );
        assert_eq!(
            audit_actions(&s),
            ["retry", "connector.ok", "connector.failed", "offboard"]
        );
    }

    #[test]
    fn audit_log_is_append_only() {
        let (_d, s) = crate::store::fixtures::open();
        s.audit(&audit("x")).unwrap();
        let err = s
            .conn
            .execute("UPDATE audit SET actor = 'me'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = s.conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(s.audit_log(10).unwrap().len(), 1);
    }

    #[test]
    fn users_are_known_by_device_or_token() {
        let (_d, mut s) = crate::store::fixtures::open();
        assert!(!s.user_known("kim").unwrap());
        s.add_token("abc", "kim", UnixMs(1), UnixMs(2), &crate::Actor::test())
            .unwrap();
        s.add_token("def", "lee", UnixMs(1), UnixMs(2), &crate::Actor::test())
            .unwrap();
        assert!(s.user_known("kim").unwrap());
        s.start_offboarding(&row("kim", UnixMs(100)), &[], &[], &audit("offboard"))
            .unwrap();
        let states = |s: &Store, now| -> Vec<(String, String)> {
            s.users(now)
                .unwrap()
                .into_iter()
                .map(|u| (u.user, u.state))
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            states(&s, UnixMs(50)),
            [pair("kim", "departing"), pair("lee", "active")]
        );
        assert_eq!(
            states(&s, UnixMs(100)),
            [pair("kim", "offboarded"), pair("lee", "active")]
        );
    }
}
