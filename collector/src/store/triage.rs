//! Triage storage: API tokens and browser sessions, alert queries by filter and cursor page,
//! alert status, assignee and notes, per-user risk, event search, the audit log by pages, and
//! the cursors of SIEM forwarders.

use super::{alert_row, alert_row_at, audit_in, AuditEntry, Store, StoreError, ALERT_COLUMNS};
use super::{Alert, AlertStatus, StoredEvent};
use holdfast_shared::event::Severity;
use holdfast_shared::time::UnixMs;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde::Serialize;

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ApiToken {
    /// Unique; names the token in the audit log.
    pub name: String,
    /// `analyst`, `it_admin`, `auditor` or `admin`.
    pub role: String,
    /// A one-time login: good for one browser session, then spent.
    pub once: bool,
    /// When a one-time login was spent.
    pub used_ms: Option<UnixMs>,
    /// When the token was made.
    pub created_ms: UnixMs,
    /// Who made it, as the audit log names actors (`cli:alice`, `api:soc-1`).
    pub created_by: String,
    /// The last request it authorised.
    pub last_used_ms: Option<UnixMs>,
    /// When it was revoked; it authorises nothing since.
    pub revoked_ms: Option<UnixMs>,
}

/// A browser session as stored (its id only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_name: String,
    pub role: String,
    /// The session's CSRF secret, echoed by forms and scripts on state-changing requests.
    pub csrf: String,
    pub expires_ms: UnixMs,
}

/// Whose activity and when: what every listing filters by (the API's `user`, `device`,
/// `since` and `until`). `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub user: Option<String>,
    pub device: Option<String>,
    /// At or after (an alert's last sighting, an event's corrected time).
    pub since_ms: Option<UnixMs>,
    /// Before.
    pub until_ms: Option<UnixMs>,
}

/// Which alerts to list. Empty lists and `None` match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub scope: Scope,
    pub statuses: Vec<AlertStatus>,
    pub severities: Vec<Severity>,
    pub rule: Option<String>,
    pub assignee: Option<String>,
}

/// How alerts are ordered; every order ends in `id DESC`, so it is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertOrder {
    /// Most severe first, then newest (the queue's order).
    #[default]
    Severity,
    /// Newest first.
    Newest,
}

/// Where a page ends: the sort key of its last alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertCursor {
    pub rank: i64,
    pub last_seen_ms: UnixMs,
    pub id: i64,
}

impl AlertCursor {
    /// The cursor just past `a`.
    pub fn after(a: &Alert) -> AlertCursor {
        AlertCursor {
            rank: super::severity_rank(a.severity),
            last_seen_ms: a.last_seen_ms,
            id: a.id,
        }
    }
}

/// A note on an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Note {
    pub id: i64,
    pub time_ms: UnixMs,
    pub author: String,
    pub text: String,
}

/// A change to one alert, applied with its audit line in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertChange {
    pub status: Option<AlertStatus>,
    /// `Some(None)` clears the assignee.
    pub assignee: Option<Option<String>>,
    pub note: Option<String>,
}

/// What feeds one user's risk (see [`Store::risk_signals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RiskSignals {
    pub alerts: BySeverity,
    pub sequences: u64,
    pub volume_spikes: u64,
    /// The most records handled in one day of a spike.
    pub volume_max: u64,
    pub bulk_reads: u64,
    /// Customer files read by a browser, mail client or chat app (rules matched).
    pub uploads: u64,
    /// Print jobs of customer records (rules matched).
    pub prints: u64,
    /// Customer files sent over Bluetooth (read by obexd; rules matched).
    pub bluetooth: u64,
}

/// Alerts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BySeverity {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

impl BySeverity {
    fn add(&mut self, severity: &str, n: u64) {
        match severity {
            "critical" => self.critical += n,
            "high" => self.high += n,
            "medium" => self.medium += n,
            _ => self.low += n,
        }
    }
}

/// Which events to find. `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub scope: Scope,
    pub sha256: Option<String>,
    /// A substring of the path (or of the path a rename came from).
    pub path: Option<String>,
    pub action: Option<String>,
    /// Only events that matched at least one rule.
    pub matched: bool,
}

/// Appends `AND column = ?` style conditions with their values.
struct Where {
    sql: String,
    args: Vec<Value>,
}

impl Where {
    fn new() -> Where {
        Where {
            sql: "1".into(),
            args: Vec::new(),
        }
    }

