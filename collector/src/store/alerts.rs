//! Alerts as stored: the rules the collector raises about the channel itself, one open
//! alert per rule, device, file and status (raised again, it is updated, not repeated), and
//! the alerts that agents' notices raise.

use super::{AlertFilter, AlertOrder};
use super::{Device, Store, StoreError};
use holdfast_shared::event::Severity;
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection};
use serde::Serialize;

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
    /// The agent said it is being removed or disabled (a package removal): high, critical
    /// for a departing user. The device shows `agent_removed` instead of going offline.
    pub const AGENT_REMOVED: &str = "holdfast.agent_removed";
    /// A stage of the agent failed and is being restarted (its heartbeat says which and why).
    pub const AGENT_DEGRADED: &str = "holdfast.agent_degraded";
    /// While the agent was not running (stopped or crashed), customer files were created
    /// or changed: found and reported at its next start.
    pub const COVERAGE_GAP: &str = "holdfast.coverage_gap";
    /// A CRM recorded an export without saying how many records it held (HubSpot's audit
    /// log, Zoho's when its entry has no count): medium, critical for a departing user.
    pub const CRM_EXPORT: &str = "holdfast.crm_export";
}

/// An alert to raise or update (one open alert per rule, device and path).
pub(super) struct Hit<'a> {
    pub(super) rule_id: &'a str,
    pub(super) severity: Severity,
    pub(super) user: &'a str,
    pub(super) device_id: &'a str,
    pub(super) path: &'a str,
    pub(super) sha256: Option<&'a str>,
    pub(super) records: i64,
    pub(super) time_ms: UnixMs,
    pub(super) seq: i64,
    pub(super) detail: &'a str,
}

/// Where an alert stands in triage.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Raised, not yet looked at.
    New,
    /// Someone is on it.
    Triaged,
    /// Dealt with.
    Resolved,
    /// Not what it looked like.
    FalsePositive,
    /// Folded into a correlated alert by the collector (no one sets it).
    Merged,
}

impl AlertStatus {
    /// Every status, in their usual order.
    pub const ALL: [AlertStatus; 5] = [
        AlertStatus::New,
        AlertStatus::Triaged,
        AlertStatus::Resolved,
        AlertStatus::FalsePositive,
        AlertStatus::Merged,
    ];

    /// The name stored, sent and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::New => "new",
            AlertStatus::Triaged => "triaged",
            AlertStatus::Resolved => "resolved",
            AlertStatus::FalsePositive => "false_positive",
            AlertStatus::Merged => "merged",
        }
    }

    /// Parses a stored or given name; `None` for anything else.
    pub fn parse(s: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the alert still wants attention (new or triaged).
    pub fn is_open(self) -> bool {
        matches!(self, AlertStatus::New | AlertStatus::Triaged)
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Alert {
    pub id: i64,
    pub rule_id: String,
    #[schemars(with = "String")]
    pub severity: Severity,
    pub status: AlertStatus,
    pub user: String,
    pub device_id: String,
    pub path: String,
    pub sha256: Option<String>,
    pub records: u64,
    pub event_count: u64,
    pub first_seen_ms: UnixMs,
    pub last_seen_ms: UnixMs,
    /// What a system alert is about, in words.
    pub detail: String,
    /// Who is working on it.
    pub assignee: Option<String>,
}

/// A text column read as one of its names (a severity, a status); a name it does not know is
/// a conversion error naming the column, never a panic.
fn typed<T>(
    r: &rusqlite::Row<'_>,
    at: usize,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(at)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            at,
            rusqlite::types::Type::Text,
            format!("unknown value `{text}`").into(),
        )
    })
}

/// The columns [`alert_row`] reads, in order.
pub(super) const ALERT_COLUMNS: &str =
    "id, rule_id, severity, status, user, device_id, path, sha256, records,
    event_count, first_seen_ms, last_seen_ms, detail, assignee";

pub(super) fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    alert_row_at(r, 0)
}

/// [`alert_row`] for columns that start at index `at` of the row.
pub(super) fn alert_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(at)?,
        rule_id: r.get(at + 1)?,
        severity: typed(r, at + 2, Severity::parse)?,
        status: typed(r, at + 3, AlertStatus::parse)?,
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

impl Store {
    /// Alerts, most severe and newest first.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alert_page(&AlertFilter::default(), AlertOrder::Severity, None, limit)
    }
}

/// A system alert about a device (no file path).
/// What the agent's stop and gap notices raise, and the device's record of them.
pub(super) fn notice_alerts(
    tx: &Connection,
    device: &Device,
    n: &holdfast_shared::event::AgentNotice,
    corrected_ms: UnixMs,
    now_ms: UnixMs,
    seq: i64,
) -> Result<(), StoreError> {
    if n.kind == holdfast_shared::event::notice::AGENT_REMOVED {
        return removal_alert(tx, device, n, corrected_ms, now_ms, seq);
    }
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

/// An agent's word that it is being removed: the device is marked `agent_removed` (no
/// offline alert follows) and an alert raised, critical while its user is departing or
/// once they have left.
fn removal_alert(
    tx: &Connection,
    device: &Device,
    n: &holdfast_shared::event::AgentNotice,
    corrected_ms: UnixMs,
    now_ms: UnixMs,
    seq: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE devices SET removed_ms = ?2, removed = ?3 WHERE id = ?1",
        params![device.id, corrected_ms, n.message],
    )?;
    let (raise, offboarded) = super::crm::departing_at(tx, &device.user, corrected_ms)?;
    let severity = if raise > 0 || offboarded {
        Severity::Critical
    } else {
        Severity::High
    };
    let detail = format!("the agent was removed: {}", n.message);
    let mut h = system_hit(
        &device.user,
        &device.id,
        system_rules::AGENT_REMOVED,
        severity,
        &detail,
        now_ms,
        seq,
    );
    h.time_ms = corrected_ms;
    upsert_alert(tx, &h)
}

impl<'a> Hit<'a> {
    /// A hit on file activity `f` of `device`: its path, hash and record count, no detail
    /// (give the rule and severity, and override what differs).
    pub(super) fn on_file(at: &super::correlate::Ingested<'a>) -> Hit<'a> {
        let (device, seq, f, time_ms) = at.parts();
        Hit {
            rule_id: "",
            severity: Severity::Low,
            user: &device.user,
            device_id: &device.id,
            path: &f.path,
            sha256: f.sha256.as_deref(),
            records: f.summary.as_ref().map_or(0, |s| s.records) as i64,
            time_ms,
            seq,
            detail: "",
        }
    }
}

pub(super) fn system_hit<'a>(
    user: &'a str,
    device_id: &'a str,
    rule_id: &'a str,
    severity: Severity,
    detail: &'a str,
    time_ms: UnixMs,
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
pub(super) fn upsert_alert(tx: &Connection, h: &Hit<'_>) -> Result<(), StoreError> {
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
pub(super) fn span(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

pub(super) fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}
