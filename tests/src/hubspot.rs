//! A stand-in for HubSpot's API, which cannot run here, for the `hubspot` connector's
//! scenario. Built from developers.hubspot.com:
//! - private apps authenticate with `Authorization: Bearer <token>`; without a valid one,
//!   HTTP 401 `{"status":"error","message":"Authentication credentials not found…",
//!   "correlationId","category":"INVALID_AUTHENTICATION"}`;
//! - user provisioning (`settings/v3/users`): `GET /settings/v3/users/{userId}` or
//!   `…/{email}?idProperty=EMAIL` → `{"id","email","roleIds","primaryTeamId"}`, or 404
//!   `OBJECT_NOT_FOUND`; `DELETE /settings/v3/users/{userId}` → 204 No Content;
//! - account activity (Enterprise): `GET /account-info/v3/activity/audit-logs` with
//!   `occurredAfter`, `occurredBefore`, `limit` (default 100) and the cursor `after`: `results[]`
//!   (`id`, `category`, `subCategory`, `action`, `targetObjectId`, `occurredAt`, `actingUser
//!   {userId, userEmail}`) and `paging.next.after` while more follow;
//! - limits: HTTP 429 `{"status":"error","message":"You have reached your ten_secondly_rolling
//!   limit.","errorType":"RATE_LIMIT","category":"RATE_LIMITS"}`, and 5xx.

use crate::hook::{header, request_parts, Answer, Hook};
use crate::salesforce::percent_decoded;
use std::sync::{Arc, Mutex};

/// A user of the HubSpot account.
#[derive(Debug, Clone)]
pub struct HsUser {
    pub id: String,
    pub email: String,
}

/// An audit log entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    /// ms since the epoch.
    pub time_ms: i64,
    pub category: String,
    pub sub_category: String,
    pub action: String,
    pub target: String,
    pub email: String,
}

/// The account the stand-in serves.
#[derive(Debug, Default)]
pub struct Account {
    pub token: String,
    pub users: Vec<HsUser>,
    pub audit: Vec<AuditEntry>,
    /// Entries per audit log page.
    pub page_size: usize,
    /// Statuses the next DELETE calls get instead of being done.
    pub delete_faults: Vec<u16>,
    /// Statuses the next first-page audit log calls get.
    pub poll_faults: Vec<u16>,
}

/// The stand-in server and the account behind it.
pub struct HubSpotApi {
    pub base: String,
    pub account: Arc<Mutex<Account>>,
    pub hook: Hook,
}

fn error(status: u16, category: &str, message: &str) -> Answer {
    (
        status,
        "application/json",
        serde_json::json!({"status": "error", "message": message, "correlationId": "5b2d1e8a-8f3c-4c1a-9d1e-0a6c9b7e4f21", "category": category}).to_string(),
    )
}

fn fault(status: u16) -> Answer {
    match status {
        429 => error(
            429,
            "RATE_LIMITS",
            "You have reached your ten_secondly_rolling limit.",
        ),
        s => error(s, "INTERNAL_ERROR", "internal error"),
    }
}

fn iso(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn answer(a: &mut Account, line: &str, headers: &[(String, String)]) -> Answer {
    if header(headers, "authorization") != Some(format!("Bearer {}", a.token).as_str()) {
        return error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview");
    }
    let (method, path, query) = request_parts(line);
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(key) = path.strip_prefix("/settings/v3/users/") {
        let key = percent_decoded(key);
        let by_email = q("idProperty").as_deref() == Some("EMAIL");
        let at = a.users.iter().position(|u| {
            if by_email {
                u.email.eq_ignore_ascii_case(&key)
            } else {
                u.id == key
            }
        });
        return match (method, at) {
            (_, None) => error(404, "OBJECT_NOT_FOUND", &format!("Unable to find user {key}")),
            ("GET", Some(i)) => (
                200,
                "application/json",
                serde_json::json!({"id": a.users[i].id, "email": a.users[i].email, "roleIds": ["1184"], "primaryTeamId": "101"}).to_string(),
            ),
            ("DELETE", Some(_)) if !by_email && !a.delete_faults.is_empty() => {
                fault(a.delete_faults.remove(0))
            }
            ("DELETE", Some(i)) if !by_email => {
                a.users.remove(i);
                (204, "application/json", String::new())
            }
            _ => error(405, "VALIDATION_ERROR", "method not allowed"),
        };
    }
    if method != "GET" || path != "/account-info/v3/activity/audit-logs" {
        return error(404, "OBJECT_NOT_FOUND", "not found");
    }
    let after: usize = q("after").and_then(|c| c.parse().ok()).unwrap_or(0);
    if after == 0 && !a.poll_faults.is_empty() {
        return fault(a.poll_faults.remove(0));
    }
    let since = q("occurredAfter").map(|t| humantime::parse_rfc3339_weak(&t));
    let since = match since {
        None => 0,
        Some(Ok(t)) => t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        Some(Err(_)) => {
            return error(
                400,
                "VALIDATION_ERROR",
                "occurredAfter must be an ISO 8601 timestamp",
            )
        }
    };
    let limit = q("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize)
        .min(a.page_size.max(1));
    let mut rows: Vec<&AuditEntry> = a.audit.iter().filter(|e| e.time_ms >= since).collect();
    // Newest first, as HubSpot lists them.
    rows.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
    let page: Vec<serde_json::Value> = rows
        .iter()
        .skip(after)
        .take(limit)
        .map(|e| serde_json::json!({"id": e.id, "category": e.category, "subCategory": e.sub_category, "action": e.action, "targetObjectId": e.target, "occurredAt": iso(e.time_ms), "actingUser": {"userId": 7001, "userEmail": e.email}}))
        .collect();
    let mut v = serde_json::json!({ "results": page });
    if after + limit < rows.len() {
        let next = (after + limit).to_string();
        v["paging"] =
            serde_json::json!({"next": {"after": next, "link": format!("?after={next}")}});
    }
    (200, "application/json", v.to_string())
}

impl HubSpotApi {
    pub fn start(account: Account) -> HubSpotApi {
        let account = Arc::new(Mutex::new(account));
        let served = account.clone();
        let hook =
            Hook::serve(move |line, headers, _| answer(&mut served.lock().unwrap(), line, headers));
        HubSpotApi {
            base: format!("http://127.0.0.1:{}", hook.port),
            account,
            hook,
        }
    }
}
