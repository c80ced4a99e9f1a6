//! The JSON API under `/api/v1`. [`ENDPOINTS`] is the one list of what exists: the router is
//! built from it, each route's capability is enforced from it before the handler runs, and the
//! OpenAPI document is generated from it.

use super::auth::Caller;
use super::endpoint::{schema, Endpoint};
use super::params::{Kind, Param, Query};
use super::{ApiError, Http};
use crate::api_tokens::Cap;
use crate::risk::UserRisk;
use crate::store::Alert;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use base64::Engine;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

mod alerts;
mod devices;
mod events;
mod offboard;
mod tokens;
mod users;

use alerts::{alert_detail, bulk_update, list_alerts, update_alert, ALERT_PARAMS};
pub(super) use alerts::{alert_page, bulk, change, detail};
pub use alerts::{AlertDetail, AlertPage, AlertPatch, BulkResult, BulkUpdate};
pub(super) use devices::devices;
use devices::{list_devices, revoke_device};
pub use devices::{DeviceList, DeviceView};
pub(super) use events::audit_page;
use events::{audit_log, search_events, EVENT_PARAMS};
pub use events::{AuditPage, EventPage};
pub(super) use offboard::offboard;
use offboard::{
    offboarding_report, offboarding_status, restore_offboarding, retry_connectors,
    start_offboarding, REPORT_PARAMS,
};
pub use offboard::{OffboardBody, Restored, Retried};
use tokens::{create_token, list_tokens, revoke_token};
pub use tokens::{Revoked, TokenBody, TokenList};
pub(super) use users::users;
pub use users::UserList;
use users::{list_users, one_user, USER_PARAMS};

type St = State<Arc<Http>>;

/// The user a listing is filtered to (alerts, events).
const USER: Param = Param::text("user", "User.");

/// The device a listing is filtered to (alerts, events).
const DEVICE: Param = Param::text("device", "Device id.");

const LIMIT: Param = Param::new(
    "limit",
    Kind::Int { min: 1, max: 500 },
    "Page size (default 50).",
);

const CURSOR: Param = Param::text("cursor", "`next_cursor` from the previous page.");

const PAGE_PARAMS: &[Param] = &[LIMIT, CURSOR];

