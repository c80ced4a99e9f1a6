//! The device registry: enrollment, heartbeats (health, skew, coverage, the last stop and
//! gap), the offline sweep, certificate renewal and revocation.

use super::{
    audit_in, span, system_hit, system_rules, upsert_alert, AuditEntry, Store, StoreError,
};
use crate::fmt_ms;
use holdfast_shared::event::Severity;
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default, schemars::JsonSchema)]
pub struct Device {
    /// The id the collector gave at enrollment (its certificate's common name).
    pub id: String,
    /// The person the device belongs to.
    pub user: String,
    /// As the agent reported it.
    pub hostname: String,
    /// Operating system and version, as the agent reported them.
    pub os: String,
    /// The agent's release.
    pub agent_version: String,
    /// SHA-256 of the device's current certificate (DER, lowercase hex).
    pub cert_sha256: String,
    /// That certificate's serial number.
    pub cert_serial: String,
    /// When the current certificate was issued, and when it expires.
    pub cert_issued_ms: UnixMs,
    /// When that certificate expires.
    pub cert_expires_ms: UnixMs,
    /// When the device first enrolled.
    pub enrolled_ms: UnixMs,
    /// The last heartbeat or batch; `None` before the first.
    pub last_seen_ms: Option<UnixMs>,
    /// When the device was revoked; it can no longer connect.
    pub revoked_ms: Option<UnixMs>,
    /// The highest event sequence number stored from it.
    pub last_seq: u64,
    /// Events waiting in the agent's spool at the last heartbeat.
    pub spool_backlog: Option<u64>,
    /// The first sequence number of this identity's chain.
    pub first_seq: u64,
    /// The policy bundle version the agent last reported.
    pub policy_version: String,
    /// Device clock minus collector clock at the last heartbeat.
    pub clock_skew_ms: Option<i64>,
    /// Set while the device is considered offline.
    pub offline_since_ms: Option<UnixMs>,
    /// When the agent said it was being removed or disabled (until it reports again).
    pub removed_ms: Option<UnixMs>,
    /// What it said then (`package removed`).
    pub removed: Option<String>,
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

/// What a heartbeat reports (the session decides what of it is kept).
pub use holdfast_shared::session::collector::Beat;

impl Store {
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

    pub(super) fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
        from_columns!(
            r,
            Device {
                id,
                user,
                hostname,
                os,
                agent_version,
                cert_sha256,
                cert_serial,
                enrolled_ms,
                last_seen_ms,
                revoked_ms,
                last_seq: |s: Option<u64>| s.unwrap_or(0),
                spool_backlog,
                first_seq,
                policy_version,
                clock_skew_ms,
                offline_since_ms,
                removed_ms,
                removed,
                cert_issued_ms,
                cert_expires_ms,
                coverage: super::json_column,
                last_stop,
                last_gap,
                health: |h: String| match h {
                    h if h.is_empty() => "ok".to_string(),
                    h => format!("degraded: {h}"),
                },
            }
        )
    }

    pub(super) const DEVICE_COLUMNS: &'static str =
        "d.id, d.user, d.hostname, d.os, d.agent_version, d.cert_sha256, d.cert_serial,
        d.enrolled_ms, d.last_seen_ms, d.revoked_ms,
        (SELECT MAX(seq) FROM events e WHERE e.device_id = d.id), d.spool_backlog,
        d.first_seq, d.policy_version, d.clock_skew_ms, d.offline_since_ms,
        d.removed_ms, d.removed, d.cert_issued_ms, d.cert_expires_ms, d.coverage, d.last_stop, d.last_gap, d.health";

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
        now_ms: UnixMs,
        skew_tolerance_ms: i64,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let (prev_skew, offline_since, prev_health): (Option<i64>, Option<UnixMs>, String) = tx
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
                let note = format!("; recovered at {}", fmt_ms(now_ms));
                add_to_open(&tx, system_rules::AGENT_DEGRADED, &device.id, now_ms, &note)?;
            }
        }
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?2, spool_backlog = ?3, agent_version = ?4,
                 hostname = ?5, os = ?6, policy_version = ?7, clock_skew_ms = ?8,
                 offline_since_ms = NULL, removed_ms = NULL, removed = NULL, edm_version = ?9,
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
            let note = format!(
                "; back at {} after {}",
                fmt_ms(now_ms),
                span(now_ms - since)
            );
            add_to_open(&tx, system_rules::AGENT_OFFLINE, &device.id, now_ms, &note)?;
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
        now_ms: UnixMs,
        offline_after_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.conn.transaction()?;
        let silent: Vec<(String, String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, user, COALESCE(last_seen_ms, enrolled_ms) FROM devices
                 WHERE revoked_ms IS NULL AND offline_since_ms IS NULL AND removed_ms IS NULL
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
                fmt_ms(UnixMs(*last)),
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
        issued_ms: UnixMs,
        expires_ms: UnixMs,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET prev_cert_sha256 = cert_sha256, cert_sha256 = ?2, cert_serial = ?3,
                 cert_issued_ms = ?4, cert_expires_ms = ?5
             WHERE id = ?1",
            params![device_id, cert_sha256, serial, issued_ms, expires_ms],
        )?;
        Ok(())
    }

    /// Revokes a device from now on. Returns `false` when no such device exists; revoking
    /// twice keeps the first revocation time.
    /// Revokes a device (idempotent); the first revocation is audited in its transaction.
    pub fn revoke_device(
        &self,
        id: &str,
        now_ms: UnixMs,
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
}

