//! Correlation on ingest. An export that is archived and then leaves the device (removable
//! media, a cloud-sync folder, a share, an upload through a browser, mail or chat app) within the window (an hour by default) becomes one
//! critical alert telling the whole story, `holdfast.exfil_sequence`, and the alerts of its
//! steps are merged into it. Lineage (each event's `origin`, followed back through the
//! device's events) is what ties the steps together, whatever the files are called. And a
//! user who handles far more customer records in a day than their own 30-day average
//! (ten times, by default) raises `holdfast.volume_spike`.

use super::{events_where_in, system_rules, upsert_alert, Hit, StoreError, StoredEvent};
use crate::fmt_ms;
use holdfast_shared::event::{FileActivity, Severity};
use holdfast_shared::time::UnixMs;
use rusqlite::{params, Connection};

/// File activity just stored by ingest: what correlation and the file's alerts start from.
#[derive(Clone, Copy)]
pub(super) struct Ingested<'a> {
    pub(super) device: &'a super::Device,
    pub(super) seq: i64,
    pub(super) f: &'a FileActivity,
    /// The event's skew-corrected time.
    pub(super) time_ms: UnixMs,
}

impl<'a> Ingested<'a> {
    /// Device, sequence number, activity and time.
    pub(super) fn parts(&self) -> (&'a super::Device, i64, &'a FileActivity, UnixMs) {
        (self.device, self.seq, self.f, self.time_ms)
    }
}

/// How ingest correlates: collector.toml `[correlation]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correlation {
    /// Longest time from the export to its leaving the device, for one story.
    pub window_ms: i64,
    /// A day's customer records this many times the user's daily average is a spike.
    pub volume_factor: u32,
    /// Fewer records than this in a day are never a spike, whatever the average.
    pub volume_min_records: u64,
}

impl Default for Correlation {
    fn default() -> Correlation {
        Correlation {
            window_ms: 3_600_000,
            volume_factor: 10,
            volume_min_records: 1_000,
        }
    }
}

const DAY_MS: i64 = 86_400_000;
/// Days of history the volume baseline averages over.
const BASELINE_DAYS: i64 = 30;
/// Days of history a user needs before their volume is judged.
const BASELINE_MIN_DAYS: i64 = 7;
/// Steps followed back, at most.
const MAX_STEPS: usize = 10;

/// Where `e`'s content came from, newest step first: the event its origin names (by
/// sequence number, or the first earlier event at the origin's path), preceded by the
/// renames and copies of that same content in between, then that event's origin, and so on,
/// up to `max` steps.
pub fn lineage(
    conn: &Connection,
    e: &StoredEvent,
    max: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out: Vec<StoredEvent> = Vec::new();
    let mut at = e.clone();
    while out.len() < max {
        let Some(o) = at.origin.clone() else { break };
        let by_seq = match o.seq {
            Some(seq) => events_where_in(
                conn,
                "device_id = ?1 AND seq = ?2",
                params![at.device_id, seq as i64],
            )?
            .into_iter()
            .next(),
            None => None,
        };
        let prev = match by_seq {
            Some(p) => Some(p),
            None => events_where_in(
                conn,
                "device_id = ?1 AND path = ?2 AND seq < ?3 ORDER BY seq LIMIT 1",
                params![at.device_id, o.path, at.seq as i64],
            )?
            .into_iter()
            .next(),
        };
        let Some(prev) = prev else { break };
        if prev.id == e.id || out.iter().any(|x| x.id == prev.id) {
            break;
        }
        if let Some(sha) = &prev.sha256 {
            let between = events_where_in(
                conn,
                "device_id = ?1 AND sha256 = ?2 AND seq > ?3 AND seq < ?4 AND action != 'deleted'
                 ORDER BY seq DESC LIMIT 5",
                params![at.device_id, sha, prev.seq as i64, at.seq as i64],
            )?;
            for b in between {
                if b.id != e.id && !out.iter().any(|x| x.id == b.id) && out.len() < max {
                    out.push(b);
                }
            }
        }
        out.push(prev.clone());
        at = prev;
    }
    Ok(out)
}

fn file_name(p: &str) -> &str {
    p.rsplit(['/', '\\']).next().unwrap_or(p)
}

