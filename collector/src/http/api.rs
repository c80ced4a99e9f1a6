//! The JSON API under `/api/v1`. [`ENDPOINTS`] is the one list of what exists: the router is
//! built from it, each route's capability is enforced from it before the handler runs, and the
//! OpenAPI document is generated from it.

use super::auth::Caller;
use super::endpoint::{schema, Endpoint};
use super::params::{Kind, Param, Query};
use super::{ApiError, Http};
use crate::api_tokens::Cap;
use crate::risk::UserRisk;
use crate::store::{
    Alert, AlertChange, AlertCursor, AlertFilter, AlertOrder, ApiToken, AuditEntry, Device,
    EventFilter, Note, StoredEvent,
};
use crate::triage::STATUSES;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type St = State<Arc<Http>>;
const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];
const LIMIT: Param = Param {
    name: "limit",
    kind: Kind::Int { min: 1, max: 500 },
    doc: "Page size (default 50).",
};
const CURSOR: Param = Param {
    name: "cursor",
    kind: Kind::Text,
    doc: "`next_cursor` from the previous page.",
};

const ALERT_PARAMS: &[Param] = &[
    Param {
        name: "status",
        kind: Kind::ListOf(STATUSES),
        doc: "Comma-separated statuses.",
    },
    Param {
        name: "severity",
        kind: Kind::ListOf(SEVERITIES),
        doc: "Comma-separated severities.",
    },
    Param {
        name: "rule",
        kind: Kind::Text,
        doc: "Rule id.",
    },
    Param {
        name: "user",
        kind: Kind::Text,
        doc: "User.",
    },
    Param {
        name: "device",
        kind: Kind::Text,
        doc: "Device id.",
    },
    Param {
        name: "assignee",
        kind: Kind::Text,
        doc: "Assignee.",
    },
    Param {
        name: "since",
        kind: Kind::Time,
        doc: "Last seen at or after (RFC 3339, epoch ms, or a duration before now such as 24h).",
    },
    Param {
        name: "until",
        kind: Kind::Time,
        doc: "Last seen before.",
    },
    Param {
        name: "sort",
        kind: Kind::OneOf(&["severity", "newest"]),
        doc: "`severity` (default: most severe, then newest) or `newest`.",
    },
    LIMIT,
    CURSOR,
];

const EVENT_PARAMS: &[Param] = &[
    Param {
        name: "user",
        kind: Kind::Text,
        doc: "User.",
    },
    Param {
        name: "device",
        kind: Kind::Text,
        doc: "Device id.",
    },
    Param {
        name: "sha256",
        kind: Kind::Text,
        doc: "File content hash.",
    },
    Param {
        name: "path",
        kind: Kind::Text,
        doc: "Substring of the path (or of a rename's old path).",
    },
    Param {
        name: "action",
        kind: Kind::OneOf(&["created", "modified", "opened", "renamed", "deleted"]),
        doc: "File action.",
    },
    Param {
        name: "since",
        kind: Kind::Time,
        doc: "At or after (device time, skew-corrected).",
    },
    Param {
        name: "until",
        kind: Kind::Time,
        doc: "Before.",
    },
    Param {
        name: "matched",
        kind: Kind::Bool,
        doc: "Only events that matched a rule.",
    },
    LIMIT,
    CURSOR,
];

