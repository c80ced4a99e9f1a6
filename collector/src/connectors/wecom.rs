//! The 企业微信 (WeCom) connector: at an offboarding it hands the leaver's external contacts
//! (customers) and customer groups to the successor through WeCom's 离职继承 API, and follows
//! the transfer results. The endpoints, as documented on developer.work.weixin.qq.com:
//! `gettoken` (document/path/91039), `externalcontact/get_unassigned_list` (92124),
//! `externalcontact/resigned/transfer_customer` (94081), `externalcontact/resigned/
//! transfer_result` (94082), `externalcontact/groupchat/list` (92120) and
//! `externalcontact/groupchat/transfer` (92127). Every answer carries `errcode`/`errmsg`; a
//! failed step is a failed attempt naming the step and the code, and the run is retried (a
//! customer already handed over is no longer waiting, so a retry repeats nothing).

use super::{answer_of, http, keep, Attempt, Secret, USER_AGENT};
use std::time::Duration;

/// Bytes of one answer read, at most.
const MAX_ANSWER: u64 = 4 << 20;
/// Customers or groups per transfer call, the API's limit.
const BATCH: usize = 100;
/// Pages read of one listing, at most (100 a page).
const MAX_PAGES: usize = 1_000;
/// WeCom's answer when calls come too fast (接口调用超过限制).
const RATE_LIMITED: i64 = 45009;

/// A validated WeCom connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeCom {
    /// `https://qyapi.weixin.qq.com`, without a trailing `/`.
    pub api: String,
    pub corpid: String,
    /// The customer-contact (客户联系) secret, from `secret_file`.
    pub secret: Secret,
    /// The member's WeCom userid, `{user}` standing for the Holdfast user.
    pub login: String,
}

/// One customer handed over and where its transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    pub external_userid: String,
    pub state: Transfer,
}

/// Where a customer's transfer stands (`transfer_result`'s `status`, or the transfer call's
/// own refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// 1: 接替完毕.
    Done,
    /// 2: 等待接替 (the customer has 24 hours to object).
    Waiting,
    /// 3: 客户拒绝.
    Refused,
    /// 4: the successor has reached their customer limit.
    SuccessorFull,
    /// The transfer call refused this customer (its `errcode`).
    NotStarted(i64),
}

impl Transfer {
    /// As the handover list shows it.
    pub fn label(self) -> String {
        match self {
            Transfer::Done => "done".into(),
            Transfer::Waiting => "waiting".into(),
            Transfer::Refused => "refused".into(),
            Transfer::SuccessorFull => "successor_full".into(),
            Transfer::NotStarted(code) => format!("refused by WeCom (errcode {code})"),
        }
    }

    fn of_status(status: i64) -> Transfer {
        match status {
            1 => Transfer::Done,
            3 => Transfer::Refused,
            4 => Transfer::SuccessorFull,
            _ => Transfer::Waiting,
        }
    }
}

/// The body of an answer whose `errcode` is 0; else what went wrong, naming `step`.
pub fn checked(step: &str, answer: &[u8]) -> Result<serde_json::Value, (Option<i64>, String)> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|e| {
        (
            None,
            format!("{step}: the answer is not JSON ({e}): {}", keep(answer)),
        )
    })?;
    match v.get("errcode").and_then(|c| c.as_i64()) {
        Some(0) => Ok(v),
        Some(code) => {
            let msg = v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("");
            let hint = match code {
                RATE_LIMITED => " (rate limited: retried with backoff)",
                40001 | 40013 | 40014 | 42001 => " (check corpid and secret_file)",
                _ => "",
            };
            Err((Some(code), format!("{step}: errcode {code}: {msg}{hint}")))
        }
        None => Err((
            None,
            format!("{step}: the answer has no errcode: {}", keep(answer)),
        )),
    }
}

/// `key`'s entries of an answer, each read by `f` (those it cannot read left out).
fn entries<T>(
    v: &serde_json::Value,
    key: &str,
    f: impl Fn(&serde_json::Value) -> Option<T>,
) -> Vec<T> {
    v.get(key)
        .and_then(|l| l.as_array())
        .map(|l| l.iter().filter_map(f).collect())
        .unwrap_or_default()
}