impl Correlation {
    /// Raises (or updates) the sequence alert when `f`, just stored as `seq`, completes an
    /// export → archive → way out story, and merges the steps' open alerts into it.
    pub(super) fn sequence(&self, tx: &Connection, at: &Ingested<'_>) -> Result<(), StoreError> {
        let (device, seq, f, time_ms) = at.parts();
        let Some(dest) = &f.destination else {
            return Ok(());
        };
        if f.rules.is_empty() || f.origin.is_none() {
            return Ok(());
        }
        let Some(this) =
            events_where_in(tx, "device_id = ?1 AND seq = ?2", params![device.id, seq])?
                .into_iter()
                .next()
        else {
            return Ok(());
        };
        let chain = lineage(tx, &this, MAX_STEPS)?;
        let Some(root) = chain.last() else {
            return Ok(());
        };
        let archived = std::iter::once(&this)
            .chain(chain.iter())
            .any(|e| e.origin.as_ref().is_some_and(|o| o.via == "archive"));
        let exported = !root.rules.is_empty();
        if !(archived && exported && time_ms.since(root.corrected_ms) <= self.window_ms) {
            return Ok(());
        }
        let mut steps: Vec<String> = chain
            .iter()
            .rev()
            .map(|e| {
                let what = match (
                    e.action.as_deref(),
                    e.origin.as_ref().map(|o| o.via.as_str()),
                ) {
                    (_, Some("archive")) => "zipped into",
                    (Some("renamed"), _) => "renamed to",
                    (_, Some("copy")) => "copied to",
                    _ => "exported as",
                };
                format!(
                    "{what} {} at {}",
                    file_name(e.path.as_deref().unwrap_or("")),
                    fmt_ms(e.corrected_ms)
                )
            })
            .collect();
        if let Some(first) = super::crm::crm_step(tx, root.id)? {
            steps.insert(0, first);
        }
        steps.push(format!(
            "{} {} at {}",
            file_name(&f.path),
            dest.way_out(),
            fmt_ms(time_ms)
        ));
        let detail = steps.join(" → ");
        let records = std::iter::once(&this)
            .chain(chain.iter())
            .filter_map(|e| e.records)
            .max()
            .unwrap_or(0) as i64;
        upsert_alert(
            tx,
            &Hit {
                rule_id: system_rules::EXFIL_SEQUENCE,
                severity: Severity::Critical,
                records,
                detail: &detail,
                ..Hit::on_file(at)
            },
        )?;
        // The steps' own alerts are part of the story now.
        let mut paths: Vec<String> = chain.iter().filter_map(|e| e.path.clone()).collect();
        paths.push(f.path.clone());
        for p in paths {
            tx.execute(
                "UPDATE alerts SET status = 'merged'
                 WHERE device_id = ?1 AND path = ?2 AND rule_id != ?3 AND status IN ('new', 'triaged')",
                params![device.id, p, system_rules::EXFIL_SEQUENCE],
            )?;
        }
        Ok(())
    }

    /// Raises (or updates) the user's volume alert when `f`, just stored, brings the customer
    /// records they handled in the last 24 hours (files that matched a rule) to `volume_factor`
    /// times their daily average over the 30 days before, and at least `volume_min_records`.
    /// A user with less than a week of history is not judged.
    pub(super) fn volume(&self, tx: &Connection, at: &Ingested<'_>) -> Result<(), StoreError> {
        let (device, seq, f, time_ms) = at.parts();
        let records = f.summary.as_ref().map_or(0, |s| s.records);
        if f.rules.is_empty() || records == 0 {
            return Ok(());
        }
        let sum = |from: UnixMs, to: UnixMs| -> Result<i64, StoreError> {
            Ok(tx.query_row(
                "SELECT COALESCE(SUM(records), 0) FROM events
                 WHERE user = ?1 AND corrected_ms > ?2 AND corrected_ms <= ?3 AND rules != '[]'",
                params![device.user, from, to],
                |r| r.get(0),
            )?)
        };
        let day_start = time_ms - DAY_MS;
        let today = sum(day_start, time_ms)?;
        if (today as u64) < self.volume_min_records {
            return Ok(());
        }
        let first: Option<UnixMs> = tx.query_row(
            "SELECT MIN(corrected_ms) FROM events WHERE user = ?1 AND corrected_ms > ?2",
            params![device.user, day_start - BASELINE_DAYS * DAY_MS],
            |r| r.get(0),
        )?;
        let Some(first) = first else { return Ok(()) };
        let days = ((day_start - first) / DAY_MS).min(BASELINE_DAYS);
        if days < BASELINE_MIN_DAYS {
            return Ok(());
        }
        let history = sum(day_start - days * DAY_MS, day_start)?;
        let average = history as f64 / days as f64;
        if (today as f64) < f64::from(self.volume_factor) * average.max(1.0) {
            return Ok(());
        }
        let times = today as f64 / average.max(1.0);
        let detail = format!(
            "{today} customer records handled in the 24 hours to {}, {times:.0}× the daily average of the {days} days before ({average:.0})",
            fmt_ms(time_ms)
        );
        upsert_alert(
            tx,
            &Hit {
                rule_id: system_rules::VOLUME_SPIKE,
                severity: Severity::High,
                user: &device.user,
                device_id: &device.id,
                path: "",
                sha256: None,
                records: today,
                time_ms,
                seq,
                detail: &detail,
            },
        )?;
        Ok(())
    }
}
