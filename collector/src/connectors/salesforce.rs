//! The Salesforce connector: at an offboarding it freezes (or deactivates) the leaver's user,
//! and it polls Event Monitoring's `ReportEvent` for report exports, which become `crm`
//! events in the collector's pipeline ([`super::crm`]). As documented on
//! developer.salesforce.com:
//! - the OAuth 2.0 client credentials flow (`POST /services/oauth2/token`,
//!   `grant_type=client_credentials`): `access_token` and `instance_url`, or
//!   `{"error":"invalid_client","error_description":…}`;
//! - SOQL through `GET /services/data/vXX.X/query?q=`: `records[]`, `done` and
//!   `nextRecordsUrl` for the next page;
//! - freezing: the user's `UserLogin` row, `PATCH /sobjects/UserLogin/{Id}` with
//!   `{"IsFrozen": true}`; deactivating: `PATCH /sobjects/User/{Id}` with `{"IsActive": false}`
//!   (204 No Content), then read back;
//! - `ReportEvent` (API 46.0+, Shield or Event Monitoring): `EventIdentifier`, `EventDate`,
//!   `Username`, `Name`, `ReportId`, `Operation`, `RowsProcessed`, `QueriedEntities`,
//!   `ExportFileFormat`, `EventSource`;
//! - REST errors as `[{"message":…,"errorCode":…}]` (`INVALID_SESSION_ID`,
//!   `REQUEST_LIMIT_EXCEEDED` with 403, `MALFORMED_QUERY`); 429 and 5xx are retried.

use super::{
    answer_of, attempt_of, http, json_of as json, vendor_error, Attempt, CrmExport, Failed, Secret,
    UserMap, USER_AGENT,
};
use super::{parse_time, rfc3339_ms};
use holdfast_shared::time::UnixMs;
use std::time::Duration;

/// The REST API version the connector speaks.
pub const API_VERSION: &str = "v62.0";
/// Bytes of one answer read, at most.
const MAX_ANSWER: u64 = 16 << 20;
/// Pages of one query read, at most (2,000 records a page).
const MAX_PAGES: usize = 500;

/// What an offboarding does to the Salesforce user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SfAction {
    /// `UserLogin.IsFrozen = true`: no login, nothing else changes (a restore unfreezes).
    Freeze,
    /// `User.IsActive = false` (a restore leaves the user inactive).
    Deactivate,
}

/// A validated Salesforce connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salesforce {
    /// The org's My Domain URL (`https://acme.my.salesforce.com`), without a trailing `/`.
    pub url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// Its consumer secret, from `secret_file`.
    pub secret: Secret,
    /// The Salesforce `Username`, `{user}` standing for the Holdfast user.
    pub login: String,
    pub action: SfAction,
    /// How often report exports are polled; `None`: not polled.
    pub poll: Option<Duration>,
    /// Salesforce usernames (or emails) → Holdfast users, with `login` as the fallback.
    pub users: UserMap,
}

/// What went wrong, from a Salesforce error body (REST list, or OAuth object).
pub fn error_of(step: &str, status: u16, body: &[u8]) -> String {
    let hint = |status, code: Option<&str>| match (status, code) {
        (_, Some("invalid_client" | "invalid_client_id" | "invalid_grant")) => {
            " (check client_id and secret_file)"
        }
        (_, Some("REQUEST_LIMIT_EXCEEDED")) | (429, _) => " (rate limited: retried with backoff)",
        (500..=599, _) => " (Salesforce failed: retried with backoff)",
        _ => "",
    };
    vendor_error(
        step,
        status,
        body,
        &["errorCode", "error"],
        &["message", "error_description"],
        hint,
    )
}

/// The Salesforce API client of one call: its access token, taken once.
struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

fn answer(
    step: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Vec<u8>), Failed> {
    answer_of(step, result, MAX_ANSWER, |status, body| {
        error_of(step, status, body)
    })
}

/// `s` as a SOQL string literal's inside (quotes and backslashes escaped).
pub fn soql_quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

