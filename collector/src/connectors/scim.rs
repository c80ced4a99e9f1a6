//! The SCIM 2.0 connector (RFC 7643, RFC 7644): at an offboarding it finds the leaver on the
//! identity provider by `userName` or email, sets `active` to false with a PATCH, and reads the
//! user back to check; at a restore it sets `active` to true again when the connector says so.
//! Requests and answers are made and read by pure functions; `run` is the one that calls.

use super::{http, keep, Attempt, Secret, USER_AGENT};
use std::io::Read;
use std::time::Duration;

/// Bytes of a SCIM answer read, at most (a user, or a list of one).
const MAX_ANSWER: u64 = 1 << 20;
/// The media type of SCIM requests and answers (RFC 7644 §3.1).
const SCIM_JSON: &str = "application/scim+json";

/// How the leaver is found on the SCIM server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    /// `userName eq "…"`.
    UserName,
    /// `emails.value eq "…"`.
    Email,
}

impl MatchBy {
    /// As written in `collector.toml`'s `match`.
    pub fn parse(s: &str) -> Option<MatchBy> {
        match s {
            "userName" => Some(MatchBy::UserName),
            "email" => Some(MatchBy::Email),
            _ => None,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            MatchBy::UserName => "userName",
            MatchBy::Email => "emails.value",
        }
    }
}

/// What a restore does to the user on the SCIM server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRestore {
    /// Nothing: IT re-enables the account by hand.
    Leave,
    /// `active` back to true.
    Reactivate,
}

/// The state a run brings the SCIM user to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Active,
    Inactive,
}

impl Wanted {
    fn active(self) -> bool {
        self == Wanted::Active
    }
}

/// A validated SCIM connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scim {
    /// The SCIM base URL without a trailing `/` (`https://idp.example/scim/v2`).
    pub url: String,
    /// The bearer token (from `token_file`).
    pub token: Secret,
    pub match_by: MatchBy,
    /// The leaver's name there, `{user}` standing for the Holdfast user (`{user}@acme.example`).
    pub login: String,
    pub on_restore: OnRestore,
}

/// The search filter that finds `login` (RFC 7644 §3.4.2.2). The value is a JSON string, so
/// a quote or a backslash in a user name cannot end it and add a clause.
pub fn filter(by: MatchBy, login: &str) -> String {
    let quoted = serde_json::Value::String(login.to_string()).to_string();
    format!("{} eq {quoted}", by.attribute())
}

/// A user the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub active: bool,
}

/// The one user of a search's `ListResponse`; `None` when it found nobody, an error when it
/// found several or the answer is no list.
pub fn found(answer: &[u8]) -> Result<Option<Found>, String> {
    let v: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| format!("the search answer is not JSON: {e}"))?;
    let resources = match v.get("Resources") {
        None if v.get("totalResults").and_then(|t| t.as_u64()) == Some(0) => return Ok(None),
        None => return Err("the search answer is no ListResponse (no `Resources`)".into()),
        Some(r) => r
            .as_array()
            .ok_or("the search answer's `Resources` is not a list")?,
    };
    match resources.as_slice() {
        [] => Ok(None),
        [user] => {
            let id = user
                .get("id")
                .and_then(|i| i.as_str())
                .filter(|i| !i.is_empty())
                .ok_or("the user found has no `id`")?;
            Ok(Some(Found {
                id: id.to_string(),
                active: active_in(user)?,
            }))
        }
        more => Err(format!(
            "{} users match: refusing to guess which one leaves",
            more.len()
        )),
    }
}

/// `active` of a User resource as the server returned it.
pub fn active_of(answer: &[u8]) -> Result<bool, String> {
    let v: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("the user answer is not JSON: {e}"))?;
    active_in(&v)
}

fn active_in(user: &serde_json::Value) -> Result<bool, String> {
    user.get("active")
        .and_then(|a| a.as_bool())
        .ok_or_else(|| "the server does not say whether the user is `active`".into())
}

/// The PATCH that sets `active` (RFC 7644 §3.5.2).
pub fn patch(wanted: Wanted) -> Vec<u8> {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": wanted.active()}],
    })
    .to_string()
    .into_bytes()
}

