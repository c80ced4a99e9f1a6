//! A stand-in for DingTalk's (钉钉) open API, which cannot run here, for the `dingtalk`
//! connector's scenario. Built from open.dingtalk.com's documentation:
//! - `POST /v1.0/oauth2/accessToken` with JSON `{"appKey","appSecret"}` (获取企业内部应用的
//!   accessToken): `{"accessToken","expireIn":7200}`; a wrong pair is HTTP 400
//!   `{"requestid","code":"invalidClientIdOrSecret","message":"无效的clientId或者clientSecret"}`;
//! - every other call carries `x-acs-dingtalk-access-token`, else HTTP 401
//!   `{"code":"InvalidAuthentication","message":"不合法的access_token"}`;
//! - 企业帐号 (通讯录): `GET /v1.0/contact/orgAccounts/status?userId=` → `{"disable": bool}`;
//!   `POST /v1.0/contact/orgAccounts/disable` `{"userId","reason"}`, `…/signOut`
//!   `{"userId","reason"}` and `…/enable` `{"userId"}` → `{"result": true}`; an unknown userId
//!   is HTTP 400 `{"code":"invalidParameter.userId.notFound",…}`;
//! - limits: HTTP 403 `Forbidden.AccessDenied.QpsLimitForApi` when calls come too fast, and
//!   HTTP 500 `{"code":"ServiceUnavailable",…}` for a failure on DingTalk's side.

use crate::hook::{header, request_parts, Answer, Hook};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One enterprise account.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub disabled: bool,
    /// Times it was signed out.
    pub sign_outs: u32,
    /// The reason the last disable gave.
    pub reason: Option<String>,
}

/// The organisation the stand-in serves.
#[derive(Debug, Default)]
pub struct Org {
    pub app_key: String,
    pub app_secret: String,
    /// userId → account.
    pub accounts: BTreeMap<String, Account>,
    /// Statuses the next disable / signOut / enable calls get instead of being done.
    pub faults: Vec<u16>,
    pub tokens: Vec<String>,
}

/// The stand-in server and the organisation behind it.
pub struct DingTalkApi {
    pub base: String,
    pub org: Arc<Mutex<Org>>,
    pub hook: Hook,
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        "application/json",
        serde_json::json!({"requestid": "6A9B1C2D-3E4F", "code": code, "message": message})
            .to_string(),
    )
}

fn fault(status: u16) -> Answer {
    match status {
        403 => error(
            403,
            "Forbidden.AccessDenied.QpsLimitForApi",
            "调用该接口触发限流",
        ),
        s => error(s, "ServiceUnavailable", "服务暂不可用"),
    }
}

fn answer(org: &mut Org, line: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let (method, path, query) = request_parts(line);
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if method == "POST" && path == "/v1.0/oauth2/accessToken" {
        if text("appKey").as_deref() != Some(org.app_key.as_str())
            || text("appSecret").as_deref() != Some(org.app_secret.as_str())
        {
            return error(
                400,
                "invalidClientIdOrSecret",
                "无效的clientId或者clientSecret",
            );
        }
        let token = format!("dt-token-{}", org.tokens.len() + 1);
        org.tokens.push(token.clone());
        return (
            200,
            "application/json",
            serde_json::json!({"accessToken": token, "expireIn": 7200}).to_string(),
        );
    }
    let token = header(headers, "x-acs-dingtalk-access-token");
    if !token.is_some_and(|t| org.tokens.iter().any(|x| x == t)) {
        return error(401, "InvalidAuthentication", "不合法的access_token");
    }
    let user_id = match method {
        "GET" => query
            .iter()
            .find(|(k, _)| k == "userId")
            .map(|(_, v)| v.clone()),
        _ => text("userId"),
    };
    let Some(account) = user_id.and_then(|u| org.accounts.get_mut(&u)) else {
        return error(400, "invalidParameter.userId.notFound", "用户不存在");
    };
    let verb = path.strip_prefix("/v1.0/contact/orgAccounts/");
    let done = (200, "application/json", r#"{"result":true}"#.to_string());
    match (method, verb) {
        ("GET", Some("status")) => (
            200,
            "application/json",
            serde_json::json!({"disable": account.disabled}).to_string(),
        ),
        ("POST", Some(v @ ("disable" | "signOut" | "enable"))) => {
            if !org.faults.is_empty() {
                return fault(org.faults.remove(0));
            }
            let Some(account) = text("userId").and_then(|u| org.accounts.get_mut(&u)) else {
                return error(400, "invalidParameter.userId.notFound", "用户不存在");
            };
            match v {
                "disable" => {
                    account.disabled = true;
                    account.reason = text("reason");
                }
                "signOut" => account.sign_outs += 1,
                _ => account.disabled = false,
            }
            done
        }
        _ => error(404, "InvalidAction.NotFound", "Specified api is not found"),
    }
}

impl DingTalkApi {
    pub fn start(org: Org) -> DingTalkApi {
        let org = Arc::new(Mutex::new(org));
        let served = org.clone();
        let hook = Hook::serve(move |line, headers, body| {
            answer(&mut served.lock().unwrap(), line, headers, body)
        });
        DingTalkApi {
            base: format!("http://127.0.0.1:{}", hook.port),
            org,
            hook,
        }
    }

    /// The account of `user_id`.
    pub fn account(&self, user_id: &str) -> Account {
        self.org.lock().unwrap().accounts[user_id].clone()
    }
}
