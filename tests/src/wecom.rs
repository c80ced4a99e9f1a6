//! A stand-in for 企业微信's server API (qyapi.weixin.qq.com), which cannot run here, for the
//! `wecom` connector's scenario. Built from the documentation on developer.work.weixin.qq.com:
//! - `GET /cgi-bin/gettoken?corpid=&corpsecret=` (document/path/91039): an `access_token`, or
//!   `40013 invalid corpid` / `40001 invalid credential`;
//! - every other call takes `?access_token=`; an unknown one is `40014 invalid access_token`;
//! - `POST externalcontact/get_unassigned_list` (92124): the resigned members' customers
//!   waiting for a successor, `info[]` of `handover_userid`/`external_userid`/`dimission_time`,
//!   paged by `cursor` and `page_size` (at most 1000) with `next_cursor` and `is_last`;
//! - `POST externalcontact/resigned/transfer_customer` (94081, 96331): at most 100
//!   `external_userid`s a call; each answered with its own `errcode` (`40096` for one that is
//!   not the handover member's); an unknown `takeover_userid` is `60111 userid not found`;
//! - `POST externalcontact/resigned/transfer_result` (94082): each transferred customer's
//!   `status` (1 taken over, 2 waiting, 3 refused by the customer), paged by `cursor`;
//! - `POST externalcontact/groupchat/list` (92120) with `owner_filter.userid_list` and
//!   `status_filter` (1: the resigned owner's groups waiting for a new owner), paged;
//! - `POST externalcontact/groupchat/transfer` (92127): at most 100 `chat_id_list` to
//!   `new_owner`, `failed_chat_list` for the ones it could not move;
//! - a call made too fast is `45009 api freq out of limit`; errors come in an HTTP 200 with
//!   `errcode`/`errmsg`, as WeCom answers them.
//!
//! The 24 hours a customer has to object are not waited: a transfer is taken over at once,
//! or refused by the customers the test names.

use crate::hook::Hook;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The corp the stand-in serves.
#[derive(Debug, Default)]
pub struct Corp {
    pub corpid: String,
    pub secret: String,
    /// Current members (a takeover must be one).
    pub members: Vec<String>,
    /// Customers waiting for a successor: (resigned member, external_userid).
    pub unassigned: Vec<(String, String)>,
    /// Customers that will refuse the new contact.
    pub refusing: Vec<String>,
    /// Transfers made: external_userid → (handover, takeover).
    pub transferred: BTreeMap<String, (String, String)>,
    /// Group chats: chat_id → (owner, waiting for a new owner).
    pub groups: BTreeMap<String, (String, bool)>,
    /// The next this many `transfer_customer` calls are refused with 45009.
    pub rate_limit_transfers: u32,
    /// The access tokens issued.
    pub tokens: Vec<String>,
}

/// The stand-in server and the corp behind it.
pub struct WeComApi {
    pub base: String,
    pub corp: Arc<Mutex<Corp>>,
    pub hook: Hook,
}

fn err(code: i64, msg: &str) -> serde_json::Value {
    serde_json::json!({"errcode": code, "errmsg": msg})
}

fn query<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let target = line.split(' ').nth(1)?;
    let (_, q) = target.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The strings of a JSON list (none when it is no list).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A page of `items` from `cursor` (an offset, as the stand-in writes cursors).
fn page<T: Clone>(items: &[T], cursor: &str, size: usize) -> (Vec<T>, String) {
    let from: usize = cursor.parse().unwrap_or(0).min(items.len());
    let to = (from + size).min(items.len());
    let next = if to < items.len() {
        to.to_string()
    } else {
        String::new()
    };
    (items[from..to].to_vec(), next)
}

