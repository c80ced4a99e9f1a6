//! The 钉钉 (DingTalk) connector: at an offboarding it disables the leaver's enterprise
//! account (企业帐号) and signs it out everywhere, then reads its status back; a restore
//! re-enables it when `on_restore = "reactivate"`. The endpoints, as documented on
//! open.dingtalk.com (通讯录 → 企业帐号):
//! - `POST /v1.0/oauth2/accessToken` with `{"appKey","appSecret"}` (获取企业内部应用的
//!   accessToken): `{"accessToken","expireIn"}`;
//! - `x-acs-dingtalk-access-token: <token>` on every other call;
//! - `GET /v1.0/contact/orgAccounts/status?userId=` (查询企业帐号状态): `{"disable": bool}`;
//! - `POST /v1.0/contact/orgAccounts/disable` `{"userId","reason"}` (停用企业帐号),
//!   `…/signOut` (强制登出企业帐号) and `…/enable` `{"userId"}` (启用企业帐号): `{"result": true}`;
//! - errors as HTTP 4xx/5xx with `{"requestid","code","message"}` (`InvalidAuthentication`,
//!   `Forbidden.AccessDenied.QpsLimitForApi` when calls come too fast, `ServiceUnavailable`).

use super::scim::OnRestore;
use super::{
    answer_of, attempt_of, http, json_of, vendor_error, Attempt, Failed, Secret, USER_AGENT,
};
use std::time::Duration;

/// Bytes of one answer read, at most.
const MAX_ANSWER: u64 = 1 << 20;

/// A validated DingTalk connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DingTalk {
    /// `https://api.dingtalk.com`, without a trailing `/`.
    pub api: String,
    /// The internal app's AppKey (Client ID).
    pub app_key: String,
    /// Its AppSecret, from `secret_file`.
    pub secret: Secret,
    /// The member's DingTalk userId, `{user}` standing for the Holdfast user.
    pub login: String,
    pub on_restore: OnRestore,
}

/// What went wrong, from a DingTalk error body (`code`, `message`).
pub fn error_of(step: &str, status: u16, body: &[u8]) -> String {
    let hint = |status: u16, code: Option<&str>| {
        let lower = code.unwrap_or("").to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        if status == 429 || has(&["qpslimit", "throttl"]) {
            " (rate limited: retried with backoff)"
        } else if status == 401 || has(&["authentication", "secret", "clientid"]) {
            " (check client_id and secret_file)"
        } else if lower.contains("forbidden") {
            " (the app needs the 通讯录 企业帐号 permissions)"
        } else if status >= 500 {
            " (DingTalk failed: retried with backoff)"
        } else {
            ""
        }
    };
    vendor_error(step, status, body, &["code"], &["message"], hint)
}

