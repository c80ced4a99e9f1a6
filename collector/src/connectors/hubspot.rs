//! The HubSpot connector: at an offboarding it removes the leaver's user from the HubSpot
//! account and reads it back gone; it polls the account's audit log for exports, which become
//! `crm` events in the collector's pipeline ([`super::crm`]). As documented on
//! developers.hubspot.com:
//! - a private app's access token, `Authorization: Bearer <token>` on every call;
//! - user provisioning (scope `settings.users.write`): `GET /settings/v3/users/{email}?
//!   idProperty=EMAIL` (`{"id","email",…}`, or 404), `DELETE /settings/v3/users/{id}` (204);
//! - account activity (Enterprise, scope `account-info.security.read`): `GET /account-info/v3/
//!   activity/audit-logs?occurredAfter=&limit=&after=`: `results[]` with `id`, `category`,
//!   `subCategory`, `action`, `targetObjectId`, `occurredAt`, `actingUser {userId, userEmail}`,
//!   and `paging.next.after` while more follow;
//! - errors as `{"status":"error","message","correlationId","category"}`: 401
//!   `INVALID_AUTHENTICATION`, 403 `MISSING_SCOPES`, 429 `RATE_LIMITS` (retried), 5xx.
//!
//! HubSpot's audit log does not record how many records an export held: its exports come
//! with a size of 0, which the store raises as an export of unknown size.

use super::{
    answer_of, attempt_of, http, json_of as json, path_segment, vendor_error, Attempt, CrmExport,
    Failed, Secret, UserMap, USER_AGENT,
};
use holdfast_shared::time::UnixMs;
use std::time::Duration;

/// Bytes of one answer read, at most.
const MAX_ANSWER: u64 = 8 << 20;
/// Audit log entries asked for a page.
const PAGE: &str = "100";
/// Pages of one poll read, at most.
const MAX_PAGES: usize = 1_000;

/// A validated HubSpot connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpot {
    /// `https://api.hubapi.com`, without a trailing `/`.
    pub api: String,
    /// The private app's access token, from `token_file`.
    pub token: Secret,
    /// The user's HubSpot email, `{user}` standing for the Holdfast user.
    pub login: String,
    /// How often exports are polled; `None`: not polled.
    pub poll: Option<Duration>,
    /// HubSpot emails → Holdfast users, with `login` as the fallback.
    pub users: UserMap,
}

/// What went wrong, from a HubSpot error body.
pub fn error_of(step: &str, status: u16, body: &[u8]) -> String {
    let hint = |status, category: Option<&str>| {
        match (status, category) {
        (429, _) | (_, Some("RATE_LIMITS")) => " (rate limited: retried with backoff)",
        (401, _) | (_, Some("INVALID_AUTHENTICATION" | "EXPIRED_AUTHENTICATION")) => {
            " (check token_file)"
        }
        (_, Some("MISSING_SCOPES")) => {
            " (the private app needs the settings.users.write and account-info.security.read scopes)"
        }
        (500..=599, _) => " (HubSpot failed: retried with backoff)",
        _ => "",
    }
    };
    vendor_error(step, status, body, &["category"], &["message"], hint)
}

/// The HubSpot API client of one call.
struct Api<'a> {
    agent: ureq::Agent,
    h: &'a HubSpot,
}

