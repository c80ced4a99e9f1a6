//! CRM export events in the agents' pipeline: each export a CRM recorded is stored as a file
//! event of the `crm:<connector>` device (the CRM is the device; the user mapped from the
//! CRM's login), held to the same rules by the policy in force, raised for a departing user,
//! counted in the user's volume, and dropped when polled again. A file an agent later sees
//! land, named after the report and within the correlation window, is linked to the export
//! (`crm_link`), and an exfiltration story that starts from it starts in the CRM.

use super::{upsert_alert, Device, Hit, Ingested, Store, StoreError};
use crate::fmt_ms;
use holdfast_shared::event::{
    Action, ContentSummary, EventBody, FileActivity, RuleMatch, Severity,
};
use holdfast_shared::policy::{PolicySet, Subject};
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection, OptionalExtension};

/// A CRM export, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmEvent {
    /// The CRM's id of the event.
    pub id: String,
    pub time_ms: UnixMs,
    /// The Holdfast user, or the CRM login itself when no mapping names one.
    pub user: String,
    /// The CRM login that exported.
    pub login: String,
    pub report: String,
    pub records: u64,
    pub entity: Option<String>,
    pub format: Option<String>,
    /// How it was exported, in words.
    pub how: String,
}

/// Where one CRM's polling stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrmPoll {
    pub connector: String,
    /// Exports from this time on are asked for next.
    pub cursor_ms: UnixMs,
    pub polled_ms: Option<UnixMs>,
    pub ok: bool,
    pub detail: String,
    /// Exports stored so far.
    pub exports: i64,
}

/// The path a CRM export is stored under: `salesforce://kim@acme.example/All Accounts` (the
/// login in it keeps two users' exports of one report two alerts).
pub fn crm_path(vendor: &str, login: &str, report: &str) -> String {
    format!(
        "{}://{}/{report}",
        vendor.to_lowercase(),
        login.replace('/', "%2F")
    )
}

/// The vendor and report of a CRM export's path.
fn path_parts(path: &str) -> Option<(&str, &str)> {
    let (vendor, rest) = path.split_once("://")?;
    Some((vendor, rest.split_once('/')?.1))
}

/// A name made comparable: lowercase letters and digits only (`All Accounts-2026-12-05` and
/// `all_accounts 2026` share `allaccounts`).
pub fn squashed(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a file called `file_name` is the download of report `report`: the report's name
/// (squashed) starts the file's name (CRMs name the file after the report, then a date).
pub fn is_download_of(file_name: &str, report: &str) -> bool {
    let r = squashed(report);
    r.chars().count() >= 2 && squashed(file_name).starts_with(&r)
}

/// The raise in severity levels for `user` at `t` (departing: between notice and effective
/// time), and whether their offboarding has taken effect by then.
pub(super) fn departing_at(
    tx: &Connection,
    user: &str,
    t: UnixMs,
) -> Result<(u8, bool), StoreError> {
    let o: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT effective_ms, COALESCE(notice_ms, started_ms), raise_levels
             FROM offboardings WHERE user = ?1 AND restored_ms IS NULL",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match o {
        Some((effective, notice, raise)) if t.ms() >= notice && t.ms() < effective => {
            (raise.clamp(0, 3) as u8, false)
        }
        Some((effective, _, _)) => (0, t.ms() >= effective),
        None => (0, false),
    })
}