/// Every API operation.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: "get", path: "/api/v1/openapi.json", cap: None, summary: "This document.", params: &[], body: None, ok: 200, response: schema::<serde_json::Value>, route: || get(openapi) },
    Endpoint { method: "get", path: "/api/v1/me", cap: Some(Cap::Read), summary: "Who the caller is and what their role may do.", params: &[], body: None, ok: 200, response: schema::<Me>, route: || get(me) },
    Endpoint { method: "get", path: "/api/v1/alerts", cap: Some(Cap::Read), summary: "Alerts, filtered, sorted, by cursor pages.", params: ALERT_PARAMS, body: None, ok: 200, response: schema::<AlertPage>, route: || get(list_alerts) },
    Endpoint { method: "post", path: "/api/v1/alerts/bulk", cap: Some(Cap::Triage), summary: "Set the status of many alerts.", params: &[], body: Some(schema::<BulkUpdate>), ok: 200, response: schema::<BulkResult>, route: || post(bulk_update) },
    Endpoint { method: "get", path: "/api/v1/alerts/{id}", cap: Some(Cap::Read), summary: "One alert with its events, the user's recent activity, related alerts and notes.", params: &[], body: None, ok: 200, response: schema::<AlertDetail>, route: || get(alert_detail) },
    Endpoint { method: "patch", path: "/api/v1/alerts/{id}", cap: Some(Cap::Triage), summary: "Change an alert's status (new → triaged → resolved or false_positive), assignee, or add a note.", params: &[], body: Some(schema::<AlertPatch>), ok: 200, response: schema::<Alert>, route: || patch(update_alert) },
    Endpoint { method: "get", path: "/api/v1/users", cap: Some(Cap::Read), summary: "Users, riskiest first: a 0–100 risk score and the signals behind it (alerts, exfiltration sequences, volume spikes against the user's own baseline, bulk reads, notice given), alerts by severity and customer records of the last 30 days, and the departing flag.", params: USER_PARAMS, body: None, ok: 200, response: schema::<UserList>, route: || get(list_users) },
    Endpoint { method: "get", path: "/api/v1/users/{user}", cap: Some(Cap::Read), summary: "One user's risk summary.", params: &[], body: None, ok: 200, response: schema::<UserRisk>, route: || get(one_user) },
    Endpoint { method: "get", path: "/api/v1/devices", cap: Some(Cap::Read), summary: "Devices: health, last seen, agent and policy versions.", params: &[], body: None, ok: 200, response: schema::<DeviceList>, route: || get(list_devices) },
    Endpoint { method: "post", path: "/api/v1/devices/{id}/revoke", cap: Some(Cap::Offboard), summary: "Revoke a device's certificate (idempotent).", params: &[], body: None, ok: 200, response: schema::<DeviceView>, route: || post(revoke_device) },
    Endpoint { method: "get", path: "/api/v1/events", cap: Some(Cap::Read), summary: "Event search, newest first, by cursor pages.", params: EVENT_PARAMS, body: None, ok: 200, response: schema::<EventPage>, route: || get(search_events) },
    Endpoint { method: "post", path: "/api/v1/offboardings", cap: Some(Cap::Offboard), summary: "Offboard a user: 201 when started, 200 when one was already open (idempotent).", params: &[], body: Some(schema::<OffboardBody>), ok: 201, response: schema::<crate::offboard::Started>, route: || post(start_offboarding) },
    Endpoint { method: "get", path: "/api/v1/offboardings/{user}", cap: Some(Cap::Read), summary: "An offboarding's progress per device, with receipts and connector results.", params: &[], body: None, ok: 200, response: schema::<crate::offboard::Status>, route: || get(offboarding_status) },
    Endpoint { method: "get", path: "/api/v1/offboardings/{user}/report", cap: Some(Cap::Read), summary: "The look-back report and handover list (JSON or CSV).", params: REPORT_PARAMS, body: None, ok: 200, response: schema::<crate::report::Report>, route: || get(offboarding_report) },
    Endpoint { method: "post", path: "/api/v1/offboardings/{user}/restore", cap: Some(Cap::Offboard), summary: "Undo a mistaken offboarding (idempotent).", params: &[], body: None, ok: 200, response: schema::<Restored>, route: || post(restore_offboarding) },
    Endpoint { method: "post", path: "/api/v1/offboardings/{user}/retry", cap: Some(Cap::Offboard), summary: "Start the user's failed connector calls again.", params: &[], body: None, ok: 200, response: schema::<Retried>, route: || post(retry_connectors) },
    Endpoint { method: "get", path: "/api/v1/audit", cap: Some(Cap::Audit), summary: "The append-only audit log, newest first.", params: PAGE_PARAMS, body: None, ok: 200, response: schema::<AuditPage>, route: || get(audit_log) },
    Endpoint { method: "get", path: "/api/v1/tokens", cap: Some(Cap::Admin), summary: "API tokens (never their secrets).", params: &[], body: None, ok: 200, response: schema::<TokenList>, route: || get(list_tokens) },
    Endpoint { method: "post", path: "/api/v1/tokens", cap: Some(Cap::Admin), summary: "Create an API token; its secret is in this response only.", params: &[], body: Some(schema::<TokenBody>), ok: 201, response: schema::<crate::api_tokens::Created>, route: || post(create_token) },
    Endpoint { method: "delete", path: "/api/v1/tokens/{name}", cap: Some(Cap::Admin), summary: "Revoke an API token and end its sessions.", params: &[], body: None, ok: 200, response: schema::<Revoked>, route: || delete(revoke_token) },
];

