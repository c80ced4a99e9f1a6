//! A stand-in for a Salesforce org's REST API, which cannot run here, for the `salesforce`
//! connector's scenario. Built from developer.salesforce.com:
//! - `POST /services/oauth2/token` with `grant_type=client_credentials`, `client_id`,
//!   `client_secret` (form-encoded; "OAuth 2.0 Client Credentials Flow for Server-to-Server
//!   Integration"): `access_token`, `instance_url`, `token_type`, `issued_at`; a wrong client is
//!   HTTP 400 `{"error":"invalid_client","error_description":"invalid client credentials"}`;
//! - `Authorization: Bearer` on every other call, else HTTP 401
//!   `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`;
//! - `GET /services/data/v62.0/query?q=SOQL` (REST API Developer Guide, "Execute a SOQL
//!   Query"): `totalSize`, `done`, `records[]` (each with `attributes`), and `nextRecordsUrl`
//!   (`/services/data/v62.0/query/01g…-N`) while `done` is false; a query it cannot run is
//!   HTTP 400 `[{"errorCode":"MALFORMED_QUERY",…}]`;
//! - `PATCH /services/data/v62.0/sobjects/{UserLogin|User}/{Id}`: HTTP 204 No Content, or
//!   404 `NOT_FOUND` (Object Reference: `UserLogin.IsFrozen`, `User.IsActive`);
//! - `ReportEvent` (Platform Events Developer Guide): `EventIdentifier`, `EventDate`
//!   (`2026-12-05T10:00:00.000+0000`), `Username`, `Name`, `ReportId`, `Operation`,
//!   `RowsProcessed`, `QueriedEntities`, `ExportFileFormat`, `EventSource`;
//! - limits: HTTP 403 `REQUEST_LIMIT_EXCEEDED`, or 429/503 from the edge, and 500
//!   `UNKNOWN_EXCEPTION` for a failure on Salesforce's side.
//!
//! Only the SOQL shapes the connector sends are understood; anything else is refused as
//! Salesforce refuses a malformed query.

use crate::hook::{Answer, Hook};
use std::sync::{Arc, Mutex};

/// A Salesforce user and their login row.
#[derive(Debug, Clone)]
pub struct SfUser {
    pub id: String,
    pub username: String,
    pub login_id: String,
    pub active: bool,
    pub frozen: bool,
}

/// A `ReportEvent` row.
#[derive(Debug, Clone)]
pub struct ReportEvent {
    pub id: String,
    /// ms since the epoch.
    pub time_ms: i64,
    pub username: String,
    pub report: String,
    pub operation: String,
    pub rows: u64,
    pub format: Option<String>,
}

/// The org the stand-in serves.
#[derive(Debug, Default)]
pub struct Org {
    pub client_id: String,
    pub client_secret: String,
    pub users: Vec<SfUser>,
    pub events: Vec<ReportEvent>,
    /// Records per query page.
    pub page_size: usize,
    /// Statuses the next PATCH calls get instead of being done (429, 500, …).
    pub patch_faults: Vec<u16>,
    /// Statuses the next ReportEvent queries get instead of an answer.
    pub poll_faults: Vec<u16>,
    pub tokens: Vec<String>,
    /// Queries with more pages, by query locator.
    pub locators: Vec<String>,
}

/// The stand-in server and the org behind it.
pub struct SalesforceApi {
    pub base: String,
    pub org: Arc<Mutex<Org>>,
    pub hook: Hook,
}

fn rest_error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        "application/json",
        serde_json::json!([{"message": message, "errorCode": code}]).to_string(),
    )
}

fn fault(status: u16) -> Answer {
    match status {
        403 => rest_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        429 => rest_error(429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
        500 => rest_error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234-5678 (-1)"),
        s => rest_error(s, "SERVER_UNAVAILABLE", "Server unavailable"),
    }
}

/// `%XX` and `+` decoded.
pub fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A form-encoded body's pairs, decoded.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decoded(k), percent_decoded(v)))
        .collect()
}

