//! The Zoho CRM connector: it polls the CRM's audit log for exports, which become `crm`
//! events in the collector's pipeline ([`super::crm`]). Zoho's audit log export is an
//! asynchronous job; as documented on zoho.com/crm/developer/docs/api/v8:
//! - OAuth 2.0 refresh (`POST {accounts}/oauth/v2/token`, `grant_type=refresh_token`,
//!   `client_id`, `client_secret`, `refresh_token`): `{"access_token","api_domain",…}`, or HTTP
//!   200 with `{"error":"invalid_client"}` (or `invalid_code`) for wrong credentials;
//! - `Authorization: Zoho-oauthtoken <token>` on every API call;
//! - `POST {api}/crm/v8/settings/audit_log_export` (create-export-audit-log.html, scope
//!   `ZohoCRM.settings.audit_logs.CREATE`) with a `criteria` on `performed_at`:
//!   `{"audit_log_export":[{"status":"success","code":"SCHEDULED","details":{"id"}}]}`;
//! - `GET {api}/crm/v8/settings/audit_log_export/{id}` (get-export-audit-log.html, scope
//!   `…audit_logs.READ`): `status` (`Scheduled`, `Progress`, `Finished`, `Failed`) and
//!   `download_links`;
//! - the CSV behind each link (download-export-audit-log-result.html, scope
//!   `ZohoFiles.files.READ`), on Zoho's download server (`https://download.zoho.com/v2/crm/
//!   {org}/auditlog/{job}/AuditLog.csv`); above 100,000 entries Zoho sends a ZIP instead;
//! - errors as `{"code","details","message","status":"error"}` (`INVALID_TOKEN`,
//!   `OAUTH_SCOPE_MISMATCH`, `TOO_MANY_REQUESTS` with 429).
//!
//! An audit log entry's export is told by its action (`Exported`, `Export`…); the number of
//! records is read from its description when Zoho writes one ("Exported 5000 Leads"), else it
//! is 0 (an export of unknown size).

use super::{
    answer_of, http, json_of as json, keep, vendor_error, Attempt, CrmExport, Failed, Secret,
    UserMap, USER_AGENT,
};
use holdfast_shared::classify::{RowSink, TableReader};
use holdfast_shared::time::UnixMs;
use std::time::{Duration, Instant};

/// Bytes of one JSON answer read, at most.
const MAX_ANSWER: u64 = 1 << 20;
/// Bytes of one audit log CSV read, at most (100,000 entries of a few hundred bytes).
const MAX_CSV: u64 = 256 << 20;
/// Entries read from one CSV, at most (Zoho puts at most 100,000 in one).
const MAX_ROWS: usize = 100_000;
/// Pause between two looks at the job's status.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Zoho's download servers, by data centre: a download link elsewhere is not followed (the
/// token goes with it).
const DOWNLOAD_HOSTS: [&str; 8] = [
    "download.zoho.com",
    "download.zoho.eu",
    "download.zoho.in",
    "download.zoho.com.au",
    "download.zoho.jp",
    "download.zoho.com.cn",
    "download.zoho.sa",
    "download.zohocloud.ca",
];

/// A validated Zoho CRM connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zoho {
    /// The API domain (`https://www.zohoapis.com`, `…zohoapis.eu`, …), without a trailing `/`.
    pub api: String,
    /// The accounts server that issues tokens (`https://accounts.zoho.com`, …).
    pub accounts: String,
    /// The self client's Client ID.
    pub client_id: String,
    /// Its Client Secret, from `secret_file`.
    pub secret: Secret,
    /// A refresh token, from `token_file`.
    pub refresh: Secret,
    /// The user's Zoho login, `{user}` standing for the Holdfast user.
    pub login: String,
    /// How often exports are polled; `None`: not polled.
    pub poll: Option<Duration>,
    /// Zoho users (emails or names) → Holdfast users, with `login` as the fallback.
    pub users: UserMap,
}

