//! A stand-in for Zoho CRM's API and its accounts server, which cannot run here, for the
//! `zoho` connector's scenario. Built from zoho.com/crm/developer/docs/api/v8 and
//! zoho.com/accounts/protocol/oauth:
//! - `POST /oauth/v2/token` (form: `grant_type=refresh_token`, `client_id`, `client_secret`,
//!   `refresh_token`): `{"access_token","api_domain","token_type":"Bearer","expires_in":3600}`;
//!   wrong credentials are still HTTP 200, with `{"error":"invalid_client"}` (or
//!   `invalid_code` for a refresh token that is not valid);
//! - `Authorization: Zoho-oauthtoken <token>` on every API call, else HTTP 401
//!   `{"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"}`;
//! - Create Export Audit Log (create-export-audit-log.html): `POST /crm/v8/settings/
//!   audit_log_export` with `{"audit_log_export":[{"criteria":{…performed_at between…}}]}`:
//!   HTTP 201 `{"audit_log_export":[{"status":"success","code":"SCHEDULED",
//!   "details":{"id"},"message"}]}`;
//! - Get the Status of the Export Audit Log Job (get-export-audit-log.html): `GET
//!   …/audit_log_export/{id}`: `status` `Scheduled`, `Progress`, then `Finished` with
//!   `download_links`, `job_start_time`, `job_end_time`, `expiry_date`, `created_by`;
//! - Download Export Audit Log Result (download-export-audit-log-result.html): `GET
//!   /v2/crm/{org_ID}/auditlog/{job}/AuditLog.csv` (here on the stand-in's own origin);
//! - limits: HTTP 429 `{"code":"TOO_MANY_REQUESTS",…}`.
//!
//! The CSV's columns follow the audit log as Zoho CRM's Setup exports it: Time, Done By,
//! Action, Module, Record Name, Description, Source.

use crate::hook::{header, request_parts, Answer, Hook};
use crate::salesforce::form;
use std::sync::{Arc, Mutex};

/// An audit log entry.
#[derive(Debug, Clone)]
pub struct ZohoEntry {
    /// ms since the epoch.
    pub time_ms: i64,
    /// As Zoho writes the user: `Kim Lee (kim@acme.example)`.
    pub done_by: String,
    /// `Exported`, `Updated`, …
    pub action: String,
    pub module: String,
    pub record: String,
    pub description: String,
}

/// One export job: the time range it covers and how often its status was asked.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub looks: u32,
}

/// The org the stand-in serves.
#[derive(Debug, Default)]
pub struct Org {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub entries: Vec<ZohoEntry>,
    pub jobs: Vec<Job>,
    /// Statuses the next job creations get instead of a job.
    pub schedule_faults: Vec<u16>,
    pub tokens: Vec<String>,
}

/// The stand-in server and the org behind it.
pub struct ZohoApi {
    pub base: String,
    pub org: Arc<Mutex<Org>>,
    pub hook: Hook,
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        "application/json",
        serde_json::json!({"code": code, "details": {}, "message": message, "status": "error"})
            .to_string(),
    )
}

/// A Zoho date-time (`2026-12-05T15:30:00+05:30`) in ms.
fn ms_of(t: &str) -> Option<i64> {
    let (head, zone) = t.split_at(t.len().checked_sub(6)?);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hh: i64 = zone.get(1..3)?.parse().ok()?;
    let mm: i64 = zone.get(4..6)?.parse().ok()?;
    let base = humantime::parse_rfc3339_weak(head).ok()?;
    let ms = base.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(ms - sign * (hh * 60 + mm) * 60_000)
}