    fn cond(&mut self, sql: &str, v: impl Into<Value>) {
        self.args.push(v.into());
        self.sql.push_str(&format!(
            " AND {}",
            sql.replace('?', &format!("?{}", self.args.len()))
        ));
    }

    fn any_of(&mut self, column: &str, values: &[&str]) {
        if values.is_empty() {
            return;
        }
        let mut marks = Vec::new();
        for v in values {
            self.args.push(Value::Text(v.to_string()));
            marks.push(format!("?{}", self.args.len()));
        }
        self.sql
            .push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
    }

    fn opt_text(&mut self, sql: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.cond(sql, Value::Text(v.clone()));
        }
    }

    fn opt_int(&mut self, sql: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.cond(sql, Value::Integer(v));
        }
    }

    /// The scope's conditions, its window on the SQL expression `time`.
    fn scope(&mut self, s: &Scope, time: &str) {
        self.opt_text("user = ?", &s.user);
        self.opt_text("device_id = ?", &s.device);
        self.opt_int(&format!("{time} >= ?"), s.since_ms.map(UnixMs::ms));
        self.opt_int(&format!("{time} < ?"), s.until_ms.map(UnixMs::ms));
    }
}

fn alert_where(f: &AlertFilter) -> Where {
    let mut w = Where::new();
    let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
    let severities: Vec<&str> = f.severities.iter().map(|s| s.as_str()).collect();
    w.any_of("status", &statuses);
    w.any_of("severity", &severities);
    w.opt_text("rule_id = ?", &f.rule);
    w.opt_text("assignee = ?", &f.assignee);
    w.scope(&f.scope, "last_seen_ms");
    w
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    from_columns!(
        r,
        ApiToken {
            name,
            role,
            created_ms,
            created_by,
            last_used_ms,
            revoked_ms,
            once,
            used_ms,
        }
    )
}

const TOKEN_COLUMNS: &str =
    "name, role, created_ms, created_by, last_used_ms, revoked_ms, once, used_ms";