/// What went wrong, from a Zoho error body.
pub fn error_of(step: &str, status: u16, body: &[u8]) -> String {
    let hint = |status, code: Option<&str>| {
        match (status, code) {
        (429, _) | (_, Some("TOO_MANY_REQUESTS")) => " (rate limited: retried with backoff)",
        (_, Some("INVALID_TOKEN" | "AUTHENTICATION_FAILURE")) => {
            " (check client_id, secret_file and token_file)"
        }
        (_, Some("OAUTH_SCOPE_MISMATCH")) => {
            " (the refresh token needs ZohoCRM.settings.audit_logs.CREATE, ZohoCRM.settings.audit_logs.READ and ZohoFiles.files.READ)"
        }
        (500..=599, _) => " (Zoho failed: retried with backoff)",
        _ => "",
    }
    };
    vendor_error(step, status, body, &["code"], &["message"], hint)
}

/// The Zoho API client of one poll: its access token, taken once.
struct Api<'a> {
    agent: ureq::Agent,
    z: &'a Zoho,
    token: String,
}

impl<'a> Api<'a> {
    fn answer(
        step: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        max: u64,
    ) -> Result<Vec<u8>, Failed> {
        answer_of(step, result, max, |status, body| {
            error_of(step, status, body)
        })
        .map(|(_, b)| b)
    }

    fn open(z: &'a Zoho, timeout: Duration) -> Result<Api<'a>, Failed> {
        let agent = http(timeout);
        let body = Api::answer(
            "token",
            agent
                .post(format!("{}/oauth/v2/token", z.accounts))
                .header("User-Agent", USER_AGENT)
                .send_form([
                    ("grant_type", "refresh_token"),
                    ("client_id", z.client_id.as_str()),
                    ("client_secret", z.secret.expose()),
                    ("refresh_token", z.refresh.expose()),
                ]),
            MAX_ANSWER,
        )?;
        let v = json("token", &body)?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Err((
                Some(200),
                format!("token: {e} (check client_id, secret_file and token_file)"),
            ));
        }
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or((None, "token: no access_token in the answer".to_string()))?
            .to_string();
        Ok(Api { agent, z, token })
    }

    fn auth(&self) -> String {
        format!("Zoho-oauthtoken {}", self.token)
    }

