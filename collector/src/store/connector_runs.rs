//! Connector runs: each connector call queued with an offboarding (or a restore), its
//! attempts and where it stands, and the customers a connector handed to the successor.

use super::offboard::{audit_in, AuditEntry};
use super::{Store, StoreError};
use holdfast_shared::time::UnixMs;
use rusqlite::params;
use serde::Serialize;

/// One call of a connector for one user's offboarding (or restore), across its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConnectorRun {
    /// The run's number, unique across runs.
    pub id: i64,
    /// The leaver (or the restored user).
    pub user: String,
    /// `offboard` or `restore`.
    pub event: String,
    /// The connector's name in `collector.toml`.
    pub connector: String,
    /// When the run was queued.
    pub created_ms: UnixMs,
    /// When the next attempt is due.
    pub next_ms: UnixMs,
    /// Attempts made so far.
    pub attempts: u32,
    pub status: RunStatus,
    /// How the last attempt ended; `None` before the first.
    pub last: Option<LastAttempt>,
}

/// A customer a connector handed to the leaver's successor (企业微信's external contacts),
/// and where the transfer stood at the last look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HandedCustomer {
    pub connector: String,
    /// The customer's id on that system (`external_userid`).
    pub customer: String,
    pub successor: String,
    /// `done`, `waiting` (the customer may still object), `refused` by the customer,
    /// `successor_full`, or the system's refusal (`refused by WeCom (errcode …)`).
    pub state: String,
    /// When it was last seen in that state.
    pub time_ms: UnixMs,
}

/// Where a connector run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Queued, not tried yet.
    Pending,
    /// Failed, and tried again at `next_ms`.
    Retry,
    /// Done.
    Ok,
    /// Failed on its last allowed attempt; `offboard retry` starts it again.
    Failed,
}

impl RunStatus {
    const ALL: [RunStatus; 4] = [
        RunStatus::Pending,
        RunStatus::Retry,
        RunStatus::Ok,
        RunStatus::Failed,
    ];

    /// As stored and as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Retry => "retry",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl rusqlite::types::FromSql for RunStatus {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = v.as_str()?;
        RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                rusqlite::types::FromSqlError::Other(format!("run status `{text}`").into())
            })
    }
}

/// How a connector run's last attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LastAttempt {
    pub ended_ms: UnixMs,
    /// The HTTP status or the exit code.
    pub code: Option<i64>,
    /// The start of the response (capped), or the error.
    pub detail: String,
}

/// What becomes of a connector run after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Done,
    RetryAt(UnixMs),
    /// The last allowed attempt failed.
    GiveUp,
}

impl Store {
    /// Connector runs due at `now_ms` (pending or waiting to retry), oldest first.
    pub fn connector_runs_due(
        &self,
        now_ms: UnixMs,
        limit: usize,
    ) -> Result<Vec<ConnectorRun>, StoreError> {
        self.connector_runs_where(
            "status IN ('pending', 'retry') AND next_ms <= ?1 ORDER BY next_ms, id LIMIT ?2",
            params![now_ms, limit as i64],
        )
    }

    /// Records what a connector handed to `user`'s successor: each customer's latest state.
    pub fn record_handed_over(
        &mut self,
        user: &str,
        customers: &[HandedCustomer],
    ) -> Result<(), StoreError> {
        if customers.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for c in customers {
            tx.execute(
                "INSERT INTO handed_over (user, connector, external_userid, successor, state, time_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user, connector, external_userid) DO UPDATE
                 SET successor = excluded.successor, state = excluded.state, time_ms = excluded.time_ms",
                params![user, c.connector, c.customer, c.successor, c.state, c.time_ms],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The customers handed to `user`'s successor, by connector and customer id.
    pub fn handed_over_of(&self, user: &str) -> Result<Vec<HandedCustomer>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT connector, external_userid, successor, state, time_ms FROM handed_over
             WHERE user = ?1 ORDER BY connector, external_userid",
        )?;
        let rows = st.query_map([user], |r| {
            from_columns!(
                r,
                HandedCustomer {
                    connector,
                    customer,
                    successor,
                    state,
                    time_ms,
                }
            )
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A user's connector runs, oldest first.
    pub fn connector_runs_of(&self, user: &str) -> Result<Vec<ConnectorRun>, StoreError> {
        self.connector_runs_where("user = ?1 ORDER BY id", params![user])
    }

    fn connector_runs_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<ConnectorRun>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT id, user, event, connector, created_ms, next_ms, attempts, status, last_ms,
                    last_code, last_detail FROM connector_runs WHERE {clause}"
        ))?;
        // Not `from_columns!`: the last three columns make one field.
        let rows = st.query_map(args, |r| {
            Ok(ConnectorRun {
                id: r.get(0)?,
                user: r.get(1)?,
                event: r.get(2)?,
                connector: r.get(3)?,
                created_ms: r.get(4)?,
                next_ms: r.get(5)?,
                attempts: r.get(6)?,
                status: r.get(7)?,
                last: match r.get::<_, Option<UnixMs>>(8)? {
                    None => None,
                    Some(ended_ms) => Some(LastAttempt {
                        ended_ms,
                        code: r.get(9)?,
                        detail: r.get(10)?,
                    }),
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records one attempt of a run and what becomes of the run. The final outcome (done or
    /// given up) is audited.
    pub fn record_attempt(
        &mut self,
        run: &ConnectorRun,
        last: &LastAttempt,
        after: AfterAttempt,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let (status, next_ms) = match after {
            AfterAttempt::Done => (RunStatus::Ok, None),
            AfterAttempt::RetryAt(at) => (RunStatus::Retry, Some(at)),
            AfterAttempt::GiveUp => (RunStatus::Failed, None),
        };
        let now_ms = last.ended_ms;
        tx.execute(
            "UPDATE connector_runs SET attempts = attempts + 1, status = ?2, last_ms = ?3,
                 last_code = ?4, last_detail = ?5, next_ms = COALESCE(?6, next_ms) WHERE id = ?1",
            params![
                run.id,
                status.as_str(),
                now_ms,
                last.code,
                last.detail,
                next_ms
            ],
        )?;
        if status != RunStatus::Retry {
            audit_in(
                &tx,
                &AuditEntry {
                    id: 0,
                    time_ms: now_ms,
                    actor: "collector".into(),
                    origin: format!("connector:{}", run.connector),
                    action: format!("connector.{status}"),
                    target: run.user.clone(),
                    detail: format!(
                        "{} after {} attempt(s), code {}: {}",
                        run.event,
                        run.attempts + 1,
                        last.code.map_or_else(|| "-".to_string(), |c| c.to_string()),
                        last.detail
                    ),
                },
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Starts a user's failed connector runs again (attempts count afresh). Returns how many.
    pub fn retry_connectors(
        &mut self,
        user: &str,
        now_ms: UnixMs,
        audit: &AuditEntry,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        self.audited(audit, |tx| {
            n = tx.execute(
                "UPDATE connector_runs SET status = 'retry', attempts = 0, next_ms = ?2
                 WHERE user = ?1 AND status = 'failed'",
                params![user, now_ms],
            )?;
            Ok(n > 0)
        })?;
        Ok(n)
    }
}