fn answer(corp: &mut Corp, line: &str, body: &[u8]) -> serde_json::Value {
    let path = line
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("");
    if path == "/cgi-bin/gettoken" {
        if query(line, "corpid") != Some(corp.corpid.as_str()) {
            return err(40013, "invalid corpid");
        }
        if query(line, "corpsecret") != Some(corp.secret.as_str()) {
            return err(40001, "invalid credential");
        }
        let token = format!("tok{}", corp.tokens.len() + 1);
        corp.tokens.push(token.clone());
        return serde_json::json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200});
    }
    let Some(token) = query(line, "access_token") else {
        return err(41001, "access_token missing");
    };
    if !corp.tokens.iter().any(|t| t == token) {
        return err(40014, "invalid access_token");
    }
    let Ok(b) = serde_json::from_slice::<serde_json::Value>(body) else {
        return err(47001, "data format error");
    };
    let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
    match path.strip_prefix("/cgi-bin/externalcontact/") {
        Some("get_unassigned_list") => {
            let size = b["page_size"].as_u64().unwrap_or(1000).clamp(1, 1000) as usize;
            let (items, next) = page(&corp.unassigned, &s("cursor"), size);
            let info: Vec<serde_json::Value> = items
                .iter()
                .map(|(h, e)| serde_json::json!({"handover_userid": h, "external_userid": e, "dimission_time": 1_764_000_000}))
                .collect();
            serde_json::json!({"errcode": 0, "errmsg": "ok", "info": info, "is_last": next.is_empty(), "next_cursor": next})
        }
        Some("resigned/transfer_customer") => {
            if corp.rate_limit_transfers > 0 {
                corp.rate_limit_transfers -= 1;
                return err(45009, "api freq out of limit");
            }
            let (handover, takeover) = (s("handover_userid"), s("takeover_userid"));
            if !corp.members.contains(&takeover) {
                return err(60111, "userid not found");
            }
            let ids = strings(&b["external_userid"]);
            if ids.is_empty() || ids.len() > 100 {
                return err(40058, "external_userid: 1 to 100 ids");
            }
            let mut customer = Vec::new();
            for id in ids {
                let waiting = corp
                    .unassigned
                    .iter()
                    .position(|(h, e)| *h == handover && *e == id);
                let code = match waiting {
                    Some(i) => {
                        corp.unassigned.remove(i);
                        corp.transferred
                            .insert(id.clone(), (handover.clone(), takeover.clone()));
                        0
                    }
                    None => 40096,
                };
                customer.push(serde_json::json!({"external_userid": id, "errcode": code}));
            }
            serde_json::json!({"errcode": 0, "errmsg": "ok", "customer": customer})
        }
        Some("resigned/transfer_result") => {
            let (handover, takeover) = (s("handover_userid"), s("takeover_userid"));
            let mine: Vec<String> = corp
                .transferred
                .iter()
                .filter(|(_, (h, t))| *h == handover && *t == takeover)
                .map(|(e, _)| e.clone())
                .collect();
            let (items, next) = page(&mine, &s("cursor"), 100);
            let customer: Vec<serde_json::Value> = items
                .iter()
                .map(|e| {
                    let status = if corp.refusing.contains(e) { 3 } else { 1 };
                    serde_json::json!({"external_userid": e, "status": status, "takeover_time": 1_764_086_400})
                })
                .collect();
            serde_json::json!({"errcode": 0, "errmsg": "ok", "customer": customer, "next_cursor": next})
        }
        Some("groupchat/list") => {
            let owners = strings(&b["owner_filter"]["userid_list"]);
            let waiting_only = b["status_filter"].as_i64() == Some(1);
            let ids: Vec<String> = corp
                .groups
                .iter()
                .filter(|(_, (o, w))| owners.contains(o) && (*w || !waiting_only))
                .map(|(id, _)| id.clone())
                .collect();
            let limit = b["limit"].as_u64().unwrap_or(100).clamp(1, 1000) as usize;
            let (items, next) = page(&ids, &s("cursor"), limit);
            let list: Vec<serde_json::Value> = items
                .iter()
                .map(|id| serde_json::json!({"chat_id": id, "status": 1}))
                .collect();
            serde_json::json!({"errcode": 0, "errmsg": "ok", "group_chat_list": list, "next_cursor": next})
        }
        Some("groupchat/transfer") => {
            let owner = s("new_owner");
            let mut failed = Vec::new();
            for id in b["chat_id_list"].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap_or("").to_string();
                match corp.groups.get_mut(&id) {
                    Some(g) if g.1 => *g = (owner.clone(), false),
                    _ => failed.push(serde_json::json!({"chat_id": id, "errcode": 90500, "errmsg": "the group chat is not waiting for a new owner"})),
                }
            }
            serde_json::json!({"errcode": 0, "errmsg": "ok", "failed_chat_list": failed})
        }
        _ => err(60020, "not allow to access from your ip"),
    }
}

impl WeComApi {
    /// Serves `corp` on a free loopback port.
    pub fn start(corp: Corp) -> WeComApi {
        let corp = Arc::new(Mutex::new(corp));
        let c = corp.clone();
        let hook = Hook::serve(move |line, _, body| {
            let mut corp = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                200,
                "application/json",
                answer(&mut corp, line, body).to_string(),
            )
        });
        WeComApi {
            base: format!("http://127.0.0.1:{}", hook.port),
            corp,
            hook,
        }
    }

    /// The request lines received for `path` (without the query).
    pub fn calls(&self, path: &str) -> Vec<(String, serde_json::Value)> {
        self.hook
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(line, _, _)| {
                line.split(' ').nth(1).unwrap_or("").split('?').next() == Some(path)
            })
            .map(|(line, _, body)| {
                (
                    line.clone(),
                    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }
}