    /// Schedules an export of the audit log entries in `[from, to]`: the job's id.
    fn schedule(&self, from: UnixMs, to: UnixMs) -> Result<String, Failed> {
        let criteria = serde_json::json!({"audit_log_export": [{"criteria": {
            "field": {"api_name": "performed_at"},
            "comparator": "between",
            "value": [zoho_time(from), zoho_time(to)],
        }}]});
        let body = Api::answer(
            "schedule export",
            self.agent
                .post(format!("{}/crm/v8/settings/audit_log_export", self.z.api))
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/json")
                .header("User-Agent", USER_AGENT)
                .send(criteria.to_string().as_bytes()),
            MAX_ANSWER,
        )?;
        let v = json("schedule export", &body)?;
        let first = v.pointer("/audit_log_export/0");
        match first.and_then(|f| f.pointer("/details/id")) {
            Some(serde_json::Value::String(id)) => Ok(id.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            _ => Err((
                None,
                format!("schedule export: no job id in the answer: {}", keep(&body)),
            )),
        }
    }

    /// The job's download links once it has finished (looking again until `deadline`).
    fn links(&self, job: &str, deadline: Instant) -> Result<Vec<String>, Failed> {
        loop {
            let body = Api::answer(
                "export status",
                self.agent
                    .get(format!(
                        "{}/crm/v8/settings/audit_log_export/{}",
                        self.z.api,
                        super::path_segment(job)
                    ))
                    .header("Authorization", &self.auth())
                    .header("User-Agent", USER_AGENT)
                    .call(),
                MAX_ANSWER,
            )?;
            let v = json("export status", &body)?;
            let entry = v
                .pointer("/audit_log_export/0")
                .cloned()
                .unwrap_or_default();
            let status = entry.get("status").and_then(|s| s.as_str()).unwrap_or("");
            match status {
                "Finished" => {
                    return Ok(entry
                        .get("download_links")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default())
                }
                "Failed" => return Err((None, format!("export status: Zoho's job {job} failed"))),
                _ if Instant::now() >= deadline => {
                    return Err((
                        None,
                        format!("export status: job {job} still `{status}` at the timeout; asked again at the next poll"),
                    ))
                }
                _ => std::thread::sleep(STATUS_EVERY),
            }
        }
    }

    /// One CSV behind a download link.
    fn download(&self, link: &str) -> Result<Vec<u8>, Failed> {
        if !self.may_follow(link) {
            return Err((
                None,
                format!("download: {link} is not on Zoho's download servers; not followed"),
            ));
        }
        if !link.to_ascii_lowercase().ends_with(".csv") {
            return Err((
                None,
                format!("download: {link} is not a CSV (over 100,000 entries since the last poll come as a ZIP, which is not read: poll more often)"),
            ));
        }
        Api::answer(
            "download",
            self.agent
                .get(link)
                .header("Authorization", &self.auth())
                .header("User-Agent", USER_AGENT)
                .call(),
            MAX_CSV,
        )
    }

    /// Whether `link` is on one of Zoho's download servers (https), or on the API's own
    /// origin.
    fn may_follow(&self, link: &str) -> bool {
        let on_api = link
            .strip_prefix(self.z.api.as_str())
            .is_some_and(|r| r.starts_with('/'));
        let host = link
            .strip_prefix("https://")
            .and_then(|r| r.split('/').next())
            .unwrap_or("");
        on_api || DOWNLOAD_HOSTS.contains(&host)
    }
}

/// `t` as Zoho writes a date-time (`2026-12-05T10:00:00+00:00`).
fn zoho_time(t: UnixMs) -> String {
    let s = super::rfc3339_ms(UnixMs(t.ms() - t.ms().rem_euclid(1000)));
    format!("{}+00:00", s.trim_end_matches('Z').trim_end_matches(".000"))
}

/// The rows of a CSV, each its fields (at most [`MAX_ROWS`]).
#[derive(Default)]
struct Rows {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
}

impl RowSink for Rows {
    fn field(&mut self, text: &[u8]) {
        self.row
            .push(String::from_utf8_lossy(text).trim().to_string());
    }
    fn end_record(&mut self) {
        let row = std::mem::take(&mut self.row);
        if self.rows.len() <= MAX_ROWS && row.iter().any(|f| !f.is_empty()) {
            self.rows.push(row);
        }
    }
}

/// The first column whose header is one of `names` (case-insensitive).
fn column(header: &[String], names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
}

/// The email inside `who` (`Kim Lee (kim@acme.example)`), or `who` itself.
fn login_in(who: &str) -> String {
    who.split(|c: char| c.is_whitespace() || "()<>[],;".contains(c))
        .find(|w| w.contains('@') && w.len() > 2)
        .unwrap_or(who)
        .to_string()
}

/// The number written before a word in `text` ("Exported 5000 Leads" → 5000), if any.
fn count_in(text: &str) -> u64 {
    text.split(|c: char| c.is_whitespace())
        .find_map(|w| w.replace(',', "").parse::<u64>().ok())
        .unwrap_or(0)
}

/// The exports in an audit log CSV (header first), oldest first; rows it cannot read are
/// left out.
pub fn exports_in(csv: &[u8]) -> Result<Vec<CrmExport>, String> {
    let mut rows = Rows::default();
    let mut reader = TableReader::new(Some(b','));
    reader.feed(csv, &mut rows);
    reader.finish(&mut rows);
    let mut rows = rows.rows.into_iter();
    let header = rows.next().unwrap_or_default();
    let col = |names: &[&str]| column(&header, names);
    let (Some(time), Some(by), Some(action)) = (
        col(&["Time", "Audited Time", "Performed At", "Date & Time"]),
        col(&["Done By", "Performed By", "User"]),
        col(&["Action"]),
    ) else {
        return Err(format!(
            "the audit log CSV has no Time, Done By and Action columns (its header: {})",
            header.join(",")
        ));
    };
    let module = col(&["Module", "Type"]);
    let record = col(&["Record Name", "Name", "Record"]);
    let description = col(&["Description", "Details"]);
    let id = col(&["Id", "Audit Id", "Entry Id"]);
    let get = |r: &[String], i: Option<usize>| i.and_then(|i| r.get(i)).cloned();
    let mut exports: Vec<CrmExport> = rows
        .filter_map(|r| {
            let act = r.get(action)?;
            if !act.to_ascii_lowercase().contains("export") {
                return None;
            }
            let at = r.get(time)?;
            let who = r.get(by)?;
            let time_ms = super::parse_time(at)?;
            let what = get(&r, description).unwrap_or_default();
            let entity = get(&r, module).filter(|m| !m.is_empty());
            let report = get(&r, record)
                .filter(|x| !x.is_empty())
                .or_else(|| entity.clone())
                .unwrap_or_else(|| "export".into());
            let key = get(&r, id)
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| format!("{at}|{who}|{act}|{report}"));
            Some(CrmExport {
                id: key,
                time_ms,
                login: login_in(who),
                report,
                records: count_in(&what).max(count_in(act)),
                entity,
                format: None,
                how: "Zoho CRM export (audit log)".into(),
            })
        })
        .collect();
    exports.sort_by_key(|e| e.time_ms);
    Ok(exports)
}