impl Store {
    /// Records an API token (its secret only as a hash), with its audit line. Returns false,
    /// changing nothing, when a token of that name exists.
    pub fn add_api_token(
        &mut self,
        t: &ApiToken,
        secret_sha256: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.audited(audit, |tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO api_tokens (name, role, secret_sha256, created_ms, created_by, once)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.name, t.role, secret_sha256, t.created_ms, t.created_by, t.once as i64],
            )?;
            Ok(n == 1)
        })
    }

    /// The live (not revoked, not spent) token with this secret hash.
    pub fn api_token_by_secret(&self, secret_sha256: &str) -> Result<Option<ApiToken>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens
                     WHERE secret_sha256 = ?1 AND revoked_ms IS NULL AND used_ms IS NULL"
                ),
                [secret_sha256],
                token_row,
            )
            .optional()?)
    }

    /// Notes that a token was used (at most once a minute, to spare the disk).
    pub fn touch_api_token(&self, name: &str, now_ms: UnixMs) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE api_tokens SET last_used_ms = ?2
             WHERE name = ?1 AND (last_used_ms IS NULL OR last_used_ms < ?2 - 60000)",
            params![name, now_ms],
        )?;
        Ok(())
    }

    /// Every API token, oldest first.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        ))?;
        let rows = st.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token and ends its sessions. Returns false when there is no live token of
    /// that name.
    pub fn revoke_api_token(
        &mut self,
        name: &str,
        now_ms: UnixMs,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.audited(audit, |tx| {
            let n = tx.execute(
                "UPDATE api_tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
                params![name, now_ms],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute("DELETE FROM sessions WHERE token_name = ?1", [name])?;
            Ok(true)
        })
    }

    /// Opens a browser session for a token; a one-time token is spent by it. Returns false
    /// when the token was spent (or revoked) in the meantime.
    pub fn open_session(
        &mut self,
        id_sha256: &str,
        token: &ApiToken,
        csrf: &str,
        now_ms: UnixMs,
        expires_ms: UnixMs,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.audited(audit, |tx| {
            let live = tx.execute(
                "UPDATE api_tokens SET last_used_ms = ?2,
                     used_ms = CASE WHEN once = 1 THEN ?2 ELSE NULL END
                 WHERE name = ?1 AND revoked_ms IS NULL AND used_ms IS NULL",
                params![token.name, now_ms],
            )?;
            if live == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM sessions WHERE expires_ms <= ?1",
                params![now_ms],
            )?;
            tx.execute(
                "INSERT INTO sessions (id_sha256, token_name, role, csrf, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id_sha256, token.name, token.role, csrf, now_ms, expires_ms],
            )?;
            Ok(true)
        })
    }

    /// The unexpired session with this id hash, whose token is not revoked.
    pub fn session(&self, id_sha256: &str, now_ms: UnixMs) -> Result<Option<Session>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT s.token_name, s.role, s.csrf, s.expires_ms
                 FROM sessions s JOIN api_tokens t ON t.name = s.token_name
                 WHERE s.id_sha256 = ?1 AND s.expires_ms > ?2 AND t.revoked_ms IS NULL",
                params![id_sha256, now_ms],
                |r| {
                    from_columns!(
                        r,
                        Session {
                            token_name,
                            role,
                            csrf,
                            expires_ms,
                        }
                    )
                },
            )
            .optional()?)
    }

    /// Ends a session.
    pub fn end_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM sessions WHERE id_sha256 = ?1", [id_sha256])?;
        Ok(())
    }

    /// One page of alerts matching `f`, in `order`, after `after`.
    pub fn alert_page(
        &self,
        f: &AlertFilter,
        order: AlertOrder,
        after: Option<&AlertCursor>,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut w = alert_where(f);
        if let Some(c) = after {
            match order {
                AlertOrder::Severity => {
                    w.args.extend([
                        Value::Integer(c.rank),
                        Value::Integer(c.last_seen_ms.ms()),
                        Value::Integer(c.id),
                    ]);
                    let n = w.args.len();
                    w.sql.push_str(&format!(
                        " AND (severity_rank, last_seen_ms, id) < (?{}, ?{}, ?{n})",
                        n - 2,
                        n - 1
                    ));
                }
                AlertOrder::Newest => {
                    w.args
                        .extend([Value::Integer(c.last_seen_ms.ms()), Value::Integer(c.id)]);
                    let n = w.args.len();
                    w.sql
                        .push_str(&format!(" AND (last_seen_ms, id) < (?{}, ?{n})", n - 1));
                }
            }
        }
        let order_by = match order {
            AlertOrder::Severity => "severity_rank DESC, last_seen_ms DESC, id DESC",
            AlertOrder::Newest => "last_seen_ms DESC, id DESC",
        };
        w.args.push(Value::Integer(limit as i64));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {} ORDER BY {order_by} LIMIT ?{}",
            w.sql,
            w.args.len()
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params_from_iter(w.args.iter()), alert_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many alerts match `f`.
    pub fn alert_count(&self, f: &AlertFilter) -> Result<u64, StoreError> {
        let w = alert_where(f);
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM alerts WHERE {}", w.sql),
            params_from_iter(w.args.iter()),
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// One alert.
    pub fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_row,
            )
            .optional()?)
    }

    /// Alerts sharing the file's hash or the user with `a`, newest first.
    pub fn related_alerts(&self, a: &Alert, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE id != ?1 AND (user = ?2 OR (?3 IS NOT NULL AND sha256 = ?3))
             ORDER BY last_seen_ms DESC, id DESC LIMIT ?4"
        ))?;
        let rows = st.query_map(params![a.id, a.user, a.sha256, limit as i64], alert_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The events behind an alert: its device's events on its path (as the path or as where
    /// a rename came from), newest first.
    pub fn alert_events(&self, a: &Alert, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        if a.path.is_empty() {
            return Ok(Vec::new());
        }
        self.events_where(
            "device_id = ?1 AND (path = ?2 OR old_path = ?2) ORDER BY seq DESC LIMIT ?3",
            params![a.device_id, a.path, limit as i64],
        )
    }

    /// Where an event's content came from, step by step (see [`super::correlate::lineage`]).
    pub fn lineage(&self, e: &StoredEvent, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        super::correlate::lineage(&self.conn, e, max)
    }

    /// The notes on an alert, oldest first.
    pub fn notes(&self, alert_id: i64) -> Result<Vec<Note>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, time_ms, author, text FROM alert_notes WHERE alert_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([alert_id], |r| {
            from_columns!(
                r,
                Note {
                    id,
                    time_ms,
                    author,
                    text,
                }
            )
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies `change` to alert `id` with one audit line per part, in one transaction.
    /// Returns false when there is no such alert.
    pub fn change_alert(
        &mut self,
        id: i64,
        change: &AlertChange,
        author: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(false);
        }
        let target = format!("alert {id}");
        let line = |action: &str, detail: String| AuditEntry {
            action: action.into(),
            target: target.clone(),
            detail,
            ..audit.clone()
        };
        if let Some(status) = &change.status {
            tx.execute(
                "UPDATE alerts SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )?;
            audit_in(&tx, &line("alert.status", status.to_string()))?;
        }
        if let Some(assignee) = &change.assignee {
            tx.execute(
                "UPDATE alerts SET assignee = ?2 WHERE id = ?1",
                params![id, assignee],
            )?;
            audit_in(
                &tx,
                &line("alert.assign", assignee.clone().unwrap_or_default()),
            )?;
        }
        if let Some(text) = &change.note {
            tx.execute(
                "INSERT INTO alert_notes (alert_id, time_ms, author, text) VALUES (?1, ?2, ?3, ?4)",
                params![id, audit.time_ms, author, text],
            )?;
            audit_in(&tx, &line("alert.note", text.clone()))?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Alerts by severity and user, last seen at or after `since_ms`.
    pub fn alerts_by_user_severity(
        &self,
        since_ms: UnixMs,
    ) -> Result<std::collections::BTreeMap<String, BySeverity>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT user, severity, COUNT(*) FROM alerts WHERE last_seen_ms >= ?1
             GROUP BY user, severity",
        )?;
        let mut out = std::collections::BTreeMap::<String, BySeverity>::new();
        let rows = st.query_map([since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (user, severity, n) = row?;
            out.entry(user).or_default().add(&severity, n as u64);
        }
        Ok(out)
    }

    /// What feeds each user's risk since `since_ms`: alerts by severity (false positives and
    /// steps merged into a sequence left out), export → archive → way-out sequences, volume
    /// spikes (with the largest day), bulk reads of customer files, and their uploads.
    pub fn risk_signals(
        &self,
        since_ms: UnixMs,
    ) -> Result<std::collections::BTreeMap<String, RiskSignals>, StoreError> {
        let mut out = std::collections::BTreeMap::<String, RiskSignals>::new();
        let mut st = self.conn.prepare(
            "SELECT user, severity, rule_id, COUNT(*), MAX(records) FROM alerts
             WHERE last_seen_ms >= ?1 AND status NOT IN ('false_positive', 'merged')
             GROUP BY user, severity, rule_id",
        )?;
        let rows = st.query_map([since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?.max(0) as u64,
                r.get::<_, i64>(4)?.max(0) as u64,
            ))
        })?;
        for row in rows {
            let (user, severity, rule, n, records) = row?;
            let s = out.entry(user).or_default();
            s.alerts.add(&severity, n);
            if rule == super::system_rules::EXFIL_SEQUENCE {
                s.sequences += n;
            } else if rule == super::system_rules::VOLUME_SPIKE {
                s.volume_spikes += n;
                s.volume_max = s.volume_max.max(records);
            }
        }
        // Opens that matched a rule: an upload when an app took the file out, a print job, a
        // file sent to a phone over Bluetooth, else a bulk read.
        let mut st = self.conn.prepare(
            "SELECT user, COALESCE(json_extract(destination, '$.kind'), ''), COUNT(*)
             FROM events WHERE action = 'opened' AND rules != '[]' AND corrected_ms >= ?1
             GROUP BY 1, 2",
        )?;
        let rows = st.query_map([since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?.max(0) as u64,
            ))
        })?;
        for row in rows {
            let (user, kind, n) = row?;
            let s = out.entry(user).or_default();
            match kind.as_str() {
                "upload" => s.uploads += n,
                "print" => s.prints += n,
                "phone" => s.bluetooth += n,
                _ => s.bulk_reads += n,
            }
        }
        Ok(out)
    }

    /// Alerts still open (`new` or `triaged`), by severity.
    pub fn open_alerts_by_severity(&self) -> Result<BySeverity, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT severity, COUNT(*) FROM alerts WHERE status IN ('new', 'triaged')
             GROUP BY severity",
        )?;
        let mut out = BySeverity::default();
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (severity, n) = row?;
            out.add(&severity, n as u64);
        }
        Ok(out)
    }

    /// Per user: customer records in files that matched a rule, and the last event time, for
    /// events at or after `since_ms` (skew-corrected time).
    pub fn records_by_user(
        &self,
        since_ms: UnixMs,
    ) -> Result<std::collections::BTreeMap<String, (u64, i64)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT user, COALESCE(SUM(CASE WHEN rules != '[]' THEN records ELSE 0 END), 0),
                    MAX(COALESCE(corrected_ms, time_ms))
             FROM events WHERE COALESCE(corrected_ms, time_ms) >= ?1 GROUP BY user",
        )?;
        let rows = st.query_map([since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, i64>(1)?.max(0) as u64, r.get::<_, i64>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Events matching `f`, newest first (by storage order), before row `before_id`.
    pub fn event_page(
        &self,
        f: &EventFilter,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut w = Where::new();
        w.scope(&f.scope, "COALESCE(corrected_ms, time_ms)");
        w.opt_text("sha256 = ?", &f.sha256);
        w.opt_text("action = ?", &f.action);
        if let Some(p) = &f.path {
            let like = format!(
                "%{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            w.args.push(Value::Text(like));
            let n = w.args.len();
            w.sql.push_str(&format!(
                " AND (path LIKE ?{n} ESCAPE '\\' OR old_path LIKE ?{n} ESCAPE '\\')"
            ));
        }
        w.opt_int("id < ?", before_id);
        if f.matched {
            w.sql.push_str(" AND rules != '[]'");
        }
        w.args.push(Value::Integer(limit as i64));
        let clause = format!("{} ORDER BY id DESC LIMIT ?{}", w.sql, w.args.len());
        self.events_where(&clause, params_from_iter(w.args.iter()))
    }

    /// The audit log, newest first, before line `before_id`.
    pub fn audit_page(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, time_ms, actor, origin, action, target, detail FROM audit
             WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![before_id, limit as i64], super::audit_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Alerts raised or changed (new events, escalation, status, assignee) after
    /// `after_version`, oldest change first, each with its version: what a forwarder has not
    /// sent yet.
    pub fn alerts_changed_after(
        &self,
        after_version: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Alert)>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT version, {ALERT_COLUMNS} FROM alerts WHERE version > ?1 ORDER BY version LIMIT ?2"
        ))?;
        let rows = st.query_map(params![after_version, limit as i64], |r| {
            let version: i64 = r.get(0)?;
            Ok((version, alert_row_at(r, 1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The alert version a forwarder delivered through; a new forwarder starts at the
    /// newest, so that adding one does not replay history.
    pub fn forward_cursor(&self, name: &str) -> Result<i64, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO forward_cursors (name, last_alert_id)
             VALUES (?1, (SELECT COALESCE(MAX(version), 0) FROM alerts))",
            [name],
        )?;
        let v = tx.query_row(
            "SELECT last_alert_id FROM forward_cursors WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(v)
    }

    /// Moves a forwarder's cursor on after a confirmed delivery.
    pub fn set_forward_cursor(&self, name: &str, version: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE forward_cursors SET last_alert_id = MAX(last_alert_id, ?2) WHERE name = ?1",
            params![name, version],
        )?;
        Ok(())
    }

    /// Each forwarder's lag: alert changes past its cursor (by name).
    pub fn forward_lags(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT f.name, (SELECT COUNT(*) FROM alerts a WHERE a.version > f.last_alert_id)
             FROM forward_cursors f ORDER BY f.name",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{chain, file_body, open_with_device};
    use holdfast_shared::event::{Action, Destination, EventBody, Severity};
    use holdfast_shared::time::UnixMs;

    /// A read of a customer file that matched a rule, by the way out `kind` (none: a bulk
    /// read's open).
    fn opened(path: &str, kind: Option<&str>) -> EventBody {
        let mut body = file_body(path, &[("r", Severity::High)]);
        if let EventBody::File(f) = &mut body {
            f.action = Action::Opened;
            f.destination = kind.map(|k| {
                Box::new(Destination {
                    kind: k.into(),
                    name: "x".into(),
                    ..Destination::default()
                })
            });
        }
        body
    }

    #[test]
    fn risk_counts_each_way_out_of_a_read_apart() {
        let (_d, mut s, d) = open_with_device();
        let bodies = [
            opened("/a", Some("upload")),
            opened("/b", Some("upload")),
            opened("/c", Some("print")),
            opened("/d", Some("phone")),
            opened("/e", None),
            // A created file is no read: it counts through its alerts only.
            file_body("/f", &[("r", Severity::High)]),
        ];
        s.ingest(&d, &chain(&bodies), UnixMs(10_000)).unwrap();
        let r = s.risk_signals(UnixMs(0)).unwrap()["ada"];
        assert_eq!(
            (r.uploads, r.prints, r.bluetooth, r.bulk_reads),
            (2, 1, 1, 1),
            "{r:?}"
        );
    }
}