impl Store {
    /// Stores the exports `vendor`'s connector `device_id` (`crm:<name>`) polled, in one
    /// transaction: each new one is an event, its rules' alerts (raised for a departing user),
    /// and its volume counted. Returns how many were new.
    pub fn ingest_crm(
        &mut self,
        device_id: &str,
        vendor: &str,
        events: &[CrmEvent],
        policy: &PolicySet,
        now_ms: UnixMs,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut new = 0;
        for e in events {
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE device_id = ?1 AND external_id = ?2)",
                params![device_id, e.id],
                |r| r.get(0),
            )?;
            if known {
                continue;
            }
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE device_id = ?1",
                [device_id],
                |r| r.get(0),
            )?;
            let path = crm_path(vendor, &e.login, &e.report);
            let summary = ContentSummary {
                file_type: e.format.clone().unwrap_or_else(|| "csv".into()),
                records: e.records,
                customer_table: e.records > 0,
                ..ContentSummary::default()
            };
            let mut f = FileActivity::new(Action::Created, path.clone());
            f.rules = policy.evaluate(&Subject {
                action: Action::Created,
                path: &path,
                summary: Some(&summary),
                headers: &[],
                destination: None,
                origin_records: 0,
            });
            f.summary = Some(summary);
            let body = EventBody::File(f.clone())
                .to_bytes()
                .map_err(|err| StoreError::Encode(err.to_string()))?;
            let rules: Vec<&str> = f.rules.iter().map(|r: &RuleMatch| r.id.as_str()).collect();
            tx.execute(
                "INSERT INTO events (device_id, seq, user, time_ms, received_ms, kind, action, path,
                     records, findings, rules, body, corrected_ms, external_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'file', 'created', ?6, ?7, '{}', ?8, ?9, ?4, ?10)",
                params![
                    device_id,
                    seq,
                    e.user,
                    e.time_ms,
                    now_ms,
                    path,
                    e.records as i64,
                    serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
                    body,
                    e.id
                ],
            )?;
            new += 1;
            let device = Device {
                id: device_id.to_string(),
                user: e.user.clone(),
                hostname: vendor.to_string(),
                ..Device::default()
            };
            let at = Ingested {
                device: &device,
                seq,
                f: &f,
                time_ms: e.time_ms,
            };
            let of = e
                .entity
                .as_deref()
                .map(|x| format!(" of {x}"))
                .unwrap_or_default();
            let size = match e.records {
                0 => "records (the CRM does not say how many)".to_string(),
                n => format!("{n} records"),
            };
            let detail = format!(
                "{}: {size}{of} in report \"{}\" exported by {} at {}",
                e.how,
                e.report,
                e.login,
                fmt_ms(e.time_ms)
            );
            let (raise, offboarded) = departing_at(&tx, &e.user, e.time_ms)?;
            if offboarded {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: super::system_rules::OFFBOARDED_ACCESS,
                        severity: Severity::Critical,
                        detail: &detail,
                        ..Hit::on_file(&at)
                    },
                )?;
            }
            // An export whose size the CRM does not record matches no record-count rule:
            // it is raised on its own, critical for a departing user.
            if e.records == 0 && f.rules.is_empty() {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: super::system_rules::CRM_EXPORT,
                        severity: if raise > 0 {
                            Severity::Critical
                        } else {
                            Severity::Medium
                        },
                        detail: &detail,
                        ..Hit::on_file(&at)
                    },
                )?;
            }
            for m in &f.rules {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: &m.id,
                        severity: m.severity.raised(raise),
                        detail: &detail,
                        ..Hit::on_file(&at)
                    },
                )?;
            }
            self.correlation.volume(&tx, &at)?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Where `connector`'s polling stands; a connector never polled starts at `start`.
    pub fn crm_poll(&self, connector: &str, start: UnixMs) -> Result<CrmPoll, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT cursor_ms, polled_ms, ok, detail,
                        (SELECT COUNT(*) FROM events WHERE device_id = 'crm:' || ?1)
                 FROM crm_polls WHERE connector = ?1",
                [connector],
                |r| {
                    Ok(CrmPoll {
                        connector: connector.to_string(),
                        cursor_ms: r.get(0)?,
                        polled_ms: r.get(1)?,
                        ok: r.get(2)?,
                        detail: r.get(3)?,
                        exports: r.get(4)?,
                    })
                },
            )
            .optional()?;
        Ok(row.unwrap_or(CrmPoll {
            connector: connector.to_string(),
            cursor_ms: start,
            polled_ms: None,
            ok: true,
            detail: String::new(),
            exports: 0,
        }))
    }

    /// Records a poll: the next cursor (only ever forward), when, and how it went.
    pub fn record_crm_poll(
        &self,
        connector: &str,
        cursor_ms: UnixMs,
        polled_ms: UnixMs,
        ok: bool,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO crm_polls (connector, cursor_ms, polled_ms, ok, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (connector) DO UPDATE SET cursor_ms = MAX(cursor_ms, ?2),
                 polled_ms = ?3, ok = ?4, detail = ?5",
            params![connector, cursor_ms, polled_ms, ok, detail],
        )?;
        Ok(())
    }
}

