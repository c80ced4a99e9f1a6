//! Event search and the audit log, by cursor pages.

use super::{
    encode_cursor, id_cursor, limit, page_of, scope, ApiQuery, St, CURSOR, DEVICE, LIMIT, USER,
};
use crate::http::params::{Kind, Param, Query};
use crate::http::{ApiError, Http};
use crate::store::{AuditEntry, EventFilter, StoredEvent};
use axum::extract::State;
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

pub(super) const EVENT_PARAMS: &[Param] = &[
    USER,
    DEVICE,
    Param::text("sha256", "File content hash."),
    Param::text("path", "Substring of the path (or of a rename's old path)."),
    Param::new(
        "action",
        Kind::OneOf(&["created", "modified", "opened", "renamed", "deleted"]),
        "File action.",
    ),
    Param::new(
        "since",
        Kind::Time,
        "At or after (device time, skew-corrected).",
    ),
    Param::new("until", Kind::Time, "Before."),
    Param::new("matched", Kind::Bool, "Only events that matched a rule."),
    LIMIT,
    CURSOR,
];

/// A page of events.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

pub(super) async fn search_events(
    State(st): St,
    ApiQuery(q): ApiQuery,
) -> Result<Json<EventPage>, ApiError> {
    let f = EventFilter {
        scope: scope(&q),
        sha256: q.text("sha256"),
        path: q.text("path"),
        action: q.text("action"),
        matched: q.flag("matched"),
    };
    let before = id_cursor("e1.", q.text("cursor"))?;
    let n = limit(&q);
    let page = st
        .db(move |s| {
            let (events, next_cursor) = page_of(s.event_page(&f, before, n + 1)?, n, |e| {
                encode_cursor(&format!("e1.{}", e.id))
            });
            Ok(EventPage {
                events,
                next_cursor,
            })
        })
        .await?;
    Ok(Json(page))
}

/// A page of the audit log.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// One page of the audit log.
pub(in crate::http) async fn audit_page(st: &Arc<Http>, q: &Query) -> Result<AuditPage, ApiError> {
    let before = id_cursor("u1.", q.text("cursor"))?;
    let n = limit(q);
    st.db(move |s| {
        let (entries, next_cursor) = page_of(s.audit_page(before, n + 1)?, n, |e| {
            encode_cursor(&format!("u1.{}", e.id))
        });
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    })
    .await
}

pub(super) async fn audit_log(
    State(st): St,
    ApiQuery(q): ApiQuery,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(audit_page(&st, &q).await?))
}