fn read(
    step: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<serde_json::Value, Failed> {
    let (_, body) = answer_of(step, result, MAX_ANSWER, |status, body| {
        error_of(step, status, body)
    })?;
    json_of(step, &body)
}

/// The DingTalk API client of one call: its access token, taken once.
struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Api {
    fn open(d: &DingTalk, timeout: Duration) -> Result<Api, Failed> {
        let agent = http(timeout);
        let v = read(
            "accessToken",
            agent
                .post(format!("{}/v1.0/oauth2/accessToken", d.api))
                .header("Content-Type", "application/json")
                .header("User-Agent", USER_AGENT)
                .send(
                    serde_json::json!({"appKey": d.app_key, "appSecret": d.secret.expose()})
                        .to_string()
                        .as_bytes(),
                ),
        )?;
        let token = v
            .get("accessToken")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or((
                None,
                "accessToken: no accessToken in the answer".to_string(),
            ))?
            .to_string();
        Ok(Api {
            agent,
            base: d.api.clone(),
            token,
        })
    }

    /// Whether the account is disabled (`orgAccounts/status`).
    fn disabled(&self, step: &str, user_id: &str) -> Result<bool, Failed> {
        let v = read(
            step,
            self.agent
                .get(format!("{}/v1.0/contact/orgAccounts/status", self.base))
                .query("userId", user_id)
                .header("x-acs-dingtalk-access-token", &self.token)
                .header("User-Agent", USER_AGENT)
                .call(),
        )?;
        v.get("disable")
            .and_then(|d| d.as_bool())
            .ok_or((None, format!("{step}: no `disable` in the answer")))
    }

    /// One `orgAccounts/{verb}` call; the answer must say `result: true`.
    fn act(&self, verb: &str, body: serde_json::Value) -> Result<(), Failed> {
        let v = read(
            verb,
            self.agent
                .post(format!("{}/v1.0/contact/orgAccounts/{verb}", self.base))
                .header("x-acs-dingtalk-access-token", &self.token)
                .header("Content-Type", "application/json")
                .header("User-Agent", USER_AGENT)
                .send(body.to_string().as_bytes()),
        )?;
        match v.get("result").and_then(|r| r.as_bool()) {
            Some(true) => Ok(()),
            _ => Err((None, format!("{verb}: DingTalk answered {}", v))),
        }
    }
}

/// Disables `user`'s DingTalk account and signs it out (or, at a restore, re-enables it when
/// asked to), then reads its status back (blocking).
pub fn run(d: &DingTalk, user: &str, event: &str, timeout: Duration) -> Attempt {
    attempt_of(change(d, user, event, timeout), 200)
}

fn change(d: &DingTalk, user: &str, event: &str, timeout: Duration) -> Result<String, Failed> {
    if user.chars().any(char::is_control) {
        return Err((None, "the user name holds a control character".into()));
    }
    let restore = event == "restore";
    if restore && d.on_restore == OnRestore::Leave {
        return Ok("restore: the DingTalk account stays disabled (on_restore = \"leave\")".into());
    }
    let id = d.login.replace("{user}", user);
    let api = Api::open(d, timeout)?;
    let was = api.disabled("status", &id)?;
    if restore {
        if was {
            api.act("enable", serde_json::json!({"userId": id}))?;
        }
        return match api.disabled("read back", &id)? {
            false => Ok(format!(
                "DingTalk account {id} {} and read back enabled",
                if was { "enabled" } else { "was not disabled" }
            )),
            true => Err((None, format!("read back: {id} is still disabled"))),
        };
    }
    let reason = "Holdfast offboarding";
    if !was {
        api.act(
            "disable",
            serde_json::json!({"userId": id, "reason": reason}),
        )?;
    }
    // Sessions already open stay open after a disable: end them too (also on a retry).
    api.act(
        "signOut",
        serde_json::json!({"userId": id, "reason": reason}),
    )?;
    match api.disabled("read back", &id)? {
        true => Ok(format!(
            "DingTalk account {id} {}, signed out, and read back disabled",
            if was {
                "was already disabled"
            } else {
                "disabled"
            }
        )),
        false => Err((None, format!("read back: {id} is still enabled"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_dingtalk_writes_them() {
        for (status, body, want) in [
            (400, r#"{"requestid":"r1","code":"InvalidAuthentication","message":"不合法的appKey或appSecret"}"#, "accessToken: HTTP 400: InvalidAuthentication: 不合法的appKey或appSecret (check client_id and secret_file)"),
            (403, r#"{"requestid":"r2","code":"Forbidden.AccessDenied.QpsLimitForApi","message":"调用该接口触发限流"}"#, "accessToken: HTTP 403: Forbidden.AccessDenied.QpsLimitForApi: 调用该接口触发限流 (rate limited: retried with backoff)"),
            (403, r#"{"requestid":"r3","code":"Forbidden.AccessDenied.AccessTokenPermissionDenied","message":"没有调用该接口的权限"}"#, "accessToken: HTTP 403: Forbidden.AccessDenied.AccessTokenPermissionDenied: 没有调用该接口的权限 (the app needs the 通讯录 企业帐号 permissions)"),
            (400, r#"{"requestid":"r4","code":"invalidClientIdOrSecret","message":"无效的clientId或者clientSecret"}"#, "accessToken: HTTP 400: invalidClientIdOrSecret: 无效的clientId或者clientSecret (check client_id and secret_file)"),
            (503, "busy", "accessToken: HTTP 503: busy (DingTalk failed: retried with backoff)"),
        ] {
            assert_eq!(error_of("accessToken", status, body.as_bytes()), want);
        }
    }
}