/// The CRM export a file just stored (`event_id`, at `path`, by `user`, at `t`) is the
/// download of: the newest one of the user's within `window_ms` before it (or two minutes
/// after: the CRM may log late) whose report names the file. The link is stored, and a
/// sentence saying it returned for the file's alerts.
pub(super) fn link_download(
    tx: &Connection,
    event_id: i64,
    user: &str,
    path: &str,
    t: UnixMs,
    window_ms: i64,
) -> Result<Option<String>, StoreError> {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let mut st = tx.prepare_cached(
        "SELECT id, path, corrected_ms, device_id FROM events
         WHERE user = ?1 AND device_id LIKE 'crm:%' AND corrected_ms BETWEEN ?2 AND ?3
         ORDER BY corrected_ms DESC LIMIT 100",
    )?;
    let rows = st.query_map(params![user, t.ms() - window_ms, t.ms() + 120_000], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, UnixMs>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (crm_id, crm_path, at, _) = row?;
        let Some((vendor, report)) = path_parts(&crm_path) else {
            continue;
        };
        if is_download_of(name, report) {
            tx.execute(
                "UPDATE events SET crm_link = ?2 WHERE id = ?1",
                params![event_id, crm_id],
            )?;
            return Ok(Some(format!(
                "the download of {} report \"{report}\" exported at {}",
                vendor_name(vendor),
                fmt_ms(at)
            )));
        }
    }
    Ok(None)
}

/// The vendor as people write it, from the lowercase path prefix.
fn vendor_name(v: &str) -> String {
    match v {
        "salesforce" => "Salesforce".into(),
        "hubspot" => "HubSpot".into(),
        other => other.to_string(),
    }
}