/// What an error answer says: the `detail` (and `scimType`) of a SCIM Error message
/// (RFC 7644 §3.12), else the start of the body.
pub fn error_detail(status: u16, answer: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let field = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(|d| d.as_str())
            .map(str::to_string)
    };
    match (field("detail"), field("scimType")) {
        (Some(d), Some(t)) => format!("HTTP {status}: {d} ({t})"),
        (Some(d), None) => format!("HTTP {status}: {d}"),
        _ => format!("HTTP {status}: {}", keep(answer)),
    }
}

/// The state a run for `event` (`offboard` or `restore`) brings the user to; `None` when a
/// restore leaves the account alone.
pub fn wanted(event: &str, on_restore: OnRestore) -> Option<Wanted> {
    match (event, on_restore) {
        ("restore", OnRestore::Leave) => None,
        ("restore", OnRestore::Reactivate) => Some(Wanted::Active),
        _ => Some(Wanted::Inactive),
    }
}

/// One exchange's 2xx answer: the status and the (capped) body; else the failed attempt,
/// naming the step and what the server said.
type Answer = Result<(u16, Vec<u8>), Attempt>;

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Answer {
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut body = Vec::new();
            if let Err(e) = resp
                .body_mut()
                .as_reader()
                .take(MAX_ANSWER)
                .read_to_end(&mut body)
            {
                return Err(failed(
                    Some(status),
                    format!("{what}: reading the answer: {e}"),
                ));
            }
            if !(200..300).contains(&status) {
                return Err(failed(
                    Some(status),
                    format!("{what}: {}", error_detail(status, &body)),
                ));
            }
            Ok((status, body))
        }
        Err(e) => Err(failed(None, format!("{what}: request failed: {e}"))),
    }
}

fn failed(code: Option<u16>, detail: String) -> Attempt {
    Attempt {
        ok: false,
        code: code.map(i64::from),
        detail,
    }
}

/// Brings `user`'s account to the state `event` asks for (blocking): search, PATCH unless it
/// is there already, read back.
pub fn run(s: &Scim, user: &str, event: &str, timeout: Duration) -> Attempt {
    match exchange(s, user, event, timeout) {
        Ok(done) | Err(done) => done,
    }
}