const PAGE_PARAMS: &[Param] = &[LIMIT, CURSOR];
const USER_PARAMS: &[Param] = &[Param {
    name: "state",
    kind: Kind::ListOf(&["active", "departing", "offboarded", "restored"]),
    doc: "Comma-separated states.",
}];
const REPORT_PARAMS: &[Param] = &[Param {
    name: "format",
    kind: Kind::OneOf(&["json", "csv"]),
    doc: "`json` (default) or `csv`.",
}];

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
    let caller = match <Caller as axum::extract::FromRequestParts<Arc<Http>>>::from_request_parts(
        &mut parts, &st,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = caller.require(cap) {
        return e.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

fn query(raw: Option<String>, path: &str, method: &str) -> Result<Query, ApiError> {
    let declared = ENDPOINTS
        .iter()
        .find(|e| e.path == path && e.method == method)
        .map(|e| e.params)
        .unwrap_or(&[]);
    Query::parse(raw.as_deref(), declared, crate::now_ms())
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
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

fn alert_cursor(order: AlertOrder, c: &AlertCursor) -> String {
    let tag = match order {
        AlertOrder::Severity => "s",
        AlertOrder::Newest => "n",
    };
    encode_cursor(&format!("a1.{tag}.{}.{}.{}", c.rank, c.last_seen_ms, c.id))
}

fn parse_alert_cursor(order: AlertOrder, raw: &str) -> Result<AlertCursor, ApiError> {
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

/// The caller, as [`enforce`] left it.
fn caller(req_caller: Option<axum::Extension<Caller>>) -> Result<Caller, ApiError> {
    req_caller.map(|c| c.0).ok_or(ApiError::Unauthorized)
}

type MaybeCaller = Option<axum::Extension<Caller>>;

// ----- responses -----

/// Who is calling.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    pub name: String,
    pub role: String,
    /// What the role may do: read, triage, offboard, audit, admin.
    pub capabilities: Vec<String>,
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

/// Users, riskiest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<UserRisk>,
}

/// A device and its health.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    /// ok, never_seen, offline, revoked, cert_expiring, clock_skew, backlog, or
    /// partial_coverage (a place could not be watched, or the watch limit was reached).
    pub health: String,
}

/// Devices.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

/// A page of events.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

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
    /// Why (kept in the audit log).
    pub reason: Option<String>,
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

/// API tokens.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// Create a token.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    /// analyst, it_admin, auditor or admin.
    pub role: String,
}

/// A revoked token.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Revoked {
    pub name: String,
    pub revoked: bool,
}

// ----- handlers -----

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI document of [`ENDPOINTS`], built once.
fn openapi_document() -> serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| super::openapi::document(ENDPOINTS))
        .clone()
}