/// The CRM step an event's story starts with, when the event is linked to a CRM export:
/// `exported from Salesforce report "All Accounts" (5000 records) at …`.
pub(super) fn crm_step(tx: &Connection, event_id: i64) -> Result<Option<String>, StoreError> {
    let row: Option<(String, Option<i64>, UnixMs)> = tx
        .query_row(
            "SELECT c.path, c.records, c.corrected_ms FROM events e JOIN events c ON c.id = e.crm_link
             WHERE e.id = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.and_then(|(path, records, at)| {
        let (vendor, report) = path_parts(&path)?;
        Some(format!(
            "exported from {} report \"{report}\" ({} records) at {}",
            vendor_name(vendor),
            records.unwrap_or(0),
            fmt_ms(at)
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::*;
    use crate::store::*;

    fn export(id: &str, user: &str, records: u64, t: i64) -> CrmEvent {
        CrmEvent {
            id: id.into(),
            time_ms: UnixMs(t),
            user: user.into(),
            login: format!("{user}@acme.example"),
            report: "All Accounts".into(),
            records,
            entity: Some("Account".into()),
            format: Some("csv".into()),
            how: "Salesforce report export (Lightning)".into(),
        }
    }

    #[test]
    fn downloads_are_told_by_the_report_name() {
        assert!(is_download_of(
            "All Accounts-2026-12-05-10-22-33.csv",
            "All Accounts"
        ));
        assert!(is_download_of("all_accounts (1).xlsx", "All Accounts"));
        assert!(is_download_of("客户名单-2026.xlsx", "客户名单"));
        assert!(!is_download_of("Accounts.csv", "All Accounts"));
        assert!(!is_download_of("x.csv", "X"));
    }

    /// A CRM export is held to the pack's rules by its record count, is critical for a
    /// departing user, and is stored once however often it is polled.
    #[test]
    fn crm_exports_raise_the_packs_rules_once() {
        let (_dir, mut s, _d) = open_with_device();
        let pack = PolicySet::default_pack("~").unwrap();
        let t = 1_800_000_000_000i64;
        let batch = [
            export("e1", "ada", 120, t),
            export("e2", "ada", 20, t + 1),
            export("e3", "bob", 6000, t + 2),
        ];
        assert_eq!(
            s.ingest_crm("crm:sf", "Salesforce", &batch, &pack, UnixMs(t + 10))
                .unwrap(),
            3
        );
        assert_eq!(
            s.ingest_crm("crm:sf", "Salesforce", &batch, &pack, UnixMs(t + 20))
                .unwrap(),
            0
        );
        let alerts = s.alerts(100).unwrap();
        let of = |user: &str| -> Vec<(String, Severity)> {
            alerts
                .iter()
                .filter(|a| a.user == user)
                .map(|a| (a.rule_id.clone(), a.severity))
                .collect()
        };
        assert_eq!(
            of("ada"),
            [("crm-export.bulk-contacts".to_string(), Severity::High)]
        );
        assert_eq!(
            of("bob"),
            [("crm-export.mass-contacts".to_string(), Severity::Critical)]
        );
        let a = alerts.iter().find(|a| a.user == "ada").unwrap();
        assert_eq!(a.device_id, "crm:sf");
        assert_eq!(a.path, "salesforce://ada@acme.example/All Accounts");
        assert!(a.detail.starts_with("Salesforce report export (Lightning): 120 records of Account in report \"All Accounts\" exported by ada@acme.example at "), "{}", a.detail);
        // A departing user's bulk export rises to critical.
        s.start_offboarding(
            &OffboardRow {
                user: "cy".into(),
                started_ms: UnixMs(t),
                effective_ms: UnixMs(t + 86_400_000),
                lookback_ms: 1_000,
                reason: String::new(),
                restored_ms: None,
                notice_ms: UnixMs(t),
                raise_levels: 1,
                successor: None,
            },
            &[],
            &[],
            &AuditEntry {
                id: 0,
                time_ms: UnixMs(t),
                actor: "t".into(),
                origin: "t".into(),
                action: "offboard".into(),
                target: "cy".into(),
                detail: String::new(),
            },
        )
        .unwrap();
        s.ingest_crm(
            "crm:sf",
            "Salesforce",
            &[
                export("e4", "cy", 120, t + 5),
                CrmEvent {
                    report: "Leads".into(),
                    ..export("e5", "cy", 0, t + 6)
                },
                export("e6", "ada", 0, t + 7),
            ],
            &pack,
            UnixMs(t + 30),
        )
        .unwrap();
        let alerts = s.alerts(100).unwrap();
        let of = |user: &str| -> Vec<(String, Severity)> {
            let mut v: Vec<(String, Severity)> = alerts
                .iter()
                .filter(|a| a.user == user)
                .map(|a| (a.rule_id.clone(), a.severity))
                .collect();
            v.sort();
            v
        };
        // An export of unknown size (HubSpot, Zoho) is raised on its own: medium, critical
        // for a departing user.
        assert_eq!(
            of("cy"),
            [
                ("crm-export.bulk-contacts".to_string(), Severity::Critical),
                ("holdfast.crm_export".to_string(), Severity::Critical)
            ]
        );
        let unknown = alerts
            .iter()
            .find(|a| a.rule_id == "holdfast.crm_export" && a.user == "ada")
            .unwrap();
        assert_eq!(unknown.severity, Severity::Medium);
        assert!(
            unknown
                .detail
                .contains(": records (the CRM does not say how many) of Account in report"),
            "{}",
            unknown.detail
        );
    }

    #[test]
    fn the_poll_cursor_only_moves_forward() {
        let (_dir, s, _d) = open_with_device();
        assert_eq!(s.crm_poll("sf", UnixMs(5)).unwrap().cursor_ms, UnixMs(5));
        s.record_crm_poll("sf", UnixMs(100), UnixMs(200), true, "3 exports")
            .unwrap();
        s.record_crm_poll("sf", UnixMs(50), UnixMs(300), false, "HTTP 500")
            .unwrap();
        let p = s.crm_poll("sf", UnixMs(5)).unwrap();
        assert_eq!(
            (p.cursor_ms, p.polled_ms, p.ok, p.detail.as_str()),
            (UnixMs(100), Some(UnixMs(300)), false, "HTTP 500")
        );
    }
}