/// The next page's cursor: `next_cursor` when more follow (WeCom ends with an empty one, or
/// `is_last`).
fn next_cursor(v: &serde_json::Value) -> Option<String> {
    if v.get("is_last").and_then(|l| l.as_bool()) == Some(true) {
        return None;
    }
    v.get("next_cursor")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// The leaver's customers on one page of `get_unassigned_list`, and the next cursor.
pub fn unassigned_page(v: &serde_json::Value, leaver: &str) -> (Vec<String>, Option<String>) {
    let ids = entries(v, "info", |c| {
        (c.get("handover_userid")?.as_str()? == leaver)
            .then(|| c.get("external_userid")?.as_str().map(str::to_string))?
    });
    (ids, next_cursor(v))
}

/// The group chats on one page of `groupchat/list`, and the next cursor.
pub fn groups_page(v: &serde_json::Value) -> (Vec<String>, Option<String>) {
    let ids = entries(v, "group_chat_list", |g| {
        g.get("chat_id")?.as_str().map(str::to_string)
    });
    (ids, next_cursor(v))
}

/// The customers a `transfer_customer` answer refused, with their codes.
pub fn refused_customers(v: &serde_json::Value) -> Vec<(String, i64)> {
    entries(v, "customer", |c| {
        let id = c.get("external_userid")?.as_str()?;
        let code = c.get("errcode")?.as_i64()?;
        (code != 0).then(|| (id.to_string(), code))
    })
}

/// Each customer's `status` on one page of `transfer_result`, and the next cursor.
pub fn results_page(v: &serde_json::Value) -> (Vec<(String, Transfer)>, Option<String>) {
    let states = entries(v, "customer", |c| {
        let id = c.get("external_userid")?.as_str()?;
        let status = c.get("status")?.as_i64()?;
        Some((id.to_string(), Transfer::of_status(status)))
    });
    (states, next_cursor(v))
}

/// What a run did, in words, for the attempt's receipt.
pub fn summary(leaver: &str, successor: &str, handed: &[HandedOver], groups: usize) -> String {
    let count = |f: fn(&Transfer) -> bool| handed.iter().filter(|h| f(&h.state)).count();
    format!(
        "{} customer(s) of {leaver} handed to {successor}: {} taken over, {} waiting (24 h to object), {} refused by the customer, {} over the successor's limit, {} refused by WeCom; {groups} customer group(s) transferred",
        handed.len(),
        count(|s| *s == Transfer::Done),
        count(|s| *s == Transfer::Waiting),
        count(|s| *s == Transfer::Refused),
        count(|s| *s == Transfer::SuccessorFull),
        count(|s| matches!(s, Transfer::NotStarted(_))),
    )
}

/// A failed step.
type Failed = (Option<i64>, String);

/// The WeCom API client of one run: its access token, taken once.
struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

fn read(
    step: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<serde_json::Value, Failed> {
    let (_, body) = answer_of(step, result, MAX_ANSWER, |status, body| {
        format!("{step}: HTTP {status}: {}", keep(body))
    })?;
    checked(step, &body)
}

impl Api {
    fn open(w: &WeCom, timeout: Duration) -> Result<Api, Failed> {
        let agent = http(timeout);
        let v = read(
            "gettoken",
            agent
                .get(format!("{}/cgi-bin/gettoken", w.api))
                .query("corpid", &w.corpid)
                .query("corpsecret", w.secret.expose())
                .header("User-Agent", USER_AGENT)
                .call(),
        )?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or((None, "gettoken: no access_token in the answer".to_string()))?
            .to_string();
        Ok(Api {
            agent,
            base: w.api.clone(),
            token,
        })
    }

    fn post(
        &self,
        step: &str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, Failed> {
        read(
            step,
            self.agent
                .post(format!("{}/cgi-bin/externalcontact/{path}", self.base))
                .query("access_token", &self.token)
                .header("Content-Type", "application/json")
                .header("User-Agent", USER_AGENT)
                .send(body.to_string().as_bytes()),
        )
    }

    /// Every page of a listing, `page` reading one; the request body gets the cursor.
    fn pages<T>(
        &self,
        step: &str,
        path: &str,
        body: impl Fn(&str) -> serde_json::Value,
        page: impl Fn(&serde_json::Value) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, Failed> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let (items, next) = page(&self.post(step, path, body(&cursor))?);
            all.extend(items);
            match next {
                Some(n) if n != cursor => cursor = n,
                _ => return Ok(all),
            }
        }
        Err((None, format!("{step}: more than {MAX_PAGES} pages")))
    }
}

/// Hands `user`'s customers and groups to `successor` (blocking). A restore changes nothing
/// here: the customers stay with whoever took them over.
pub fn run(
    w: &WeCom,
    user: &str,
    event: &str,
    successor: Option<&str>,
    timeout: Duration,
) -> (Attempt, Vec<HandedOver>) {
    if event == "restore" {
        let a = Attempt {
            ok: true,
            code: None,
            detail: "restore: customers handed over stay with the successor".into(),
        };
        return (a, Vec::new());
    }
    let Some(successor) = successor else {
        let a = Attempt {
            ok: false,
            code: None,
            detail: "no successor to hand the customers to: offboard USER --successor USER2".into(),
        };
        return (a, Vec::new());
    };
    if user.chars().chain(successor.chars()).any(char::is_control) {
        let a = Attempt {
            ok: false,
            code: None,
            detail: "a user name holds a control character".into(),
        };
        return (a, Vec::new());
    }
    let leaver = w.login.replace("{user}", user);
    let takeover = w.login.replace("{user}", successor);
    match hand_over(w, &leaver, &takeover, timeout) {
        Ok((handed, groups)) => {
            let refused = handed
                .iter()
                .any(|h| matches!(h.state, Transfer::NotStarted(_)));
            let a = Attempt {
                ok: !refused,
                code: Some(0),
                detail: summary(&leaver, &takeover, &handed, groups),
            };
            (a, handed)
        }
        Err((code, detail)) => (
            Attempt {
                ok: false,
                code,
                detail,
            },
            Vec::new(),
        ),
    }
}

fn hand_over(
    w: &WeCom,
    leaver: &str,
    takeover: &str,
    timeout: Duration,
) -> Result<(Vec<HandedOver>, usize), Failed> {
    let api = Api::open(w, timeout)?;
    let waiting = api.pages(
        "get_unassigned_list",
        "get_unassigned_list",
        |cursor| serde_json::json!({"cursor": cursor, "page_size": 100}),
        |v| unassigned_page(v, leaver),
    )?;
    let mut refused: Vec<(String, i64)> = Vec::new();
    for batch in waiting.chunks(BATCH) {
        let v = api.post(
            "resigned/transfer_customer",
            "resigned/transfer_customer",
            serde_json::json!({
                "handover_userid": leaver,
                "takeover_userid": takeover,
                "external_userid": batch,
            }),
        )?;
        refused.extend(refused_customers(&v));
    }
    let groups = api.pages(
        "groupchat/list",
        "groupchat/list",
        |cursor| {
            serde_json::json!({
                "status_filter": 1,
                "owner_filter": {"userid_list": [leaver]},
                "cursor": cursor,
                "limit": 100,
            })
        },
        groups_page,
    )?;
    let mut moved = 0usize;
    for batch in groups.chunks(BATCH) {
        let v = api.post(
            "groupchat/transfer",
            "groupchat/transfer",
            serde_json::json!({"chat_id_list": batch, "new_owner": takeover}),
        )?;
        let failed = v
            .get("failed_chat_list")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len);
        moved += batch.len().saturating_sub(failed);
    }
    // Where every customer handed to the successor stands, this run's and earlier runs'.
    let results = api.pages(
        "resigned/transfer_result",
        "resigned/transfer_result",
        |cursor| {
            serde_json::json!({
                "handover_userid": leaver,
                "takeover_userid": takeover,
                "cursor": cursor,
            })
        },
        results_page,
    )?;
    if waiting.is_empty() && groups.is_empty() && results.is_empty() {
        return Err((
            None,
            format!("no customers or groups of {leaver} wait for a successor: WeCom lists them once the member has left the directory (离职); retried until then"),
        ));
    }
    let mut handed: Vec<HandedOver> = results
        .into_iter()
        .map(|(external_userid, state)| HandedOver {
            external_userid,
            state,
        })
        .collect();
    for (id, code) in refused {
        match handed.iter_mut().find(|h| h.external_userid == id) {
            Some(h) => h.state = Transfer::NotStarted(code),
            None => handed.push(HandedOver {
                external_userid: id,
                state: Transfer::NotStarted(code),
            }),
        }
    }
    Ok((handed, moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_the_documentation_writes_them() {
        let ok = checked("x", br#"{"errcode":0,"errmsg":"ok","access_token":"t"}"#).unwrap();
        assert_eq!(ok["access_token"], "t");
        for (answer, says) in [
            (&br#"{"errcode":40001,"errmsg":"invalid credential"}"#[..], "gettoken: errcode 40001: invalid credential (check corpid and secret_file)"),
            (br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#, "gettoken: errcode 45009: api freq out of limit (rate limited: retried with backoff)"),
            (br#"{"access_token":"t"}"#, "gettoken: the answer has no errcode"),
            (b"<html>", "gettoken: the answer is not JSON"),
        ] {
            let (_, e) = checked("gettoken", answer).unwrap_err();
            assert!(e.starts_with(says), "{e}");
        }
        let page: serde_json::Value = serde_json::from_str(
            r#"{"errcode":0,"errmsg":"ok","info":[
                {"handover_userid":"zhangsan","external_userid":"wmA","dimission_time":1550838571},
                {"handover_userid":"wangwu","external_userid":"wmB","dimission_time":1550838571},
                {"handover_userid":"zhangsan","external_userid":"wmC","dimission_time":1550838571}],
              "is_last":false,"next_cursor":"c2"}"#,
        )
        .unwrap();
        assert_eq!(
            unassigned_page(&page, "zhangsan"),
            (
                vec!["wmA".to_string(), "wmC".to_string()],
                Some("c2".to_string())
            )
        );
        let last: serde_json::Value =
            serde_json::from_str(r#"{"errcode":0,"info":[],"is_last":true,"next_cursor":"c3"}"#)
                .unwrap();
        assert_eq!(unassigned_page(&last, "zhangsan"), (vec![], None));
        let t: serde_json::Value = serde_json::from_str(
            r#"{"errcode":0,"errmsg":"ok","customer":[{"external_userid":"wmA","errcode":0},{"external_userid":"wmC","errcode":40096}]}"#,
        )
        .unwrap();
        assert_eq!(refused_customers(&t), [("wmC".to_string(), 40096)]);
        let r: serde_json::Value = serde_json::from_str(
            r#"{"errcode":0,"customer":[{"external_userid":"wmA","status":1,"takeover_time":1588262400},{"external_userid":"wmD","status":2},{"external_userid":"wmE","status":3}],"next_cursor":""}"#,
        )
        .unwrap();
        assert_eq!(
            results_page(&r),
            (
                vec![
                    ("wmA".to_string(), Transfer::Done),
                    ("wmD".to_string(), Transfer::Waiting),
                    ("wmE".to_string(), Transfer::Refused)
                ],
                None
            )
        );
    }

    #[test]
    fn a_run_without_a_successor_or_on_restore_calls_nobody() {
        let w = WeCom {
            api: "http://127.0.0.1:9".into(),
            corpid: "ww1".into(),
            secret: Secret::new("s3cret-corp".into()),
            login: "{user}".into(),
        };
        assert!(!format!("{w:?}").contains("s3cret"));
        let call =
            |event, successor| run(&w, "zhangsan", event, successor, Duration::from_secs(1)).0;
        let a = call("offboard", None);
        assert!(!a.ok && a.detail.contains("--successor"), "{a:?}");
        let a = call("restore", Some("lisi"));
        assert!(a.ok, "{a:?}");
        let a = call("offboard", Some("lisi"));
        assert!(
            !a.ok
                && a.detail.starts_with("gettoken: request failed")
                && !a.detail.contains("s3cret"),
            "{a:?}"
        );
    }
}