fn exchange(s: &Scim, user: &str, event: &str, timeout: Duration) -> Result<Attempt, Attempt> {
    let Some(wanted) = wanted(event, s.on_restore) else {
        return Ok(Attempt {
            ok: true,
            code: None,
            detail: "restore: the account is left as it is (on_restore = \"leave\")".into(),
        });
    };
    if user.chars().any(char::is_control) {
        return Err(failed(
            None,
            "the user name holds a control character".into(),
        ));
    }
    let login = s.login.replace("{user}", user);
    let agent = http(timeout);
    let bearer = format!("Bearer {}", s.token.expose());
    let scim = |r: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
        r.header("Authorization", &bearer)
            .header("Accept", SCIM_JSON)
            .header("User-Agent", USER_AGENT)
    };
    let (status, body) = answer(
        scim(agent.get(format!("{}/Users", s.url)))
            .query("filter", filter(s.match_by, &login))
            .call(),
        "search",
    )?;
    let Some(user) = found(&body).map_err(|e| failed(Some(status), e))? else {
        return Err(failed(
            Some(404),
            format!("no SCIM user with {}", filter(s.match_by, &login)),
        ));
    };
    let word = if wanted.active() {
        "active"
    } else {
        "inactive"
    };
    if user.active == wanted.active() {
        return Ok(Attempt {
            ok: true,
            code: Some(i64::from(status)),
            detail: format!("{login} (id {}) was already {word}", user.id),
        });
    }
    let at = format!("{}/Users/{}", s.url, user.id);
    let (status, _) = answer(
        agent
            .patch(&at)
            .header("Authorization", &bearer)
            .header("Content-Type", SCIM_JSON)
            .header("Accept", SCIM_JSON)
            .header("User-Agent", USER_AGENT)
            .send(&patch(wanted)[..]),
        "PATCH",
    )?;
    // Read back: a server may answer 204 without the resource, or accept and ignore.
    let (read, body) = answer(scim(agent.get(&at)).call(), "read back")?;
    let now = active_of(&body).map_err(|e| failed(Some(read), format!("read back: {e}")))?;
    if now != wanted.active() {
        return Err(failed(
            Some(read),
            format!("the PATCH was accepted ({status}) but {login} reads back active = {now}"),
        ));
    }
    Ok(Attempt {
        ok: true,
        code: Some(i64::from(status)),
        detail: format!("{login} (id {}) is now {word}; read back", user.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_holds_one_clause_whatever_the_name() {
        for (by, login, want) in [
            (
                MatchBy::UserName,
                "lea@acme.example",
                r#"userName eq "lea@acme.example""#,
            ),
            (
                MatchBy::Email,
                "lea@acme.example",
                r#"emails.value eq "lea@acme.example""#,
            ),
            // A quote cannot close the string and add `or userName pr`.
            (
                MatchBy::UserName,
                r#"x" or userName pr or userName eq "y"#,
                r#"userName eq "x\" or userName pr or userName eq \"y""#,
            ),
            (MatchBy::UserName, r"a\b", r#"userName eq "a\\b""#),
        ] {
            assert_eq!(filter(by, login), want);
        }
    }

    #[test]
    fn search_answers_give_one_user_or_say_why_not() {
        let list = |resources: &str| {
            format!(
                r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"Resources":{resources}}}"#
            )
        };
        assert_eq!(
            found(list(r#"[{"id":"u1","userName":"lea","active":true}]"#).as_bytes()),
            Ok(Some(Found {
                id: "u1".into(),
                active: true
            }))
        );
        assert_eq!(found(list("[]").as_bytes()), Ok(None));
        assert_eq!(found(br#"{"totalResults":0}"#), Ok(None));
        for (answer, says) in [
            (
                list(r#"[{"id":"a","active":true},{"id":"b","active":true}]"#),
                "2 users match",
            ),
            (list(r#"[{"userName":"lea","active":true}]"#), "no `id`"),
            (list(r#"[{"id":"u1"}]"#), "whether the user is `active`"),
            (r#"{"totalResults":3}"#.into(), "no ListResponse"),
            ("<html>".into(), "not JSON"),
        ] {
            let e = found(answer.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{answer}: {e}");
        }
    }

    #[test]
    fn patches_errors_and_restores_read_as_the_rfc_writes_them() {
        let p: serde_json::Value = serde_json::from_slice(&patch(Wanted::Inactive)).unwrap();
        assert_eq!(
            p,
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]
            })
        );
        assert_eq!(
            error_detail(
                400,
                br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidFilter","detail":"bad filter"}"#
            ),
            "HTTP 400: bad filter (invalidFilter)"
        );
        assert_eq!(
            error_detail(502, b" Bad Gateway \n"),
            "HTTP 502: Bad Gateway"
        );
        assert_eq!(active_of(br#"{"id":"u1","active":false}"#), Ok(false));
        assert_eq!(wanted("offboard", OnRestore::Leave), Some(Wanted::Inactive));
        assert_eq!(wanted("restore", OnRestore::Leave), None);
        assert_eq!(
            wanted("restore", OnRestore::Reactivate),
            Some(Wanted::Active)
        );
    }

    #[test]
    fn an_unreachable_server_is_a_failed_attempt_naming_the_step() {
        let s = Scim {
            url: "http://127.0.0.1:9".into(),
            token: Secret::new("s3cret-bearer".into()),
            match_by: MatchBy::UserName,
            login: "{user}".into(),
            on_restore: OnRestore::Leave,
        };
        let a = run(&s, "lea", "offboard", Duration::from_secs(2));
        assert!(
            !a.ok && a.detail.starts_with("search: request failed"),
            "{a:?}"
        );
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        let left = run(&s, "lea", "restore", Duration::from_secs(2));
        assert!(left.ok && left.detail.contains("left as it is"), "{left:?}");
    }
}