impl Api {
    fn open(s: &Salesforce, timeout: Duration) -> Result<Api, Failed> {
        let agent = http(timeout);
        let (_, body) = answer(
            "token",
            agent
                .post(format!("{}/services/oauth2/token", s.url))
                .header("User-Agent", USER_AGENT)
                .send_form([
                    ("grant_type", "client_credentials"),
                    ("client_id", s.client_id.as_str()),
                    ("client_secret", s.secret.expose()),
                ]),
        )?;
        let v = json("token", &body)?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or((None, "token: no access_token in the answer".to_string()))?
            .to_string();
        // The API is called where the token was issued for, if it is the org's own host;
        // never anywhere else (the token must not leave for another server).
        Ok(Api {
            agent,
            base: s.url.clone(),
            token,
        })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Every record of a SOQL query, following `nextRecordsUrl`.
    fn query(&self, step: &str, soql: &str) -> Result<Vec<serde_json::Value>, Failed> {
        let mut records = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let req = match &next {
                None => self
                    .agent
                    .get(format!("{}/services/data/{API_VERSION}/query", self.base))
                    .query("q", soql),
                Some(path) => self.agent.get(format!("{}{path}", self.base)),
            };
            let (_, body) = answer(
                step,
                req.header("Authorization", &self.auth())
                    .header("User-Agent", USER_AGENT)
                    .call(),
            )?;
            let v = json(step, &body)?;
            if let Some(r) = v.get("records").and_then(|r| r.as_array()) {
                records.extend(r.iter().cloned());
            }
            let done = v.get("done").and_then(|d| d.as_bool()).unwrap_or(true);
            match v.get("nextRecordsUrl").and_then(|n| n.as_str()) {
                // Only a path on the same org is followed.
                Some(n) if !done && n.starts_with("/services/data/") => next = Some(n.into()),
                _ => return Ok(records),
            }
        }
        Err((None, format!("{step}: more than {MAX_PAGES} pages")))
    }

    fn patch(
        &self,
        step: &str,
        object: &str,
        id: &str,
        body: serde_json::Value,
    ) -> Result<(), Failed> {
        answer(
            step,
            self.agent
                .patch(format!(
                    "{}/services/data/{API_VERSION}/sobjects/{object}/{id}",
                    self.base
                ))
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/json")
                .header("User-Agent", USER_AGENT)
                .send(body.to_string().as_bytes()),
        )
        .map(|_| ())
    }
}

fn field<'a>(r: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    r.get(name).and_then(|v| v.as_str())
}

/// Freezes or deactivates `user`'s Salesforce user (blocking), and reads it back. A restore
/// unfreezes a frozen user; a deactivated one stays inactive (reactivating takes a licence
/// and is IT's call).
pub fn run(s: &Salesforce, user: &str, event: &str, timeout: Duration) -> Attempt {
    attempt_of(change(s, user, event, timeout), 204)
}

fn change(s: &Salesforce, user: &str, event: &str, timeout: Duration) -> Result<String, Failed> {
    if user.chars().any(char::is_control) {
        return Err((None, "the user name holds a control character".into()));
    }
    let restore = event == "restore";
    if restore && s.action == SfAction::Deactivate {
        return Ok(
            "restore: the Salesforce user stays inactive (reactivate it in Setup if they return)"
                .into(),
        );
    }
    let username = s.login.replace("{user}", user);
    let api = Api::open(s, timeout)?;
    let users = api.query(
        "find user",
        &format!(
            "SELECT Id, Username, IsActive FROM User WHERE Username = '{}'",
            soql_quoted(&username)
        ),
    )?;
    let Some(id) = users
        .first()
        .and_then(|u| field(u, "Id"))
        .map(str::to_string)
    else {
        return Err((None, format!("find user: no Salesforce user {username}")));
    };
    match s.action {
        SfAction::Deactivate => {
            api.patch(
                "deactivate",
                "User",
                &id,
                serde_json::json!({"IsActive": false}),
            )?;
            let back = api.query(
                "read back",
                &format!(
                    "SELECT Id, IsActive FROM User WHERE Id = '{}'",
                    soql_quoted(&id)
                ),
            )?;
            match back
                .first()
                .and_then(|u| u.get("IsActive"))
                .and_then(|a| a.as_bool())
            {
                Some(false) => Ok(format!(
                    "Salesforce user {username} ({id}) deactivated and read back inactive"
                )),
                other => Err((
                    None,
                    format!("read back: {username} is still active ({other:?})"),
                )),
            }
        }
        SfAction::Freeze => {
            let frozen = !restore;
            let logins = api.query(
                "find login",
                &format!(
                    "SELECT Id, IsFrozen FROM UserLogin WHERE UserId = '{}'",
                    soql_quoted(&id)
                ),
            )?;
            let Some(login_id) = logins
                .first()
                .and_then(|l| field(l, "Id"))
                .map(str::to_string)
            else {
                return Err((
                    None,
                    format!("find login: no UserLogin for {username} ({id})"),
                ));
            };
            let step = if frozen { "freeze" } else { "unfreeze" };
            api.patch(
                step,
                "UserLogin",
                &login_id,
                serde_json::json!({"IsFrozen": frozen}),
            )?;
            let back = api.query(
                "read back",
                &format!(
                    "SELECT Id, IsFrozen FROM UserLogin WHERE Id = '{}'",
                    soql_quoted(&login_id)
                ),
            )?;
            match back
                .first()
                .and_then(|l| l.get("IsFrozen"))
                .and_then(|f| f.as_bool())
            {
                Some(f) if f == frozen => Ok(format!(
                    "Salesforce user {username} ({id}) {} and read back {}",
                    if frozen { "frozen" } else { "unfrozen" },
                    if frozen { "frozen" } else { "not frozen" }
                )),
                other => Err((
                    None,
                    format!("read back: {username}'s IsFrozen is {other:?}, not {frozen}"),
                )),
            }
        }
    }
}

