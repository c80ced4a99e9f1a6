//! Offboardings: start, status, the look-back report, restore and connector retries.

use super::{Acting, ApiBody, ApiQuery, Authed, St};
use crate::http::auth::Caller;
use crate::http::params::{Kind, Param};
use crate::http::{ApiError, Http};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use holdfast_shared::time::UnixMs;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) const REPORT_PARAMS: &[Param] = &[Param::new(
    "format",
    Kind::OneOf(&["json", "csv"]),
    "`json` (default) or `csv`.",
)];

/// Start an offboarding.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardBody {
    pub user: String,
    /// When the orders take effect: RFC 3339 (default: now).
    pub effective: Option<String>,
    /// When notice was given: RFC 3339 (default: now).
    pub notice: Option<String>,
    /// Look-back window in days (default 90).
    pub lookback_days: Option<u32>,
    /// Why (kept in the audit log; default: none given).
    #[serde(default)]
    pub reason: String,
    /// Who takes the leaver's customers over (connectors such as `wecom` hand them to them).
    pub successor: Option<String>,
}

/// What a restore did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Restored {
    pub user: String,
    /// False when it was already restored.
    pub restored: bool,
}

/// What a retry did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Retried {
    pub user: String,
    pub retried: usize,
}

/// Starts an offboarding as `c`.
pub(in crate::http) async fn offboard(
    st: &Arc<Http>,
    c: &Caller,
    b: OffboardBody,
) -> Result<crate::offboard::Started, ApiError> {
    let time = |field: &str, v: &Option<String>| -> Result<Option<UnixMs>, ApiError> {
        v.as_deref()
            .filter(|v| *v != "now")
            .map(|v| {
                UnixMs::parse_rfc3339(v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{field}: `{v}` is not an RFC 3339 time such as 2026-12-01T18:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    if b.user.trim().is_empty() {
        return Err(ApiError::BadRequest("user: must not be empty".into()));
    }
    let now = crate::now_ms();
    let lookback_days = b.lookback_days.unwrap_or(90);
    if !(1..=3650).contains(&lookback_days) {
        return Err(ApiError::BadRequest(
            "lookback_days: must be from 1 to 3650".into(),
        ));
    }
    let req = crate::offboard::Request {
        user: b.user.trim().to_string(),
        effective_ms: time("effective", &b.effective)?,
        notice_ms: time("notice", &b.notice)?,
        lookback_ms: i64::from(lookback_days) * 86_400_000,
        reason: b.reason,
        successor: b
            .successor
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    };
    let actor = c.actor();
    let config = st.config.clone();
    st.db(move |s| Ok(crate::offboard::start(&config, s, &req, &actor, now)?))
        .await
}

pub(super) async fn start_offboarding(
    State(st): St,
    Authed(c): Authed,
    ApiBody(b): ApiBody<OffboardBody>,
) -> Result<Response, ApiError> {
    let started = offboard(&st, &c, b).await?;
    let status = if started.started {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)).into_response())
}

pub(super) async fn offboarding_status(
    State(st): St,
    Path(user): Path<String>,
) -> Result<Json<crate::offboard::Status>, ApiError> {
    Ok(Json(
        st.db(move |s| Ok(crate::offboard::status(s, &user, crate::now_ms())?))
            .await?,
    ))
}

pub(super) async fn offboarding_report(
    State(st): St,
    Path(user): Path<String>,
    ApiQuery(q): ApiQuery,
) -> Result<Response, ApiError> {
    let r = st
        .db(move |s| Ok(crate::offboard::report(s, &user)?))
        .await?;
    Ok(match q.text("format").as_deref() {
        Some("csv") => (
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            crate::report::to_csv(&r),
        )
            .into_response(),
        _ => Json(r).into_response(),
    })
}

pub(super) async fn restore_offboarding(
    State(st): St,
    Acting(actor): Acting,
    Path(user): Path<String>,
) -> Result<Json<Restored>, ApiError> {
    let config = st.config.clone();
    let u = user.clone();
    let restored = st
        .db(move |s| {
            Ok(crate::offboard::restore(
                &config,
                s,
                &u,
                &actor,
                crate::now_ms(),
            )?)
        })
        .await?;
    Ok(Json(Restored { user, restored }))
}

pub(super) async fn retry_connectors(
    State(st): St,
    Acting(actor): Acting,
    Path(user): Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let (user, retried) = st
        .db(move |s| {
            let retried = crate::offboard::retry(s, &user, &actor, crate::now_ms())?;
            Ok((user, retried))
        })
        .await?;
    Ok(Json(Retried { user, retried }))
}