/// Appends `note` to the device's open (new or triaged) alert of `rule`, if it has one: how a
/// system alert says the condition ended.
fn add_to_open(
    tx: &Connection,
    rule: &str,
    device_id: &str,
    now_ms: UnixMs,
    note: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE alerts SET detail = detail || ?3, last_seen_ms = ?2
         WHERE rule_id = ?1 AND device_id = ?4 AND status IN ('new', 'triaged')",
        params![rule, now_ms, note, device_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::*;
    use crate::store::*;

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
            s.heartbeat(&d, b, UnixMs(t), 60_000).unwrap();
        }
        let dev = s.devices().unwrap().remove(0);
        assert_eq!(
            dev.health,
            "degraded: pipeline: spool database: disk I/O error"
        );
        let alerts = s.alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule_id, system_rules::AGENT_DEGRADED);
        s.heartbeat(&d, &beat(0), UnixMs(30), 60_000).unwrap();
        assert_eq!(s.devices().unwrap()[0].health, "ok");
        let a = s.alerts(10).unwrap().remove(0);
        assert!(a.detail.contains("; recovered at"), "{}", a.detail);
    }

    #[test]
    fn heartbeats_skew_offline_and_return() {
        let (_dir, mut s, d) = open_with_device();
        let hour = 3_600_000;
        assert_eq!(
            s.heartbeat(&d, &beat(1_000), UnixMs(10 * hour), 300_000)
                .unwrap(),
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
        s.heartbeat(&d, &beat(2 * hour), UnixMs(10 * hour), 300_000)
            .unwrap();
        s.heartbeat(&d, &beat(2 * hour), UnixMs(10 * hour + 1), 300_000)
            .unwrap();
        let skew = alerts_of(&s, system_rules::CLOCK_SKEW);
        assert_eq!((skew.len(), skew[0].event_count), (1, 1));
        assert_eq!(
            skew[0].detail,
            "device clock is 2h ahead of the collector's"
        );
        // Events from the skewed device are placed at collector time, never in the future.
        s.ingest(&d, &chain(&[file_body("/a", &[])]), UnixMs(10 * hour))
            .unwrap();
        let e = &s.events(1).unwrap()[0];
        assert_eq!(
            (e.time_ms, e.corrected_ms),
            (UnixMs(1000), UnixMs(1000 - 2 * hour))
        );
        // Silent for longer than 10 minutes: flagged once; a heartbeat notes the return.
        let minute = 60_000;
        assert!(s
            .sweep_offline(UnixMs(10 * hour + 5 * minute), 10 * minute)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.sweep_offline(UnixMs(10 * hour + 11 * minute), 10 * minute)
                .unwrap(),
            ["dev-1"]
        );
        assert!(s
            .sweep_offline(UnixMs(10 * hour + 20 * minute), 10 * minute)
            .unwrap()
            .is_empty());
        s.heartbeat(&d, &beat(0), UnixMs(11 * hour), 300_000)
            .unwrap();
        let off = alerts_of(&s, system_rules::AGENT_OFFLINE);
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
        s.renew_cert("dev-1", "ee", "02", UnixMs(50), UnixMs(150))
            .unwrap();
        let by_new = s.device_by_cert("ee").unwrap().unwrap();
        assert_eq!(
            (
                by_new.cert_serial.as_str(),
                by_new.cert_issued_ms,
                by_new.cert_expires_ms
            ),
            ("02", UnixMs(50), UnixMs(150))
        );
        assert_eq!(
            s.device_by_cert("ff").unwrap().map(|d| d.id),
            Some("dev-1".into())
        );
        s.renew_cert("dev-1", "dd", "03", UnixMs(100), UnixMs(200))
            .unwrap();
        assert!(s.device_by_cert("ff").unwrap().is_none());
    }
}