/// Whether a `ReportEvent` is an export (not only a run shown on screen).
fn is_export(r: &serde_json::Value) -> bool {
    let op = field(r, "Operation").unwrap_or("");
    op.contains("Export") || field(r, "ExportFileFormat").is_some_and(|f| !f.is_empty())
}

/// One `ReportEvent` record as an export, if it is one.
pub fn export_of(r: &serde_json::Value) -> Option<CrmExport> {
    if !is_export(r) {
        return None;
    }
    let id = field(r, "EventIdentifier")?.to_string();
    let time = parse_time(field(r, "EventDate")?)?;
    let rows = r
        .get("RowsProcessed")
        .and_then(|n| n.as_f64())
        .unwrap_or(0.0);
    let source = field(r, "EventSource").unwrap_or("Salesforce");
    Some(CrmExport {
        id,
        time_ms: time,
        login: field(r, "Username")?.to_string(),
        report: field(r, "Name")
            .or_else(|| field(r, "ReportId"))
            .unwrap_or("report")
            .to_string(),
        records: if rows.is_finite() && rows > 0.0 {
            rows as u64
        } else {
            0
        },
        entity: field(r, "QueriedEntities").map(str::to_string),
        format: field(r, "ExportFileFormat").map(|f| f.to_ascii_lowercase()),
        how: format!("Salesforce report export ({source})"),
    })
}

/// Report exports since `since` (inclusive: the store drops those it has), oldest first.
pub fn poll(s: &Salesforce, since: UnixMs, timeout: Duration) -> Result<Vec<CrmExport>, Failed> {
    let api = Api::open(s, timeout)?;
    let records = api.query(
        "ReportEvent",
        &format!(
            "SELECT EventIdentifier, EventDate, Username, Name, ReportId, Operation, RowsProcessed, QueriedEntities, ExportFileFormat, EventSource FROM ReportEvent WHERE EventDate >= {} ORDER BY EventDate ASC",
            rfc3339_ms(since)
        ),
    )?;
    Ok(records.iter().filter_map(export_of).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times_and_errors_read_as_salesforce_writes_them() {
        assert_eq!(
            rfc3339_ms(UnixMs(1_764_928_800_000)),
            "2025-12-05T10:00:00.000Z"
        );
        assert_eq!(soql_quoted("o'brien\\x"), "o\\'brien\\\\x");
        assert_eq!(
            error_of("token", 400, br#"{"error":"invalid_client","error_description":"invalid client credentials"}"#),
            "token: HTTP 400: invalid_client: invalid client credentials (check client_id and secret_file)"
        );
        assert_eq!(
            error_of("ReportEvent", 403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#),
            "ReportEvent: HTTP 403: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded. (rate limited: retried with backoff)"
        );
        assert_eq!(
            error_of("freeze", 503, b"down"),
            "freeze: HTTP 503: down (Salesforce failed: retried with backoff)"
        );
    }

    #[test]
    fn report_exports_are_told_from_report_runs() {
        let run = serde_json::json!({"EventIdentifier": "e1", "EventDate": "2026-12-05T10:00:00.000+0000", "Username": "kim@acme.example", "Name": "All Accounts", "Operation": "ReportRunFromLightning", "RowsProcessed": 5000.0});
        assert_eq!(export_of(&run), None);
        let mut export = run.clone();
        export["Operation"] = "ReportExported".into();
        export["ExportFileFormat"] = "CSV".into();
        export["EventSource"] = "Lightning".into();
        let e = export_of(&export).unwrap();
        assert_eq!(
            (e.records, e.report.as_str(), e.format.as_deref()),
            (5000, "All Accounts", Some("csv"))
        );
        assert_eq!(e.how, "Salesforce report export (Lightning)");
        assert_eq!(
            e.time_ms,
            UnixMs::parse_rfc3339("2026-12-05T10:00:00Z").unwrap()
        );
    }
}
