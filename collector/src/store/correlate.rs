//! Correlation on ingest: an export that is archived and then leaves the device (removable
//! media, a cloud-sync folder, a share) within an hour becomes one critical alert telling the
//! whole story, `holdfast.exfil_sequence`, and the alerts of its steps are merged into it.
//! Lineage (each event's `origin`, followed back through the device's events) is what ties
//! the steps together, whatever the files are called.

use super::{events_where_in, system_rules, upsert_alert, Hit, StoreError, StoredEvent};
use crate::fmt_ms;
use holdfast_shared::event::{FileActivity, Severity};
use rusqlite::{params, Connection};

/// Longest time from the export to its leaving the device, for one story.
pub const WINDOW_MS: i64 = 3_600_000;
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

/// Raises (or updates) the sequence alert when `f`, just stored as `seq`, completes an
/// export → archive → way out story, and merges the steps' open alerts into it.
pub(super) fn sequence(
    tx: &Connection,
    device: &super::Device,
    seq: i64,
    f: &FileActivity,
    time_ms: i64,
) -> Result<(), StoreError> {
    let Some(dest) = &f.destination else {
        return Ok(());
    };
    if f.rules.is_empty() || f.origin.is_none() {
        return Ok(());
    }
    let Some(this) = events_where_in(tx, "device_id = ?1 AND seq = ?2", params![device.id, seq])?
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
    if !(archived && exported && time_ms.saturating_sub(root.corrected_ms) <= WINDOW_MS) {
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
    steps.push(format!(
        "{} onto {} {} at {}",
        file_name(&f.path),
        dest.kind,
        dest.name,
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
            user: &device.user,
            device_id: &device.id,
            path: &f.path,
            sha256: f.sha256.as_deref(),
            records,
            time_ms,
            seq,
            detail: &detail,
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