/// The routes of [`ENDPOINTS`], each behind a check of its capability.
pub fn routes(st: &Arc<Http>) -> Router<Arc<Http>> {
    let mut r = Router::new();
    for e in ENDPOINTS {
        let mut route = (e.route)();
        if let Some(cap) = e.cap {
            route = route.route_layer(axum::middleware::from_fn_with_state(
                st.clone(),
                move |State(st): St, req: Request, next: Next| enforce(st, cap, req, next),
            ));
        }
        r = r.route(e.path, route);
    }
    r
}

/// Authenticates the caller, checks `cap`, and hands the caller on to the handler.
async fn enforce(st: Arc<Http>, cap: Cap, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &st).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = caller.require(cap) {
        return e.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The query string, parsed against the parameters [`ENDPOINTS`] declares for the route it
/// reached: an undeclared parameter or a malformed value is a 400 naming it.
struct ApiQuery(Query);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let path = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or_default();
        let method = parts.method.as_str().to_ascii_lowercase();
        let declared = ENDPOINTS
            .iter()
            .find(|e| e.path == path && e.method == method)
            .map(|e| e.params)
            .unwrap_or(&[]);
        Query::parse(parts.uri.query(), declared, crate::now_ms()).map(ApiQuery)
    }
}

/// A JSON request body of type `T`: malformed JSON or a wrong field is a 400 naming it; a
/// body over the size limit keeps axum's 413.
struct ApiBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &S) -> Result<Self, Response> {
        let bytes = axum::body::Bytes::from_request(req, st)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes)
            .map(ApiBody)
            .map_err(|e| ApiError::BadRequest(format!("request body: {e}")).into_response())
    }
}

/// The `user`, `device`, `since` and `until` parameters.
fn scope(q: &Query) -> crate::store::Scope {
    crate::store::Scope {
        user: q.text("user"),
        device: q.text("device"),
        since_ms: q.time("since"),
        until_ms: q.time("until"),
    }
}

fn limit(q: &Query) -> usize {
    q.int("limit").unwrap_or(50) as usize
}

/// A page from `n + 1` rows fetched: the first `n`, and the cursor after the last of them
/// when there was one more.
fn page_of<T>(
    mut rows: Vec<T>,
    n: usize,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() > n;
    rows.truncate(n);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}

fn bad_cursor() -> ApiError {
    ApiError::BadRequest("query parameter `cursor`: not a cursor from this API".into())
}

fn encode_cursor(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_cursor(c: &str) -> Result<String, ApiError> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad_cursor())?;
    String::from_utf8(b).map_err(|_| bad_cursor())
}

fn id_cursor(prefix: &str, raw: Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = decode_cursor(&raw)?;
    s.strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(bad_cursor)
}

fn path_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("path: `{raw}` is not an alert id")))
}

/// The caller, as [`enforce`] left it (401 where no route layer authenticated one).
struct Authed(Caller);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Authed)
            .ok_or(ApiError::Unauthorized)
    }
}

/// Who the audit log names for a change the caller makes.
struct Acting(crate::Actor);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, ApiError> {
        let Authed(c) = Authed::from_request_parts(parts, st).await?;
        Ok(Acting(c.actor()))
    }
}

// ----- responses -----

/// Who is calling.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    pub name: String,
    pub role: String,
    /// What the role may do: read, triage, offboard, audit, admin.
    pub capabilities: Vec<String>,
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI document of [`ENDPOINTS`], built once.
fn openapi_document() -> serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| super::openapi::document(ENDPOINTS))
        .clone()
}

async fn me(Authed(c): Authed) -> Result<Json<Me>, ApiError> {
    Ok(Json(Me {
        name: c.name,
        role: c.role.as_str().into(),
        capabilities: [
            Cap::Read,
            Cap::Triage,
            Cap::Offboard,
            Cap::Audit,
            Cap::Admin,
        ]
        .into_iter()
        .filter(|cap| c.role.can(*cap))
        .map(|cap| cap.as_str().to_string())
        .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_under_v1_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for e in ENDPOINTS {
            assert!(e.path.starts_with("/api/v1/"), "{}", e.path);
            assert!(
                seen.insert((e.method, e.path)),
                "{} {} twice",
                e.method,
                e.path
            );
        }
    }
}