/// The quoted value after `field = '` in a SOQL query (quotes unescaped).
fn literal(soql: &str, field: &str) -> Option<String> {
    let start = soql.find(&format!("{field} = '"))? + field.len() + 4;
    let mut out = String::new();
    let mut chars = soql[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '\'' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

fn sf_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    let s = humantime::format_rfc3339_millis(t).to_string();
    format!("{}+0000", s.trim_end_matches('Z'))
}

fn answer(org: &mut Org, line: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method == "POST" && path == "/services/oauth2/token" {
        let f = form(body);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("grant_type") != Some("client_credentials") {
            return (400, "application/json", serde_json::json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"}).to_string());
        }
        if get("client_id") != Some(org.client_id.as_str())
            || get("client_secret") != Some(org.client_secret.as_str())
        {
            return (400, "application/json", serde_json::json!({"error": "invalid_client", "error_description": "invalid client credentials"}).to_string());
        }
        let token = format!("00Dxx0000001gPL!AR{}", org.tokens.len() + 1);
        org.tokens.push(token.clone());
        return (200, "application/json", serde_json::json!({"access_token": token, "instance_url": "https://acme.my.salesforce.com", "id": "https://login.salesforce.com/id/00Dxx0000001gPL/005xx000001Sv6AAAS", "token_type": "Bearer", "issued_at": "1764928800000", "signature": "c2lnbmF0dXJl"}).to_string());
    }
    let bearer = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| org.tokens.iter().any(|x| x == t)) {
        return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    if method == "PATCH" {
        if !org.patch_faults.is_empty() {
            return fault(org.patch_faults.remove(0));
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let rest = path
            .strip_prefix("/services/data/v62.0/sobjects/")
            .unwrap_or("");
        let (object, id) = rest.split_once('/').unwrap_or(("", ""));
        let user = org.users.iter_mut().find(|u| match object {
            "UserLogin" => u.login_id == id,
            "User" => u.id == id,
            _ => false,
        });
        let Some(u) = user else {
            return rest_error(404, "NOT_FOUND", "The requested resource does not exist");
        };
        match (object, v.get("IsFrozen"), v.get("IsActive")) {
            ("UserLogin", Some(f), None) => u.frozen = f.as_bool().unwrap_or(u.frozen),
            ("User", None, Some(a)) => u.active = a.as_bool().unwrap_or(u.active),
            _ => return rest_error(400, "INVALID_FIELD", "No such column on entity"),
        }
        return (204, "application/json", String::new());
    }
    if method != "GET" || !path.starts_with("/services/data/v62.0/query") {
        return rest_error(404, "NOT_FOUND", "The requested resource does not exist");
    }
    // A next page: `/query/01gPAGE<locator>-<offset>`, the query kept by the stand-in.
    let (soql, offset) = match path.strip_prefix("/services/data/v62.0/query/01gPAGE") {
        Some(rest) => {
            let found = rest.split_once('-').and_then(|(l, off)| {
                Some((
                    org.locators.get(l.parse::<usize>().ok()?)?.clone(),
                    off.parse().ok()?,
                ))
            });
            let Some(found) = found else {
                return rest_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
            };
            found
        }
        None => {
            let q = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("q="))
                .map(percent_decoded)
                .unwrap_or_default();
            (q, 0usize)
        }
    };
    let attrs = |t: &str, id: &str| serde_json::json!({"type": t, "url": format!("/services/data/v62.0/sobjects/{t}/{id}")});
    let records: Vec<serde_json::Value> = if soql
        .starts_with("SELECT Id, Username, IsActive FROM User WHERE Username = ")
    {
        let name = literal(&soql, "Username").unwrap_or_default();
        org.users.iter().filter(|u| u.username == name).map(|u| serde_json::json!({"attributes": attrs("User", &u.id), "Id": u.id, "Username": u.username, "IsActive": u.active})).collect()
    } else if soql.starts_with("SELECT Id, IsActive FROM User WHERE Id = ") {
        let id = literal(&soql, "Id").unwrap_or_default();
        org.users.iter().filter(|u| u.id == id).map(|u| serde_json::json!({"attributes": attrs("User", &u.id), "Id": u.id, "IsActive": u.active})).collect()
    } else if soql.starts_with("SELECT Id, IsFrozen FROM UserLogin WHERE UserId = ") {
        let id = literal(&soql, "UserId").unwrap_or_default();
        org.users.iter().filter(|u| u.id == id).map(|u| serde_json::json!({"attributes": attrs("UserLogin", &u.login_id), "Id": u.login_id, "IsFrozen": u.frozen})).collect()
    } else if soql.starts_with("SELECT Id, IsFrozen FROM UserLogin WHERE Id = ") {
        let id = literal(&soql, "Id").unwrap_or_default();
        org.users.iter().filter(|u| u.login_id == id).map(|u| serde_json::json!({"attributes": attrs("UserLogin", &u.login_id), "Id": u.login_id, "IsFrozen": u.frozen})).collect()
    } else if soql.contains(" FROM ReportEvent WHERE EventDate >= ")
        && soql.ends_with(" ORDER BY EventDate ASC")
    {
        if offset == 0 && !org.poll_faults.is_empty() {
            return fault(org.poll_faults.remove(0));
        }
        let since = soql
            .split(" WHERE EventDate >= ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        let Some(since) = since else {
            return rest_error(400, "MALFORMED_QUERY", "unexpected token: EventDate");
        };
        let mut rows: Vec<&ReportEvent> =
            org.events.iter().filter(|e| e.time_ms >= since).collect();
        rows.sort_by_key(|e| e.time_ms);
        rows.iter().map(|e| serde_json::json!({"attributes": {"type": "ReportEvent"}, "EventIdentifier": e.id, "EventDate": sf_time(e.time_ms), "Username": e.username, "Name": e.report, "ReportId": "00O5g000004XyZaEAK", "Operation": e.operation, "RowsProcessed": e.rows as f64, "QueriedEntities": "Account", "ExportFileFormat": e.format, "EventSource": "Lightning"})).collect()
    } else {
        return rest_error(400, "MALFORMED_QUERY", &format!("unexpected query: {soql}"));
    };
    let size = org.page_size.max(1);
    let total = records.len();
    let page: Vec<serde_json::Value> = records.into_iter().skip(offset).take(size).collect();
    let done = offset + size >= total;
    let mut v = serde_json::json!({"totalSize": total, "done": done, "records": page});
    if !done {
        org.locators.push(soql);
        v["nextRecordsUrl"] = format!(
            "/services/data/v62.0/query/01gPAGE{}-{}",
            org.locators.len() - 1,
            offset + size
        )
        .into();
    }
    (200, "application/json", v.to_string())
}

impl SalesforceApi {
    pub fn start(org: Org) -> SalesforceApi {
        let org = Arc::new(Mutex::new(org));
        let served = org.clone();
        let hook = Hook::serve(move |line, headers, body| {
            let mut o = served.lock().unwrap();
            answer(&mut o, line, headers, body)
        });
        SalesforceApi {
            base: format!("http://127.0.0.1:{}", hook.port),
            org,
            hook,
        }
    }

    /// The request lines received whose path starts with `prefix`.
    pub fn calls(&self, prefix: &str) -> Vec<String> {
        self.hook.calls(prefix)
    }
}