impl Api<'_> {
    fn auth(&self) -> String {
        format!("Bearer {}", self.h.token.expose())
    }

    fn answer(
        &self,
        step: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, Failed> {
        answer_of(step, result, MAX_ANSWER, |status, body| {
            error_of(step, status, body)
        })
        .map(|(_, body)| body)
    }

    /// The user of `key` (an email with `by_email`, else HubSpot's id); `None` on a 404.
    fn user(&self, step: &str, key: &str, by_email: bool) -> Result<Option<String>, Failed> {
        let mut req = self.agent.get(format!(
            "{}/settings/v3/users/{}",
            self.h.api,
            path_segment(key)
        ));
        if by_email {
            req = req.query("idProperty", "EMAIL");
        }
        let result = req
            .header("Authorization", &self.auth())
            .header("User-Agent", USER_AGENT)
            .call();
        match self.answer(step, result) {
            Ok(body) => {
                let v = json(step, &body)?;
                let id = match v.get("id") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => return Err((None, format!("{step}: no `id` in the answer"))),
                };
                Ok(Some(id))
            }
            Err((Some(404), _)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Removes `user`'s HubSpot user (blocking) and reads it back gone. HubSpot has no
/// reactivation: a restore says so and changes nothing.
pub fn run(h: &HubSpot, user: &str, event: &str, timeout: Duration) -> Attempt {
    attempt_of(change(h, user, event, timeout), 204)
}

fn change(h: &HubSpot, user: &str, event: &str, timeout: Duration) -> Result<String, Failed> {
    if user.chars().any(char::is_control) {
        return Err((None, "the user name holds a control character".into()));
    }
    if event == "restore" {
        return Ok("restore: HubSpot cannot reactivate a removed user; add them again in Settings > Users if they return".into());
    }
    let email = h.login.replace("{user}", user);
    let api = Api {
        agent: http(timeout),
        h,
    };
    let Some(id) = api.user("find user", &email, true)? else {
        return Ok(format!(
            "HubSpot user {email} is not in the account (already removed)"
        ));
    };
    api.answer(
        "remove user",
        api.agent
            .delete(format!("{}/settings/v3/users/{}", h.api, path_segment(&id)))
            .header("Authorization", &api.auth())
            .header("User-Agent", USER_AGENT)
            .call(),
    )?;
    match api.user("read back", &id, false)? {
        None => Ok(format!(
            "HubSpot user {email} ({id}) removed and read back gone"
        )),
        Some(_) => Err((None, format!("read back: {email} ({id}) is still there"))),
    }
}

fn field<'a>(r: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    r.get(name).and_then(|v| v.as_str())
}

/// One audit log entry as an export, if it is one (its category, subcategory or action says
/// `EXPORT`).
pub fn export_of(r: &serde_json::Value) -> Option<CrmExport> {
    let says_export = ["category", "subCategory", "action"]
        .iter()
        .any(|k| field(r, k).is_some_and(|v| v.to_ascii_uppercase().contains("EXPORT")));
    if !says_export {
        return None;
    }
    let login = r.get("actingUser").and_then(|u| field(u, "userEmail"))?;
    let entity = field(r, "subCategory")
        .filter(|s| !s.to_ascii_uppercase().contains("EXPORT"))
        .map(str::to_string);
    Some(CrmExport {
        id: field(r, "id")?.to_string(),
        time_ms: UnixMs::parse_rfc3339(field(r, "occurredAt")?)?,
        login: login.to_string(),
        report: field(r, "targetObjectId")
            .filter(|t| !t.is_empty())
            .unwrap_or("export")
            .to_string(),
        records: 0,
        entity,
        format: None,
        how: "HubSpot export (audit log)".into(),
    })
}

/// Exports since `since` (inclusive: the store drops those it has), oldest first.
pub fn poll(h: &HubSpot, since: UnixMs, timeout: Duration) -> Result<Vec<CrmExport>, Failed> {
    let api = Api {
        agent: http(timeout),
        h,
    };
    let after_time = super::rfc3339_ms(since);
    let mut exports = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = api
            .agent
            .get(format!("{}/account-info/v3/activity/audit-logs", h.api))
            .query("occurredAfter", &after_time)
            .query("limit", PAGE);
        if let Some(c) = &cursor {
            req = req.query("after", c);
        }
        let body = api.answer(
            "audit-logs",
            req.header("Authorization", &api.auth())
                .header("User-Agent", USER_AGENT)
                .call(),
        )?;
        let v = json("audit-logs", &body)?;
        if let Some(r) = v.get("results").and_then(|r| r.as_array()) {
            exports.extend(r.iter().filter_map(export_of));
        }
        let next = v
            .pointer("/paging/next/after")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        match next {
            Some(n) if cursor.as_deref() != Some(n.as_str()) => cursor = Some(n),
            _ => {
                exports.sort_by_key(|e| e.time_ms);
                return Ok(exports);
            }
        }
    }
    Err((None, format!("audit-logs: more than {MAX_PAGES} pages")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_told_from_other_audit_entries() {
        let edit = serde_json::json!({"id": "a1", "category": "PROPERTY_VALUE", "subCategory": "CONTACT", "action": "UPDATE", "targetObjectId": "51", "occurredAt": "2026-12-05T10:00:00.000Z", "actingUser": {"userId": 7, "userEmail": "kim@acme.example"}});
        assert_eq!(export_of(&edit), None);
        let mut export = edit.clone();
        export["category"] = "EXPORT".into();
        export["action"] = "CREATE".into();
        export["targetObjectId"] = "All contacts".into();
        let e = export_of(&export).unwrap();
        assert_eq!(
            (
                e.id.as_str(),
                e.login.as_str(),
                e.report.as_str(),
                e.records,
                e.entity.as_deref()
            ),
            ("a1", "kim@acme.example", "All contacts", 0, Some("CONTACT"))
        );
        assert_eq!(
            e.time_ms,
            UnixMs::parse_rfc3339("2026-12-05T10:00:00Z").unwrap()
        );
        assert_eq!(
            error_of("audit-logs", 403, br#"{"status":"error","message":"This app hasn't been granted all required scopes","correlationId":"c1","category":"MISSING_SCOPES"}"#),
            "audit-logs: HTTP 403: MISSING_SCOPES: This app hasn't been granted all required scopes (the private app needs the settings.users.write and account-info.security.read scopes)"
        );
        assert_eq!(
            error_of("find user", 401, br#"{"status":"error","message":"Authentication credentials not found.","correlationId":"c2","category":"INVALID_AUTHENTICATION"}"#),
            "find user: HTTP 401: INVALID_AUTHENTICATION: Authentication credentials not found. (check token_file)"
        );
    }
}
