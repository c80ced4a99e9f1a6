//! Alerts: the filtered, ordered, paged list; one alert with its lineage and notes; status, assignee and note changes, one by one or in bulk (each audited).

use super::{
    bad_cursor, decode_cursor, encode_cursor, limit, page_of, path_id, scope, ApiBody, ApiQuery,
    Authed, St, CURSOR, DEVICE, LIMIT, USER,
};
use crate::http::auth::Caller;
use crate::http::params::{Kind, Param, Query};
use crate::http::{ApiError, Http};
use crate::store::AlertStatus;
use crate::store::{Alert, AlertChange, AlertCursor, AlertFilter, AlertOrder, Note, StoredEvent};
use crate::triage::{settable, STATUSES};
use axum::extract::{Path, State};
use axum::Json;
use holdfast_shared::event::Severity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];

pub(super) const ALERT_PARAMS: &[Param] = &[
    Param::new(
        "status",
        Kind::ListOf(STATUSES),
        "Comma-separated statuses.",
    ),
    Param::new(
        "severity",
        Kind::ListOf(SEVERITIES),
        "Comma-separated severities.",
    ),
    Param::text("rule", "Rule id."),
    USER,
    DEVICE,
    Param::text("assignee", "Assignee."),
    Param::new(
        "since",
        Kind::Time,
        "Last seen at or after (RFC 3339, epoch ms, or a duration before now such as 24h).",
    ),
    Param::new("until", Kind::Time, "Last seen before."),
    Param::new(
        "sort",
        Kind::OneOf(&["severity", "newest"]),
        "`severity` (default: most severe, then newest) or `newest`.",
    ),
    LIMIT,
    CURSOR,
];

pub(super) fn alert_cursor(order: AlertOrder, c: &AlertCursor) -> String {
    let tag = match order {
        AlertOrder::Severity => "s",
        AlertOrder::Newest => "n",
    };
    encode_cursor(&format!("a1.{tag}.{}.{}.{}", c.rank, c.last_seen_ms, c.id))
}

pub(super) fn parse_alert_cursor(order: AlertOrder, raw: &str) -> Result<AlertCursor, ApiError> {
    let s = decode_cursor(raw)?;
    let parts: Vec<&str> = s.split('.').collect();
    let want = match order {
        AlertOrder::Severity => "s",
        AlertOrder::Newest => "n",
    };
    match parts.as_slice() {
        ["a1", tag, rank, last, id] if *tag == want => Ok(AlertCursor {
            rank: rank.parse().map_err(|_| bad_cursor())?,
            last_seen_ms: last.parse().map_err(|_| bad_cursor())?,
            id: id.parse().map_err(|_| bad_cursor())?,
        }),
        ["a1", _, ..] => Err(ApiError::BadRequest(
            "query parameter `cursor`: made for another `sort`; start again without a cursor"
                .into(),
        )),
        _ => Err(bad_cursor()),
    }
}

/// A page of alerts.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// Alerts matching the filter, across all pages.
    pub total: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One alert in full.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertDetail {
    pub alert: Alert,
    /// Real customers (exact data match) in the file, when the agent had a customer set.
    pub customers: Option<u64>,
    /// The events on the alert's file on its device, newest first: where it went.
    pub events: Vec<StoredEvent>,
    /// Where the content came from, newest step first: the earlier sightings of the same
    /// content (a rename, the file an archive was made of, the first export).
    pub lineage: Vec<StoredEvent>,
    /// The user's other activity in the 7 days up to the alert, newest first.
    pub user_activity: Vec<StoredEvent>,
    /// Alerts of the same user or the same file.
    pub related: Vec<Alert>,
    pub notes: Vec<Note>,
}

/// A change to an alert; give any of the fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPatch {
    /// new, triaged, resolved or false_positive.
    pub status: Option<String>,
    /// Who works on it; an empty string clears it.
    pub assignee: Option<String>,
    /// A note to add.
    pub note: Option<String>,
}

/// Set many alerts' status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdate {
    /// At most 500.
    pub ids: Vec<i64>,
    /// new, triaged, resolved or false_positive: the same for all.
    pub status: String,
}

/// What a bulk update did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BulkResult {
    pub updated: Vec<i64>,
    pub failed: Vec<BulkFailure>,
}

/// One alert a bulk update could not change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BulkFailure {
    pub id: i64,
    pub error: String,
}

/// The filter, order and cursor of an alert query.
pub(in crate::http) fn alert_query(
    q: &Query,
) -> Result<(AlertFilter, AlertOrder, Option<AlertCursor>), ApiError> {
    let f = AlertFilter {
        scope: scope(q),
        // Both lists were checked against their names when the query was parsed.
        statuses: q
            .list("status")
            .iter()
            .filter_map(|s| AlertStatus::parse(s))
            .collect(),
        severities: q
            .list("severity")
            .iter()
            .filter_map(|s| Severity::parse(s))
            .collect(),
        rule: q.text("rule"),
        assignee: q.text("assignee"),
    };
    let order = match q.text("sort").as_deref() {
        Some("newest") => AlertOrder::Newest,
        _ => AlertOrder::Severity,
    };
    let after = q
        .text("cursor")
        .map(|c| parse_alert_cursor(order, &c))
        .transpose()?;
    Ok((f, order, after))
}