async fn me(c: MaybeCaller) -> Result<Json<Me>, ApiError> {
    let c = caller(c)?;
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

/// The filter, order and cursor of an alert query.
pub(super) fn alert_query(
    q: &Query,
) -> Result<(AlertFilter, AlertOrder, Option<AlertCursor>), ApiError> {
    let f = AlertFilter {
        statuses: q.list("status"),
        severities: q.list("severity"),
        rule: q.text("rule"),
        user: q.text("user"),
        device: q.text("device"),
        assignee: q.text("assignee"),
        since_ms: q.time("since"),
        until_ms: q.time("until"),
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
pub(super) async fn alert_page(st: &Arc<Http>, q: &Query) -> Result<AlertPage, ApiError> {
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

async fn list_alerts(State(st): St, RawQuery(raw): RawQuery) -> Result<Json<AlertPage>, ApiError> {
    let q = query(raw, "/api/v1/alerts", "get")?;
    Ok(Json(alert_page(&st, &q).await?))
}

/// An alert in full.
pub(super) async fn detail(st: &Arc<Http>, id: i64) -> Result<AlertDetail, ApiError> {
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

async fn alert_detail(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    Ok(Json(detail(&st, path_id(&id)?).await?))
}

/// Applies a change to an alert as `c`.
pub(super) async fn change(
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

async fn update_alert(
    State(st): St,
    c: MaybeCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Alert>, ApiError> {
    let c = caller(c)?;
    let id = path_id(&id)?;
    let p: AlertPatch = body(&bytes)?;
    let ch = AlertChange {
        status: p.status,
        assignee: p.assignee.map(|a| Some(a).filter(|a| !a.trim().is_empty())),
        note: p.note,
    };
    Ok(Json(change(&st, &c, id, ch).await?))
}

/// Sets many alerts' status, one by one (each audited).
pub(super) async fn bulk(
    st: &Arc<Http>,
    c: &Caller,
    ids: Vec<i64>,
    status: String,
) -> Result<BulkResult, ApiError> {
    if ids.is_empty() || ids.len() > 500 {
        return Err(ApiError::BadRequest("ids: give 1 to 500 alert ids".into()));
    }
    if !STATUSES.contains(&status.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "status: `{status}` is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let actor = c.actor();
    st.db(move |s| {
        let mut out = BulkResult {
            updated: Vec::new(),
            failed: Vec::new(),
        };
        let now = crate::now_ms();
        for id in ids {
            let ch = AlertChange {
                status: Some(status.clone()),
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

async fn bulk_update(
    State(st): St,
    c: MaybeCaller,
    bytes: axum::body::Bytes,
) -> Result<Json<BulkResult>, ApiError> {
    let c = caller(c)?;
    let b: BulkUpdate = body(&bytes)?;
    Ok(Json(bulk(&st, &c, b.ids, b.status).await?))
}

/// Every user with their risk, riskiest first.
pub(super) async fn users(st: &Arc<Http>) -> Result<Vec<UserRisk>, ApiError> {
    st.db(|s| Ok(crate::risk::users(s, crate::now_ms())?)).await
}

async fn list_users(State(st): St, RawQuery(raw): RawQuery) -> Result<Json<UserList>, ApiError> {
    let q = query(raw, "/api/v1/users", "get")?;
    let states = q.list("state");
    let users = users(&st)
        .await?
        .into_iter()
        .filter(|u| states.is_empty() || states.contains(&u.state))
        .collect();
    Ok(Json(UserList { users }))
}

async fn one_user(State(st): St, Path(user): Path<String>) -> Result<Json<UserRisk>, ApiError> {
    users(&st)
        .await?
        .into_iter()
        .find(|u| u.user == user)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("unknown user `{user}`")))
}

/// A device's health in one word.
pub(super) fn health(d: &Device, now_ms: i64, skew_tolerance_ms: i64) -> &'static str {
    if d.revoked_ms.is_some() {
        "revoked"
    } else if d.last_seen_ms.is_none() {
        "never_seen"
    } else if d.offline_since_ms.is_some() {
        "offline"
    } else if d.cert_expires_ms > 0 && d.cert_expires_ms < now_ms + 7 * 86_400_000 {
        "cert_expiring"
    } else if d.clock_skew_ms.is_some_and(|s| s.abs() > skew_tolerance_ms) {
        "clock_skew"
    } else if d.spool_backlog.unwrap_or(0) > 10_000 {
        "backlog"
    } else if d
        .coverage
        .as_ref()
        .is_some_and(|c| c.failed_roots > 0 || c.limit_reached || c.index_full)
    {
        "partial_coverage"
    } else {
        "ok"
    }
}

/// Every device with its health.
pub(super) async fn devices(st: &Arc<Http>) -> Result<Vec<DeviceView>, ApiError> {
    let tolerance = st.config.skew_tolerance.as_millis() as i64;
    st.db(move |s| {
        let now = crate::now_ms();
        Ok(s.devices()?
            .into_iter()
            .map(|d| DeviceView {
                health: health(&d, now, tolerance).into(),
                device: d,
            })
            .collect())
    })
    .await
}

async fn list_devices(State(st): St) -> Result<Json<DeviceList>, ApiError> {
    Ok(Json(DeviceList {
        devices: devices(&st).await?,
    }))
}

async fn revoke_device(
    State(st): St,
    c: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let actor = caller(c)?.actor();
    let key = id.clone();
    st.db(move |s| {
        let now = crate::now_ms();
        if !s.revoke_device(&key, now, &actor)? {
            return Err(ApiError::NotFound(format!("no device `{key}`")));
        }
        Ok(())
    })
    .await?;
    devices(&st)
        .await?
        .into_iter()
        .find(|d| d.device.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no device `{id}`")))
}

async fn search_events(
    State(st): St,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let q = query(raw, "/api/v1/events", "get")?;
    let f = EventFilter {
        user: q.text("user"),
        device: q.text("device"),
        sha256: q.text("sha256"),
        path: q.text("path"),
        action: q.text("action"),
        since_ms: q.time("since"),
        until_ms: q.time("until"),
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

/// Starts an offboarding as `c`.
pub(super) async fn offboard(
    st: &Arc<Http>,
    c: &Caller,
    b: OffboardBody,
) -> Result<crate::offboard::Started, ApiError> {
    let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .filter(|v| *v != "now")
            .map(|v| {
                humantime::parse_rfc3339_weak(v)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .ok_or_else(|| {
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
        effective_ms: time("effective", &b.effective)?.unwrap_or(now),
        notice_ms: time("notice", &b.notice)?,
        lookback_ms: i64::from(lookback_days) * 86_400_000,
        reason: b.reason.unwrap_or_default(),
    };
    let actor = c.actor();
    let config = st.config.clone();
    st.db(move |s| Ok(crate::offboard::start(&config, s, &req, &actor, now)?))
        .await
}

async fn start_offboarding(
    State(st): St,
    c: MaybeCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let c = caller(c)?;
    let b: OffboardBody = body(&bytes)?;
    let started = offboard(&st, &c, b).await?;
    let status = if started.started {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)).into_response())
}

async fn offboarding_status(
    State(st): St,
    Path(user): Path<String>,
) -> Result<Json<crate::offboard::Status>, ApiError> {
    Ok(Json(
        st.db(move |s| Ok(crate::offboard::status(s, &user, crate::now_ms())?))
            .await?,
    ))
}

async fn offboarding_report(
    State(st): St,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = query(raw, "/api/v1/offboardings/{user}/report", "get")?;
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

async fn restore_offboarding(
    State(st): St,
    c: MaybeCaller,
    Path(user): Path<String>,
) -> Result<Json<Restored>, ApiError> {
    let actor = caller(c)?.actor();
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

async fn retry_connectors(
    State(st): St,
    c: MaybeCaller,
    Path(user): Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let actor = caller(c)?.actor();
    let u = user.clone();
    let retried = st
        .db(move |s| Ok(crate::offboard::retry(s, &u, &actor, crate::now_ms())?))
        .await?;
    Ok(Json(Retried { user, retried }))
}

/// One page of the audit log.
pub(super) async fn audit_page(st: &Arc<Http>, q: &Query) -> Result<AuditPage, ApiError> {
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

async fn audit_log(State(st): St, RawQuery(raw): RawQuery) -> Result<Json<AuditPage>, ApiError> {
    let q = query(raw, "/api/v1/audit", "get")?;
    Ok(Json(audit_page(&st, &q).await?))
}

async fn list_tokens(State(st): St) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: st.db(|s| Ok(s.api_tokens()?)).await?,
    }))
}

async fn create_token(
    State(st): St,
    c: MaybeCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = caller(c)?.actor();
    let b: TokenBody = body(&bytes)?;
    let created = st
        .db(move |s| {
            Ok(crate::api_tokens::create(
                s,
                &b.name,
                &b.role,
                false,
                &actor,
                crate::now_ms(),
            )?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn revoke_token(
    State(st): St,
    c: MaybeCaller,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let actor = caller(c)?.actor();
    let n = name.clone();
    st.db(move |s| Ok(crate::api_tokens::revoke(s, &n, &actor, crate::now_ms())?))
        .await?;
    Ok(Json(Revoked {
        name,
        revoked: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_cursors_round_trip_and_refuse_another_sort() {
        let c = AlertCursor {
            rank: 3,
            last_seen_ms: 1_700_000_000_000,
            id: 42,
        };
        let s = alert_cursor(AlertOrder::Severity, &c);
        assert_eq!(parse_alert_cursor(AlertOrder::Severity, &s).unwrap(), c);
        let e = parse_alert_cursor(AlertOrder::Newest, &s).unwrap_err();
        assert!(e.to_string().contains("another `sort`"), "{e}");
        assert!(parse_alert_cursor(AlertOrder::Newest, "%%%").is_err());
    }

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