/// `ms` as Zoho writes a time in India's zone (+05:30), as an org there would.
fn ist(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis((ms + 19_800_000) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{}+05:30", s.trim_end_matches('Z'))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn answer(
    org: &mut Org,
    base: &str,
    line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Answer {
    let (method, path, _) = request_parts(line);
    if method == "POST" && path == "/oauth/v2/token" {
        let f = form(body);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let answer = if get("client_id") != Some(org.client_id.as_str())
            || get("client_secret") != Some(org.client_secret.as_str())
        {
            serde_json::json!({"error": "invalid_client"})
        } else if get("grant_type") != Some("refresh_token")
            || get("refresh_token") != Some(org.refresh_token.as_str())
        {
            serde_json::json!({"error": "invalid_code"})
        } else {
            let token = format!("1000.zoho-access-{}", org.tokens.len() + 1);
            org.tokens.push(token.clone());
            serde_json::json!({"access_token": token, "api_domain": base, "token_type": "Bearer", "expires_in": 3600})
        };
        return (200, "application/json", answer.to_string());
    }
    let token = header(headers, "authorization").and_then(|v| v.strip_prefix("Zoho-oauthtoken "));
    if !token.is_some_and(|t| org.tokens.iter().any(|x| x == t)) {
        return error(401, "INVALID_TOKEN", "invalid oauth token");
    }
    if method == "POST" && path == "/crm/v8/settings/audit_log_export" {
        if !org.schedule_faults.is_empty() {
            let status = org.schedule_faults.remove(0);
            return match status {
                429 => error(429, "TOO_MANY_REQUESTS", "too many requests"),
                s => error(s, "INTERNAL_ERROR", "Internal Server Error"),
            };
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let c = v.pointer("/audit_log_export/0/criteria");
        let range = c.and_then(|c| {
            (c.pointer("/field/api_name")?.as_str()? == "performed_at"
                && c.get("comparator")?.as_str()? == "between")
                .then_some(())?;
            let values = c.get("value")?.as_array()?;
            Some((
                ms_of(values.first()?.as_str()?)?,
                ms_of(values.get(1)?.as_str()?)?,
            ))
        });
        let Some((from_ms, to_ms)) = range else {
            return error(400, "INVALID_DATA", "invalid data in criteria");
        };
        let id = format!("5725767000{:06}", org.jobs.len() + 1);
        org.jobs.push(Job {
            id: id.clone(),
            from_ms,
            to_ms,
            looks: 0,
        });
        return (201, "application/json", serde_json::json!({"audit_log_export": [{"status": "success", "code": "SCHEDULED", "message": "Audit log export scheduled successfully", "details": {"id": id}}]}).to_string());
    }
    if let Some(id) = path.strip_prefix("/crm/v8/settings/audit_log_export/") {
        let Some(job) = org.jobs.iter_mut().find(|j| j.id == id) else {
            return error(400, "NO_CONTENT", "No audit log has been scheduled");
        };
        job.looks += 1;
        // Scheduled, then in progress, then finished: the connector must wait for it.
        let status = ["Scheduled", "Progress"]
            .get(job.looks as usize - 1)
            .copied()
            .unwrap_or("Finished");
        let mut entry = serde_json::json!({"id": job.id, "status": status, "job_start_time": ist(job.to_ms), "created_by": {"id": "5725767000000411001", "name": "Holdfast"}});
        if status == "Finished" {
            entry["download_links"] = serde_json::json!([format!(
                "{base}/v2/crm/60012345/auditlog/{}/AuditLog.csv",
                job.id
            )]);
            entry["job_end_time"] = ist(job.to_ms).into();
        }
        return (
            200,
            "application/json",
            serde_json::json!({"audit_log_export": [entry]}).to_string(),
        );
    }
    let job = path
        .strip_prefix("/v2/crm/60012345/auditlog/")
        .and_then(|r| r.strip_suffix("/AuditLog.csv"))
        .and_then(|id| org.jobs.iter().find(|j| j.id == id && j.looks >= 3));
    let Some(job) = job else {
        return error(404, "NOT_FOUND", "the requested resource is not found");
    };
    let mut csv = String::from("Time,Done By,Action,Module,Record Name,Description,Source\r\n");
    for e in org
        .entries
        .iter()
        .filter(|e| e.time_ms >= job.from_ms && e.time_ms <= job.to_ms)
    {
        let fields = [
            ist(e.time_ms),
            e.done_by.clone(),
            e.action.clone(),
            e.module.clone(),
            e.record.clone(),
            e.description.clone(),
            "Web".into(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&row.join(","));
        csv.push_str("\r\n");
    }
    (200, "text/csv", csv)
}

impl ZohoApi {
    pub fn start(org: Org) -> ZohoApi {
        let org = Arc::new(Mutex::new(org));
        let served = org.clone();
        let hook_base = Arc::new(Mutex::new(String::new()));
        let b = hook_base.clone();
        let hook = Hook::serve(move |line, headers, body| {
            let base = b.lock().unwrap().clone();
            answer(&mut served.lock().unwrap(), &base, line, headers, body)
        });
        let base = format!("http://127.0.0.1:{}", hook.port);
        *hook_base.lock().unwrap() = base.clone();
        ZohoApi { base, org, hook }
    }
}