/// One page of alerts for `q`.
pub(in crate::http) async fn alert_page(st: &Arc<Http>, q: &Query) -> Result<AlertPage, ApiError> {
    let (f, order, after) = alert_query(q)?;
    let n = limit(q);
    st.db(move |s| {
        let (alerts, next_cursor) =
            page_of(s.alert_page(&f, order, after.as_ref(), n + 1)?, n, |a| {
                alert_cursor(order, &AlertCursor::after(a))
            });
        Ok(AlertPage {
            total: s.alert_count(&f)?,
            alerts,
            next_cursor,
        })
    })
    .await
}

pub(super) async fn list_alerts(
    State(st): St,
    ApiQuery(q): ApiQuery,
) -> Result<Json<AlertPage>, ApiError> {
    Ok(Json(alert_page(&st, &q).await?))
}

/// An alert in full.
pub(in crate::http) async fn detail(st: &Arc<Http>, id: i64) -> Result<AlertDetail, ApiError> {
    st.db(move |s| {
        let alert = s
            .alert(id)?
            .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
        let events = s.alert_events(&alert, 100)?;
        let customers = events
            .iter()
            .filter_map(|e| e.findings.get("edm").copied())
            .max();
        let lineage = match events.first() {
            Some(latest) => s.lineage(latest, 10)?,
            None => Vec::new(),
        };
        let week = 7 * 86_400_000;
        let mut user_activity = s.events_of_user(
            &alert.user,
            alert.last_seen_ms - week,
            alert.last_seen_ms,
            10_000,
        )?;
        user_activity.reverse();
        user_activity.truncate(50);
        Ok(AlertDetail {
            customers,
            lineage,
            events,
            user_activity,
            related: s.related_alerts(&alert, 20)?,
            notes: s.notes(id)?,
            alert,
        })
    })
    .await
}

pub(super) async fn alert_detail(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    Ok(Json(detail(&st, path_id(&id)?).await?))
}

/// Applies a change to an alert as `c`.
pub(in crate::http) async fn change(
    st: &Arc<Http>,
    c: &Caller,
    id: i64,
    change: AlertChange,
) -> Result<Alert, ApiError> {
    let actor = c.actor();
    st.db(move |s| {
        Ok(crate::triage::change(
            s,
            id,
            &change,
            &actor,
            crate::now_ms(),
        )?)
    })
    .await
}

pub(super) async fn update_alert(
    State(st): St,
    Authed(c): Authed,
    Path(id): Path<String>,
    ApiBody(p): ApiBody<AlertPatch>,
) -> Result<Json<Alert>, ApiError> {
    let id = path_id(&id)?;
    let ch = AlertChange {
        status: p.status.as_deref().map(settable).transpose()?,
        assignee: p.assignee.map(|a| Some(a).filter(|a| !a.trim().is_empty())),
        note: p.note,
    };
    Ok(Json(change(&st, &c, id, ch).await?))
}

/// Sets many alerts' status, one by one (each audited).
pub(in crate::http) async fn bulk(
    st: &Arc<Http>,
    c: &Caller,
    ids: Vec<i64>,
    status: String,
) -> Result<BulkResult, ApiError> {
    if ids.is_empty() || ids.len() > 500 {
        return Err(ApiError::BadRequest("ids: give 1 to 500 alert ids".into()));
    }
    let to = settable(&status).map_err(|_| {
        ApiError::BadRequest(format!(
            "status: `{status}` is not one of {}",
            STATUSES.join(", ")
        ))
    })?;
    let actor = c.actor();
    st.db(move |s| {
        let mut out = BulkResult {
            updated: Vec::new(),
            failed: Vec::new(),
        };
        let now = crate::now_ms();
        for id in ids {
            let ch = AlertChange {
                status: Some(to),
                ..Default::default()
            };
            match crate::triage::change(s, id, &ch, &actor, now) {
                Ok(_) => out.updated.push(id),
                Err(crate::triage::TriageError::Store(e)) => return Err(e.into()),
                Err(e) => out.failed.push(BulkFailure {
                    id,
                    error: e.to_string(),
                }),
            }
        }
        Ok(out)
    })
    .await
}

pub(super) async fn bulk_update(
    State(st): St,
    Authed(c): Authed,
    ApiBody(b): ApiBody<BulkUpdate>,
) -> Result<Json<BulkResult>, ApiError> {
    Ok(Json(bulk(&st, &c, b.ids, b.status).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AlertCursor, AlertOrder};
    use holdfast_shared::time::UnixMs;

    #[test]
    fn alert_cursors_round_trip_and_refuse_another_sort() {
        let c = AlertCursor {
            rank: 3,
            last_seen_ms: UnixMs(1_700_000_000_000),
            id: 42,
        };
        let s = alert_cursor(AlertOrder::Severity, &c);
        assert_eq!(parse_alert_cursor(AlertOrder::Severity, &s).unwrap(), c);
        let e = parse_alert_cursor(AlertOrder::Newest, &s).unwrap_err();
        assert!(e.to_string().contains("another `sort`"), "{e}");
        assert!(parse_alert_cursor(AlertOrder::Newest, "%%%").is_err());
    }
}
