//! The web console: server-rendered HTML pages over the same operations as the API, with
//! plain forms (each carrying the session's CSRF token) and one small script for keyboard
//! triage (j/k to move, x to select, t/r/f to triage, resolve or dismiss). Everything is
//! served from the binary: no CDN, no inline script.

use super::api::{self, AlertDetail, OffboardBody};
use super::auth::{Caller, COOKIE};
use super::html::{html, Html};
use super::params::Query;
use super::{ApiError, Http};
use crate::api_tokens::{digest, new_secret, Cap};
use crate::fmt_ms;
use crate::store::{Alert, AlertChange, AuditEntry, StoredEvent};
use crate::triage::settable;
use axum::extract::{ConnectInfo, Form, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;

type St = State<Arc<Http>>;
type Who = Result<Caller, ApiError>;
/// A page, or the page that says why not (the login page, an error page): both are answers.
type Page = Result<Response, Response>;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

pub fn routes() -> Router<Arc<Http>> {
    Router::new()
        .route("/", get(queue))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/alerts/bulk", post(bulk))
        .route("/alerts/{id}", get(alert_page).post(alert_post))
        .route("/users", get(users_page))
        .route("/users/{user}/offboard", post(offboard))
        .route("/devices", get(devices_page))
        .route("/audit", get(audit_page))
        .route(
            "/static/console.css",
            get(|| async { asset("text/css", CSS) }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript", JS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole page: layout, navigation, and the security headers every page carries.
fn page(title: &str, who: Option<&Caller>, body: Html) -> Response {
    let nav = match who {
        Some(c) => {
            let audit = if c.role.can(Cap::Audit) {
                html!(r#"<a href="/audit">Audit log</a>"#)
            } else {
                Html::default()
            };
            html!(
                r#"<nav aria-label="Main"><a href="/">Alerts</a><a href="/users">Users</a><a href="/devices">Devices</a>{audit}
<span class="who">{} ({})</span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form></nav>"#,
                c.name,
                c.role.as_str(),
                c.csrf.as_deref().unwrap_or(""),
                audit = audit,
            )
        }
        None => Html::default(),
    };
    let csrf = who.and_then(|c| c.csrf.as_deref()).unwrap_or("");
    let html = html!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{}">
<title>{} · Holdfast</title><link rel="stylesheet" href="/static/console.css"></head>
<body><header><span class="brand">Holdfast</span>{nav}</header>
<main id="main">{body}</main>
<script src="/static/console.js" defer></script></body></html>"#,
        csrf,
        title,
        nav = nav,
        body = body
    );
    let mut r = axum::response::Html(html.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error as a page (or, when not logged in, a trip to the login page).
fn fail(e: ApiError, who: Option<&Caller>) -> Response {
    if matches!(e, ApiError::Unauthorized) {
        return Redirect::to("/login").into_response();
    }
    let (status, _) = e.status_code();
    let mut r = page(
        "Error",
        who,
        html!(
            r#"<h1>Something is wrong</h1><p role="alert" class="error">{}</p><p><a href="/">Back to alerts</a></p>"#,
            e.to_string()
        ),
    );
    *r.status_mut() = status;
    r
}

fn sev(s: &str) -> Html {
    html!(r#"<span class="sev sev-{0}">{0}</span>"#, s)
}

fn file_name(p: &str) -> &str {
    p.rsplit(['/', '\\']).next().unwrap_or(p)
}

// ----- login -----

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// The login page; `create` is the pasteable command that makes a token for this collector.
fn login_form(create: &str, error: Option<&str>) -> Response {
    let err = error
        .map(|e| html!(r#"<p role="alert" class="error">{}</p>"#, e))
        .unwrap_or_default();
    page(
        "Log in",
        None,
        html!(
            r#"<h1>Log in</h1>{err}
<form method="post" action="/login" class="login">
<label for="token">API token or one-time login</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Log in</button></form>
<p class="hint">Create one on the collector's machine with <code>{create}</code>.</p>"#,
            err = err,
            create = create
        ),
    )
}

/// The command that makes an analyst token for the collector `st` runs.
fn create_token_command(st: &Http) -> String {
    st.config
        .command("api-token create --name NAME --role analyst")
}

async fn login_page(State(st): St) -> Response {
    login_form(&create_token_command(&st), None)
}

async fn login(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = peer.ip();
    if let Err(e) = st.login_allowed(ip) {
        let mut r = login_form(&create_token_command(&st), Some(&e.to_string()));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let secret = f.token.trim().to_string();
    let ttl = st.config.session_ttl;
    let result = st
        .db(move |s| {
            let now = crate::now_ms();
            let Some(token) = s.api_token_by_secret(&digest(&secret))? else {
                return Ok(None);
            };
            let id = new_secret("");
            let csrf = new_secret("");
            let who = crate::Actor {
                who: format!("api:{}", token.name),
                origin: format!("http {ip}"),
            };
            let detail = format!("console session, role {}", token.role);
            let audit = AuditEntry::by(&who, now, "login", &token.name, detail);
            let opened = s.open_session(
                &digest(&id),
                &token,
                &csrf,
                now,
                now + ttl.as_millis() as i64,
                &audit,
            )?;
            Ok(opened.then_some(id))
        })
        .await;
    match result {
        Ok(Some(id)) => {
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                ttl.as_secs()
            );
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            st.login_failed(ip, "console login with an unknown, revoked or spent token")
                .await;
            let mut r = login_form(
                &create_token_command(&st),
                Some(
                    "That token is not valid: unknown, revoked, or a one-time login already used.",
                ),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e) => fail(e, None),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(st): St, who: Who, Form(f): Form<CsrfForm>) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    c.check_csrf(&f.csrf).map_err(|e| fail(e, Some(&c)))?;
    if let Some(id) = c.session.clone() {
        st.db(move |s| Ok(s.end_session(&id)?))
            .await
            .map_err(|e| fail(e, Some(&c)))?;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hf_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}

// ----- alert queue -----

fn alert_row(a: &Alert, i: usize) -> Html {
    html!(
        r#"<tr data-id="{id}" data-index="{i}"><td><input type="checkbox" name="ids" value="{id}" form="bulk" aria-label="Select alert {id}"></td>
<td>{sev}</td><td><a href="/alerts/{id}">{file}</a><div class="sub">{rule}</div></td><td>{user}</td><td>{records}</td><td><span class="status status-{status}">{status}</span></td><td>{seen}</td></tr>"#,
        id = a.id,
        i = i,
        sev = sev(a.severity.as_str()),
        file = if a.path.is_empty() {
            &a.detail
        } else {
            file_name(&a.path)
        },
        rule = a.rule_id,
        user = a.user,
        records = a.records,
        status = a.status.as_str(),
        seen = fmt_ms(a.last_seen_ms),
    )
}

fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> Html {
    let options: Html = options
        .iter()
        .map(|(v, text)| {
            let sel = if *v == current {
                html!(" selected")
            } else {
                Html::default()
            };
            html!(r#"<option value="{}"{}>{}</option>"#, v, sel, text)
        })
        .collect();
    html!(
        r#"<label>{} <select name="{}">{}</select></label>"#,
        label,
        name,
        options
    )
}

async fn queue(State(st): St, who: Who, RawQuery(raw): RawQuery) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    // The queue opens on open alerts; `status=` (any) shows all.
    let raw = raw.unwrap_or_else(|| "status=new,triaged".into());
    let q = Query::parse(Some(&raw), api_alert_params(), crate::now_ms())
        .map_err(|e| fail(e, Some(&c)))?;
    let p = api::alert_page(&st, &q)
        .await
        .map_err(|e| fail(e, Some(&c)))?;
    let status = q.list("status").join(",");
    let mut body = html!(
        r#"<h1>Alerts <span class="count">{} matching</span></h1>
<form method="get" action="/" class="filters" role="search">{}{}<label>User <input name="user" value="{}"></label><label>Rule <input name="rule" value="{}"></label>{}<button type="submit">Filter</button></form>"#,
        p.total,
        select(
            "status",
            "Status",
            &status,
            &[
                ("new,triaged", "Open"),
                ("new", "New"),
                ("triaged", "Triaged"),
                ("resolved", "Resolved"),
                ("false_positive", "False positive"),
                ("merged", "Merged"),
                ("", "Any")
            ]
        ),
        select(
            "severity",
            "Severity",
            &q.list("severity").join(","),
            &[
                ("", "Any"),
                ("critical", "Critical"),
                ("critical,high", "High and up"),
                ("high", "High"),
                ("medium", "Medium"),
                ("low", "Low")
            ]
        ),
        q.text("user").unwrap_or_default(),
        q.text("rule").unwrap_or_default(),
        select(
            "sort",
            "Order",
            q.text("sort").as_deref().unwrap_or("severity"),
            &[
                ("severity", "Most severe first"),
                ("newest", "Newest first")
            ]
        ),
    );
    let back = format!("/?{raw}");
    body.push(html!(
        r#"<form method="post" action="/alerts/bulk" id="bulk" class="bulk"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="back" value="{}">
<span>Selected:</span><button type="submit" name="status" value="triaged">Triage (t)</button><button type="submit" name="status" value="resolved">Resolve (r)</button><button type="submit" name="status" value="false_positive">False positive (f)</button></form>
<p class="hint">Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>x</kbd> select, <kbd>o</kbd> open, <kbd>t</kbd> triage, <kbd>r</kbd> resolve, <kbd>f</kbd> false positive.</p>"#,
        c.csrf.as_deref().unwrap_or(""),
        back
    ));
    if p.alerts.is_empty() {
        body.push(html!(r#"<p class="empty">No alerts match.</p>"#));
    } else {
        body.push(html!(r#"<table class="queue" id="queue"><caption class="sr-only">Alerts</caption><thead><tr><th scope="col"><span class="sr-only">Select</span></th><th scope="col">Severity</th><th scope="col">File / rule</th><th scope="col">User</th><th scope="col">Records</th><th scope="col">Status</th><th scope="col">Last seen</th></tr></thead><tbody>"#));
        for (i, a) in p.alerts.iter().enumerate() {
            body.push(alert_row(a, i));
        }
        body.push(html!("</tbody></table>"));
    }
    if let Some(next) = &p.next_cursor {
        let mut params: Vec<String> = raw
            .split('&')
            .filter(|kv| !kv.starts_with("cursor="))
            .map(str::to_string)
            .collect();
        params.push(format!("cursor={}", enc(next)));
        body.push(html!(
            r#"<p><a href="/?{}" rel="next">Next page</a></p>"#,
            params.join("&")
        ));
    }
    Ok(page("Alerts", Some(&c), body))
}

fn api_alert_params() -> &'static [super::params::Param] {
    api::ENDPOINTS
        .iter()
        .find(|e| e.path == "/api/v1/alerts" && e.method == "get")
        .map(|e| e.params)
        .unwrap_or(&[])
}

#[derive(Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    status: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    ids: Vec<i64>,
}

/// Parses `a=1&ids=2&ids=3` forms (repeated keys) without a second form library.
fn bulk_form(body: &str) -> Result<BulkForm, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(body).map_err(|e| ApiError::BadRequest(format!("form: {e}")))?;
    let mut f = BulkForm {
        csrf: String::new(),
        status: String::new(),
        back: String::new(),
        ids: Vec::new(),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "csrf" => f.csrf = v,
            "status" => f.status = v,
            "back" => f.back = v,
            "ids" => f.ids.push(
                v.parse()
                    .map_err(|_| ApiError::BadRequest(format!("ids: `{v}` is not an alert id")))?,
            ),
            _ => {}
        }
    }
    Ok(f)
}

/// Only local paths are followed after a form (no open redirect).
fn local(back: &str, default: &str) -> String {
    if back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') {
        back.to_string()
    } else {
        default.to_string()
    }
}

async fn bulk(State(st): St, who: Who, body: String) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    let run = async {
        let f = bulk_form(&body)?;
        c.check_csrf(&f.csrf)?;
        c.require(Cap::Triage)?;
        if f.ids.is_empty() {
            return Ok(local(&f.back, "/"));
        }
        api::bulk(&st, &c, f.ids, f.status).await?;
        Ok::<_, ApiError>(local(&f.back, "/"))
    };
    let to = run.await.map_err(|e| fail(e, Some(&c)))?;
    Ok(Redirect::to(&to).into_response())
}

// ----- alert detail -----

fn event_rows(events: &[StoredEvent]) -> Html {
    let mut s = Html::default();
    for e in events {
        let what = match (&e.old_path, &e.path) {
            (Some(from), Some(to)) => html!("{} → {}", from, to),
            (None, Some(p)) => Html::text(p),
            _ => Html::text(&e.kind),
        };
        s.push(html!(
            r#"<li><time>{}</time> <strong>{}</strong> {} <span class="sub">{} records on {}{}</span></li>"#,
            fmt_ms(e.corrected_ms),
            e.action.as_deref().unwrap_or(&e.kind),
            what,
            e.records.unwrap_or(0),
            e.device_id,
            match &e.destination {
                Some(d) => html!(" · {}", d.way_out()),
                None => Html::default(),
            }
        ));
    }
    if s.is_empty() {
        s.push(html!("<li>None.</li>"));
    }
    s
}

fn detail_body(d: &AlertDetail, c: &Caller) -> Html {
    let a = &d.alert;
    let csrf = c.csrf.as_deref().unwrap_or("");
    let mut b = html!(
        r#"<p><a href="/">← Alerts</a></p><h1>{} {}</h1>
<dl class="facts"><dt>Status</dt><dd><span class="status status-{st}" id="status">{st}</span></dd>
<dt>File</dt><dd>{path}</dd><dt>SHA-256</dt><dd><code>{sha}</code></dd>
<dt>Customer records</dt><dd id="records">{records}</dd><dt>Real customers (exact match)</dt><dd>{customers}</dd>
<dt>User</dt><dd>{user}</dd><dt>Device</dt><dd>{device}</dd><dt>Rule</dt><dd>{rule}</dd>
<dt>Seen</dt><dd>{first} – {last} ({n} events)</dd><dt>Assignee</dt><dd>{assignee}</dd>{detail}</dl>"#,
        sev(a.severity.as_str()),
        if a.path.is_empty() {
            &a.rule_id
        } else {
            file_name(&a.path)
        },
        st = a.status.as_str(),
        path = a.path,
        sha = a.sha256.as_deref().unwrap_or("–"),
        records = a.records,
        customers = d
            .customers
            .map(|n| n.to_string())
            .unwrap_or_else(|| "–".into()),
        user = a.user,
        device = a.device_id,
        rule = a.rule_id,
        first = fmt_ms(a.first_seen_ms),
        last = fmt_ms(a.last_seen_ms),
        n = a.event_count,
        assignee = a.assignee.as_deref().unwrap_or("nobody"),
        detail = if a.detail.is_empty() {
            Html::default()
        } else {
            html!("<dt>Detail</dt><dd>{}</dd>", a.detail)
        },
    );
    if c.role.can(Cap::Triage) {
        b.push(html!(
            r#"<section aria-labelledby="triage-h"><h2 id="triage-h">Triage</h2>
<form method="post" action="/alerts/{id}" class="actions"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="status" value="triaged" id="btn-triaged">Triage</button>
<button type="submit" name="status" value="resolved" id="btn-resolved">Resolve</button>
<button type="submit" name="status" value="false_positive" id="btn-false_positive">False positive</button></form>
<form method="post" action="/alerts/{id}" class="assign"><input type="hidden" name="csrf" value="{csrf}">
<label for="assignee">Assignee</label><input id="assignee" name="assignee" value="{assignee}"><button type="submit">Assign</button></form>
<form method="post" action="/alerts/{id}" class="note"><input type="hidden" name="csrf" value="{csrf}">
<label for="note">Note</label><textarea id="note" name="note" rows="3" required maxlength="4096"></textarea><button type="submit" id="add-note">Add note</button></form></section>"#,
            id = a.id,
            csrf = csrf,
            assignee = a.assignee.as_deref().unwrap_or(""),
        ));
    }
    b.push(html!(
        r#"<section aria-labelledby="notes-h"><h2 id="notes-h">Notes</h2><ul class="notes" id="notes">"#
    ));
    for n in &d.notes {
        b.push(html!(
            r#"<li><time>{}</time> <strong>{}</strong>: {}</li>"#,
            fmt_ms(n.time_ms),
            n.author,
            n.text
        ));
    }
    if d.notes.is_empty() {
        b.push(html!("<li>No notes yet.</li>"));
    }
    b.push(html!("</ul></section>"));
    b.push(html!(
        r#"<section aria-labelledby="where-h"><h2 id="where-h">Where the file went</h2><ol class="timeline">{}</ol></section>
<section aria-labelledby="from-h"><h2 id="from-h">Where it came from</h2><ol class="timeline" id="lineage">{}</ol></section>
<section aria-labelledby="act-h"><h2 id="act-h">{}'s activity, 7 days up to the alert</h2><ol class="timeline">{}</ol></section>"#,
        event_rows(&d.events),
        event_rows(&d.lineage),
        a.user,
        event_rows(&d.user_activity)
    ));
    b.push(html!(
        r#"<section aria-labelledby="rel-h"><h2 id="rel-h">Related alerts</h2><ul>"#
    ));
    for r in &d.related {
        b.push(html!(
            r#"<li>{} <a href="/alerts/{}">{}</a> · {} · {}</li>"#,
            sev(r.severity.as_str()),
            r.id,
            if r.path.is_empty() {
                &r.rule_id
            } else {
                file_name(&r.path)
            },
            r.status.as_str(),
            fmt_ms(r.last_seen_ms)
        ));
    }
    if d.related.is_empty() {
        b.push(html!("<li>None.</li>"));
    }
    b.push(html!("</ul></section>"));
    b
}

fn path_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no alert `{raw}`")))
}

async fn alert_page(State(st): St, who: Who, Path(id): Path<String>) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    let d = async { api::detail(&st, path_id(&id)?).await }
        .await
        .map_err(|e| fail(e, Some(&c)))?;
    Ok(page(
        &format!("Alert {}", d.alert.id),
        Some(&c),
        detail_body(&d, &c),
    ))
}

#[derive(Deserialize)]
struct AlertForm {
    #[serde(default)]
    csrf: String,
    status: Option<String>,
    assignee: Option<String>,
    note: Option<String>,
}

async fn alert_post(
    State(st): St,
    Path(id): Path<String>,
    Checked(c, f): Checked<AlertForm>,
) -> Page {
    let id = path_id(&id).map_err(|e| fail(e, Some(&c)))?;
    let ch = AlertChange {
        status: f
            .status
            .as_deref()
            .map(settable)
            .transpose()
            .map_err(|e| fail(e.into(), Some(&c)))?,
        assignee: f.assignee.map(|a| Some(a).filter(|a| !a.trim().is_empty())),
        note: f.note,
    };
    api::change(&st, &c, id, ch)
        .await
        .map_err(|e| fail(e, Some(&c)))?;
    Ok(Redirect::to(&format!("/alerts/{id}")).into_response())
}

/// A console form: the capability acting on it takes, and the CSRF token it carries.
trait ConsoleForm: serde::de::DeserializeOwned {
    const CAP: Cap;
    fn csrf(&self) -> &str;
}

/// A form its caller may act on: extracting it checks the session, the form's CSRF token
/// and the caller's capability before the handler runs; without a session the answer is the
/// login page, otherwise an error page.
struct Checked<F>(Caller, F);

impl<F: ConsoleForm + Send> axum::extract::FromRequest<Arc<Http>> for Checked<F> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, st: &Arc<Http>) -> Result<Self, Response> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = req.into_parts();
        let c = Caller::from_request_parts(&mut parts, st)
            .await
            .map_err(|e| fail(e, None))?;
        let req = axum::extract::Request::from_parts(parts, body);
        let checked = match Form::<F>::from_request(req, st).await {
            Ok(Form(f)) => c
                .check_csrf(f.csrf())
                .and_then(|()| c.require(F::CAP))
                .map(|()| f),
            Err(e) => Err(ApiError::BadRequest(format!("form: {}", e.body_text()))),
        };
        match checked {
            Ok(f) => Ok(Checked(c, f)),
            Err(e) => Err(fail(e, Some(&c))),
        }
    }
}

impl ConsoleForm for AlertForm {
    const CAP: Cap = Cap::Triage;
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The offboard button's form.
#[derive(Deserialize)]
struct OffboardForm {
    #[serde(default)]
    csrf: String,
    /// Who takes the leaver's customers over; empty for nobody.
    #[serde(default)]
    successor: String,
}

impl ConsoleForm for OffboardForm {
    const CAP: Cap = Cap::Offboard;
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

// ----- users, devices, audit -----

async fn users_page(State(st): St, who: Who) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    let users = api::users(&st).await.map_err(|e| fail(e, Some(&c)))?;
    let can_offboard = c.role.can(Cap::Offboard);
    let mut b = html!(
        r#"<h1>Users</h1><p>Riskiest first: the score (0–100) adds up the last 30 days' alerts, exfiltration sequences, volume spikes against the user's own baseline, bulk reads, and notice given.</p><table><thead><tr><th scope="col">User</th><th scope="col">Risk</th><th scope="col">Why</th><th scope="col">State</th><th scope="col">Devices</th><th scope="col">Alerts, 30 days (critical / high / medium / low)</th><th scope="col">Customer records exported, 30 days</th><th scope="col">Last activity</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody>"#
    );
    for u in &users {
        let state = if u.departing {
            html!(
                r#"<span class="flag">departing</span> until {}"#,
                u.effective_ms.map(fmt_ms).unwrap_or_default()
            )
        } else {
            Html::text(&u.state)
        };
        let action = if can_offboard && matches!(u.state.as_str(), "active" | "restored") {
            html!(
                r#"<form method="post" action="/users/{}/offboard" class="inline offboard" data-user="{}"><input type="hidden" name="csrf" value="{}"><label>Successor <input type="text" name="successor" size="10" maxlength="256" autocomplete="off"></label> <button type="submit">Offboard</button></form>"#,
                enc(&u.user),
                u.user,
                c.csrf.as_deref().unwrap_or("")
            )
        } else {
            Html::default()
        };
        let a = u.alerts_30d;
        b.push(html!(
            r#"<tr><td>{}</td><td class="risk">{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{} / {} / {} / {}</td><td>{}</td><td>{}</td><td>{action}</td></tr>"#,
            u.user,
            u.score,
            u.signals.join("; "),
            u.devices,
            a.critical,
            a.high,
            a.medium,
            a.low,
            u.records_30d,
            u.last_activity_ms.map(fmt_ms).unwrap_or_else(|| "–".into()),
            state = state,
            action = action,
        ));
    }
    b.push(html!("</tbody></table>"));
    Ok(page("Users", Some(&c), b))
}

async fn offboard(
    State(st): St,
    Path(user): Path<String>,
    Checked(c, form): Checked<OffboardForm>,
) -> Page {
    let body = OffboardBody {
        user,
        effective: None,
        notice: None,
        lookback_days: None,
        reason: "console".into(),
        successor: Some(form.successor),
    };
    api::offboard(&st, &c, body)
        .await
        .map_err(|e| fail(e, Some(&c)))?;
    Ok(Redirect::to("/users").into_response())
}

async fn devices_page(State(st): St, who: Who) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    let devices = api::devices(&st).await.map_err(|e| fail(e, Some(&c)))?;
    let mut b = html!(
        r#"<h1>Devices</h1><table><thead><tr><th scope="col">Device</th><th scope="col">User</th><th scope="col">Health</th><th scope="col">Last seen</th><th scope="col">Agent</th><th scope="col">Policy</th><th scope="col">Spool backlog</th><th scope="col">Certificate expires</th></tr></thead><tbody>"#
    );
    for v in &devices {
        let d = &v.device;
        b.push(html!(
            r#"<tr><td>{}<div class="sub">{}</div></td><td>{}</td><td><span class="health health-{h}">{h}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            d.hostname,
            d.id,
            d.user,
            d.last_seen_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
            d.agent_version,
            if d.policy_version.is_empty() {
                "local"
            } else {
                &d.policy_version
            },
            d.spool_backlog.unwrap_or(0),
            fmt_ms(d.cert_expires_ms),
            h = v.health,
        ));
    }
    b.push(html!("</tbody></table>"));
    Ok(page("Devices", Some(&c), b))
}

async fn audit_page(State(st): St, who: Who, RawQuery(raw): RawQuery) -> Page {
    let c = who.map_err(|e| fail(e, None))?;
    let run = async {
        c.require(Cap::Audit)?;
        let q = Query::parse(
            raw.as_deref(),
            &[super::params::Param {
                name: "cursor",
                kind: super::params::Kind::Text,
                doc: "",
            }],
            crate::now_ms(),
        )?;
        api::audit_page(&st, &q).await
    };
    let p = run.await.map_err(|e| fail(e, Some(&c)))?;
    let mut b = html!(
        r#"<h1>Audit log</h1><table id="audit"><thead><tr><th scope="col">Time</th><th scope="col">Who</th><th scope="col">From</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Detail</th></tr></thead><tbody>"#
    );
    for e in &p.entries {
        b.push(html!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_ms(e.time_ms),
            e.actor,
            e.origin,
            e.action,
            e.target,
            e.detail
        ));
    }
    b.push(html!("</tbody></table>"));
    if let Some(next) = &p.next_cursor {
        b.push(html!(
            r#"<p><a href="/audit?cursor={}" rel="next">Older</a></p>"#,
            enc(next)
        ));
    }
    Ok(page("Audit log", Some(&c), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_redirects_local_and_percent_encodes_path_segments() {
        assert_eq!(local("/?status=new", "/"), "/?status=new");
        assert_eq!(local("//evil.example/", "/"), "/");
        assert_eq!(local("https://evil.example/", "/"), "/");
        assert_eq!(enc("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn what_an_alert_carries_reaches_the_page_escaped() {
        let hostile = "<img src=x onerror=alert(1)>\"'&";
        let alert = Alert {
            id: 7,
            rule_id: hostile.into(),
            severity: holdfast_shared::event::Severity::High,
            status: crate::store::AlertStatus::New,
            user: hostile.into(),
            device_id: hostile.into(),
            path: format!("/home/u/{hostile}"),
            sha256: None,
            records: 3,
            event_count: 1,
            first_seen_ms: holdfast_shared::time::UnixMs(0),
            last_seen_ms: holdfast_shared::time::UnixMs(0),
            detail: hostile.into(),
            assignee: Some(hostile.into()),
        };
        let row = alert_row(&alert, 0).into_string();
        assert!(!row.contains("<img"), "{row}");
        assert_eq!(
            row.matches("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;")
                .count(),
            3
        );
        assert!(
            row.contains(r#"<a href="/alerts/7">"#),
            "markup itself is kept: {row}"
        );
        let sel = select("status", hostile, hostile, &[(hostile, hostile)]).into_string();
        assert!(!sel.contains("<img") && sel.contains(" selected"), "{sel}");
    }
}