/// Exports since `since` (inclusive: the store drops those it has), oldest first: one audit
/// log export job, followed until it finishes (within the connector's timeout).
pub fn poll(z: &Zoho, since: UnixMs, timeout: Duration) -> Result<Vec<CrmExport>, Failed> {
    let deadline = Instant::now() + timeout;
    let api = Api::open(z, timeout)?;
    let now = UnixMs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    );
    let job = api.schedule(since, now + 1_000)?;
    let mut exports = Vec::new();
    for link in api.links(&job, deadline)? {
        let csv = api.download(&link)?;
        exports.extend(exports_in(&csv).map_err(|e| (None, format!("download: {e}")))?);
    }
    exports.sort_by_key(|e| e.time_ms);
    Ok(exports)
}

/// Zoho is polled only: an offboarding has nothing to do there (deactivate Zoho users
/// through the identity provider's `scim` connector).
pub fn run(_z: &Zoho, _user: &str, event: &str) -> Attempt {
    Attempt {
        ok: true,
        code: None,
        detail: format!("{event}: nothing to do in Zoho CRM (this connector polls exports; deactivate Zoho users through SCIM)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_read_from_the_audit_log_csv() {
        let csv = "Time,Done By,Action,Module,Record Name,Description,Source\r\n\
            2026-12-05T15:30:00+05:30,Kim Lee (kim@acme.example),Exported,Leads,All Leads,\"Exported 5,000 Leads\",Web\r\n\
            2026-12-05T15:31:00+05:30,Kim Lee (kim@acme.example),Updated,Leads,Acme Ltd,Changed phone,Web\r\n\
            2026-12-05T15:32:00+05:30,ada@acme.example,Export,Contacts,,,Web\r\n";
        let e = exports_in(csv.as_bytes()).unwrap();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            (
                e[0].login.as_str(),
                e[0].report.as_str(),
                e[0].records,
                e[0].entity.as_deref()
            ),
            ("kim@acme.example", "All Leads", 5000, Some("Leads"))
        );
        assert_eq!(
            e[0].time_ms,
            UnixMs::parse_rfc3339("2026-12-05T10:00:00Z").unwrap()
        );
        assert_eq!(
            (e[1].login.as_str(), e[1].report.as_str(), e[1].records),
            ("ada@acme.example", "Contacts", 0)
        );
        assert_ne!(e[0].id, e[1].id);
        let err = exports_in(b"When,Who\r\n1,2\r\n").unwrap_err();
        assert!(err.contains("no Time, Done By and Action columns"), "{err}");
        assert_eq!(
            zoho_time(UnixMs(1_764_928_800_123)),
            "2025-12-05T10:00:00+00:00"
        );
    }

    #[test]
    fn download_links_are_followed_only_to_zoho() {
        let z = Zoho {
            api: "https://www.zohoapis.com".into(),
            accounts: "https://accounts.zoho.com".into(),
            client_id: "1000.X".into(),
            secret: Secret::new("s".into()),
            refresh: Secret::new("r".into()),
            login: "{user}".into(),
            poll: None,
            users: UserMap::default(),
        };
        let api = Api {
            agent: http(Duration::from_secs(1)),
            z: &z,
            token: "t".into(),
        };
        for (link, ok) in [
            (
                "https://download.zoho.com/v2/crm/1/auditlog/2/AuditLog.csv",
                true,
            ),
            (
                "https://download.zoho.eu/v2/crm/1/auditlog/2/AuditLog.csv",
                true,
            ),
            ("https://www.zohoapis.com/x/AuditLog.csv", true),
            ("https://download.zoho.com.evil.example/AuditLog.csv", false),
            ("http://download.zoho.com/AuditLog.csv", false),
            ("https://www.zohoapis.com.evil.example/AuditLog.csv", false),
        ] {
            assert_eq!(api.may_follow(link), ok, "{link}");
        }
    }
}
