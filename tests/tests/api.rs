//! The HTTP API against a real collector process fed by a real agent: every endpoint, role
//! enforcement, bad input, sessions with CSRF, metrics and health.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::http::{csrf_of, Client};
use holdfast_tests::{corpus, wait_for, Agent, Collector};
use serde_json::json;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

struct World {
    _tmp: tempfile::TempDir,
    _collector: Collector,
    agent: Agent,
    anon: Client,
    admin: Client,
    analyst: Client,
    it: Client,
    auditor: Client,
    alert_id: i64,
    export: String,
}

/// A collector, an agent for `ana`, one CRM export alert, and a client per role.
fn world() -> World {
    let (tmp, collector, agent) = holdfast_tests::scene("", "ana", "");
    let export = agent.watched.join("report1700000000000.csv");
    std::fs::write(&export, corpus::salesforce_contacts(7, 240)).unwrap();
    let export = export.display().to_string();
    let alerts = wait_for("the export's alert", DEADLINE, || {
        let a = collector.alerts();
        (!a.is_empty()).then_some(a)
    });
    let anon = Client::new(&collector.url(""));
    let admin = anon.bearer(&collector.api_token("root", "admin"));
    let analyst = anon.bearer(&collector.api_token("soc-1", "analyst"));
    let it = anon.bearer(&collector.api_token("it-1", "it_admin"));
    let auditor = anon.bearer(&collector.api_token("audit-1", "auditor"));
    World {
        alert_id: alerts[0]["id"].as_i64().unwrap(),
        _tmp: tmp,
        _collector: collector,
        agent,
        anon,
        admin,
        analyst,
        it,
        auditor,
        export,
    }
}

/// One `check()` for the file: the request was refused with this error code (and its HTTP
/// status), and the message names `needle`.
fn refused(r: &holdfast_tests::http::Reply, code: &str, needle: &str) {
    let status = match code {
        "bad_request" => 400,
        "unauthorized" => 401,
        "forbidden" | "csrf" => 403,
        "not_found" => 404,
        "conflict" => 409,
        other => panic!("no status for error code {other}"),
    };
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(
        r.error().contains(needle),
        "{:?} lacks {needle:?}",
        r.error()
    );
}

#[test]
fn every_endpoint_enforces_roles_validates_input_and_audits_changes() {
    let w = world();
    let id = w.alert_id;

    // Health, metrics and the OpenAPI document need no token.
    let h = w.anon.get("/healthz");
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    let doc = w.anon.get("/api/v1/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/alerts",
        "/api/v1/offboardings",
        "/api/v1/audit",
        "/api/v1/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    let m = wait_for("metrics to show the ingest", DEADLINE, || {
        let body = w.anon.get("/metrics").body;
        body.contains("holdfast_agents_connected 1").then_some(body)
    });
    let ingested: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("holdfast_events_ingested_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ingested >= 1, "{m}");
    assert!(
        m.contains("holdfast_open_alerts{severity=\"high\"} 1"),
        "{m}"
    );
    assert!(m.contains("holdfast_ingest_latency_seconds_count "), "{m}");

    // No token, a wrong token.
    refused(&w.anon.get("/api/v1/alerts"), "unauthorized", "Bearer");
    refused(
        &w.anon.bearer("hfa_nope").get("/api/v1/alerts"),
        "unauthorized",
        "",
    );
    let me = w.analyst.get("/api/v1/me").json();
    assert_eq!(me["role"], "analyst");
    assert_eq!(me["capabilities"], json!(["read", "triage"]));

    // Alerts: list, filters, bad filters.
    let page = w.analyst.get("/api/v1/alerts").json();
    assert_eq!(page["total"], 1);
    assert_eq!(page["alerts"][0]["path"], w.export);
    assert_eq!(page["alerts"][0]["records"], 240);
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    assert_eq!(
        w.analyst
            .get("/api/v1/alerts?severity=high&user=ana&status=new")
            .json()["total"],
        1
    );
    assert_eq!(
        w.analyst.get("/api/v1/alerts?severity=critical").json()["total"],
        0
    );
    assert_eq!(w.analyst.get("/api/v1/alerts?user=bob").json()["total"], 0);
    assert_eq!(
        w.analyst.get("/api/v1/alerts?since=1h&sort=newest").json()["total"],
        1
    );
    // Each bad parameter is refused by name.
    for (query, names) in [
        ("severity=urgent", "`severity`"),
        ("limit=0", "`limit`"),
        ("since=yesterday", "`since`"),
        ("colour=red", "`colour`"),
        ("cursor=zzz", "`cursor`"),
    ] {
        let r = w.analyst.get(&format!("/api/v1/alerts?{query}"));
        refused(&r, "bad_request", names);
    }

    // Detail: the file's events, the user's activity, notes.
    let d = w.analyst.get(&format!("/api/v1/alerts/{id}")).json();
    assert_eq!(d["alert"]["id"], id);
    assert_eq!(d["events"][0]["path"], w.export);
    assert_eq!(d["events"][0]["action"], "created");
    assert!(!d["user_activity"].as_array().unwrap().is_empty());
    assert_eq!(d["notes"], json!([]));
    refused(
        &w.analyst.get("/api/v1/alerts/999999"),
        "not_found",
        "999999",
    );
    refused(&w.analyst.get("/api/v1/alerts/abc"), "bad_request", "abc");

    // Triage: only analysts and admins; transitions checked; bodies checked.
    let patch = |c: &Client, body: serde_json::Value| {
        c.send("PATCH", &format!("/api/v1/alerts/{id}"), &body)
    };
    // (who, body, error code, a word the message must hold)
    for (who, body, code, names) in [
        (
            &w.auditor,
            json!({"status": "triaged"}),
            "forbidden",
            "auditor",
        ),
        (&w.it, json!({"status": "triaged"}), "forbidden", "triage"),
        (
            &w.analyst,
            json!({"stauts": "triaged"}),
            "bad_request",
            "stauts",
        ),
        (
            &w.analyst,
            json!({"status": "done"}),
            "bad_request",
            "status",
        ),
    ] {
        refused(&patch(who, body), code, names);
    }
    refused(
        &w.analyst.send_raw(
            "PATCH",
            &format!("/api/v1/alerts/{id}"),
            "application/json",
            "{not json",
        ),
        "bad_request",
        "request body",
    );
    let a = patch(
        &w.analyst,
        json!({"status": "triaged", "assignee": "soc-1", "note": "looks like a bulk export before notice"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "triaged");
    assert_eq!(a.json()["assignee"], "soc-1");
    refused(
        &patch(&w.analyst, json!({"status": "new"})),
        "conflict",
        "triaged to new",
    );
    let d = w.analyst.get(&format!("/api/v1/alerts/{id}")).json();
    assert_eq!(
        d["notes"][0]["text"],
        "looks like a bulk export before notice"
    );
    assert_eq!(d["notes"][0]["author"], "api:soc-1");
    let b = w.analyst.send(
        "POST",
        "/api/v1/alerts/bulk",
        &json!({"ids": [id, 999999], "status": "resolved"}),
    );
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.json()["updated"], json!([id]));
    assert_eq!(b.json()["failed"][0]["id"], 999999);
    refused(
        &w.analyst.send(
            "POST",
            "/api/v1/alerts/bulk",
            &json!({"ids": [], "status": "resolved"}),
        ),
        "bad_request",
        "ids",
    );
    refused(
        &w.auditor.send(
            "POST",
            "/api/v1/alerts/bulk",
            &json!({"ids": [id], "status": "resolved"}),
        ),
        "forbidden",
        "",
    );
    assert_eq!(
        w.analyst.get("/api/v1/alerts?status=resolved").json()["total"],
        1
    );

    // Users and devices.
    let users = w.it.get("/api/v1/users").json();
    let ana = &users["users"][0];
    assert_eq!(ana["user"], "ana");
    assert_eq!(ana["departing"], false);
    assert_eq!(ana["alerts_30d"]["high"], 1);
    assert_eq!(ana["records_30d"], 240);
    assert_eq!(ana["score"], 10, "{ana}");
    assert_eq!(ana["signals"][0], "alerts in 30 days: 1 high", "{ana}");
    refused(
        &w.it.get("/api/v1/users?state=gone"),
        "bad_request",
        "`state`",
    );
    refused(&w.it.get("/api/v1/users/nobody"), "not_found", "nobody");
    let devices = w.auditor.get("/api/v1/devices").json();
    let dev = &devices["devices"][0];
    assert_eq!(dev["user"], "ana");
    assert_eq!(dev["health"], "ok");
    assert!(!dev["agent_version"].as_str().unwrap().is_empty());

    // Event search.
    let ev = w.analyst.get("/api/v1/events?user=ana&matched=true").json();
    assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{ev}");
    assert_eq!(ev["events"][0]["path"], w.export);
    let sha = ev["events"][0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        w.analyst
            .get(&format!("/api/v1/events?sha256={sha}"))
            .json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        w.analyst.get("/api/v1/events?path=report17").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        w.analyst
            .get("/api/v1/events?path=nothing-like-this")
            .json()["events"],
        json!([])
    );
    refused(
        &w.analyst.get("/api/v1/events?action=copied"),
        "bad_request",
        "`action`",
    );

    // Offboarding over HTTP: it_admin only, bad fields named, idempotent.
    // Effective tomorrow: the look-back window (30 days before it) holds today's export.
    let tomorrow = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(86_400),
    )
    .to_string();
    let body =
        json!({"user": "ana", "effective": tomorrow, "reason": "resigned", "lookback_days": 30});
    refused(
        &w.analyst.send("POST", "/api/v1/offboardings", &body),
        "forbidden",
        "offboard",
    );
    refused(
        &w.auditor.send("POST", "/api/v1/offboardings", &body),
        "forbidden",
        "",
    );
    refused(
        &w.it
            .send("POST", "/api/v1/offboardings", &json!({"user": "ghost"})),
        "not_found",
        "ghost",
    );
    refused(
        &w.it.send(
            "POST",
            "/api/v1/offboardings",
            &json!({"user": "ana", "effective": "next friday"}),
        ),
        "bad_request",
        "effective",
    );
    refused(
        &w.it.send(
            "POST",
            "/api/v1/offboardings",
            &json!({"user": "ana", "lookback_days": 0}),
        ),
        "bad_request",
        "lookback_days",
    );
    refused(
        &w.it
            .send("POST", "/api/v1/offboardings", &json!({"usr": "ana"})),
        "bad_request",
        "usr",
    );
    let started = w.it.send("POST", "/api/v1/offboardings", &body);
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.json()["devices"], 1);
    let again = w.it.send("POST", "/api/v1/offboardings", &body);
    assert_eq!(
        (again.status, again.json()["started"].as_bool()),
        (200, Some(false))
    );
    let st = w.analyst.get("/api/v1/offboardings/ana").json();
    assert_eq!(st["reason"], "resigned");
    assert_eq!(st["devices"][0]["state"], "scheduled");
    assert_eq!(w.analyst.get("/api/v1/users/ana").json()["departing"], true);
    let report = w.it.get("/api/v1/offboardings/ana/report").json();
    assert_eq!(report["user"], "ana");
    assert_eq!(report["records_exported"], 240);
    let csv = w.it.get("/api/v1/offboardings/ana/report?format=csv");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv.body.contains("report1700000000000.csv"), "{}", csv.body);
    refused(
        &w.it.get("/api/v1/offboardings/ana/report?format=pdf"),
        "bad_request",
        "`format`",
    );
    refused(&w.it.get("/api/v1/offboardings/bob"), "not_found", "bob");
    refused(
        &w.auditor
            .send("POST", "/api/v1/offboardings/ana/restore", &json!({})),
        "forbidden",
        "",
    );
    let r =
        w.it.send("POST", "/api/v1/offboardings/ana/restore", &json!({}));
    assert_eq!(
        (r.status, r.json()["restored"].as_bool()),
        (200, Some(true)),
        "{}",
        r.body
    );
    let r =
        w.it.send("POST", "/api/v1/offboardings/ana/restore", &json!({}));
    assert_eq!(r.json()["restored"], false);
    assert_eq!(
        w.it.send("POST", "/api/v1/offboardings/ana/retry", &json!({}))
            .json()["retried"],
        0
    );

    // Tokens: admin only; a revoked token stops working at once.
    refused(&w.analyst.get("/api/v1/tokens"), "forbidden", "admin");
    refused(
        &w.analyst.send(
            "POST",
            "/api/v1/tokens",
            &json!({"name": "x", "role": "admin"}),
        ),
        "forbidden",
        "",
    );
    refused(
        &w.admin.send(
            "POST",
            "/api/v1/tokens",
            &json!({"name": "hr", "role": "boss"}),
        ),
        "bad_request",
        "role",
    );
    let t = w.admin.send(
        "POST",
        "/api/v1/tokens",
        &json!({"name": "hr-system", "role": "it_admin"}),
    );
    assert_eq!(t.status, 201, "{}", t.body);
    let hr = w.anon.bearer(t.json()["secret"].as_str().unwrap());
    assert_eq!(hr.get("/api/v1/me").json()["name"], "hr-system");
    refused(
        &w.admin.send(
            "POST",
            "/api/v1/tokens",
            &json!({"name": "hr-system", "role": "it_admin"}),
        ),
        "conflict",
        "exists",
    );
    let listed = w.admin.get("/api/v1/tokens").body;
    assert!(listed.contains("hr-system") && !listed.contains(t.json()["secret"].as_str().unwrap()));
    refused(
        &w.auditor.delete("/api/v1/tokens/hr-system"),
        "forbidden",
        "",
    );
    assert_eq!(w.admin.delete("/api/v1/tokens/hr-system").status, 200);
    refused(&hr.get("/api/v1/me"), "unauthorized", "");
    refused(
        &w.admin.delete("/api/v1/tokens/hr-system"),
        "not_found",
        "hr-system",
    );

    // Devices: revoke is it_admin's, audited, idempotent.
    let dev_id = dev["id"].as_str().unwrap().to_string();
    refused(
        &w.analyst.send(
            "POST",
            &format!("/api/v1/devices/{dev_id}/revoke"),
            &json!({}),
        ),
        "forbidden",
        "",
    );
    refused(
        &w.it.send("POST", "/api/v1/devices/nope/revoke", &json!({})),
        "not_found",
        "nope",
    );

    let revoked = w.it.send(
        "POST",
        &format!("/api/v1/devices/{dev_id}/revoke"),
        &json!({}),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["health"], "revoked");
    assert!(revoked.json()["revoked_ms"].as_i64().is_some());
    let again = w.it.send(
        "POST",
        &format!("/api/v1/devices/{dev_id}/revoke"),
        &json!({}),
    );
    assert_eq!(
        (again.status, again.json()["health"].as_str()),
        (200, Some("revoked"))
    );

    // The audit log: auditors and admins only; every change above is in it with who and where.
    refused(&w.analyst.get("/api/v1/audit"), "forbidden", "audit");
    refused(&w.it.get("/api/v1/audit"), "forbidden", "audit");
    let log = w.auditor.get("/api/v1/audit?limit=500").json();
    let lines: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (actor, action) in [
        ("api:soc-1", "alert.status"),
        ("api:soc-1", "alert.assign"),
        ("api:soc-1", "alert.note"),
        ("api:it-1", "offboard"),
        ("api:it-1", "offboard.restore"),
        ("api:root", "token.create"),
        ("api:root", "token.revoke"),
        ("api:it-1", "device.revoke"),
    ] {
        assert!(
            lines
                .iter()
                .any(|(a, b, o)| a == actor && b == action && o == "http 127.0.0.1"),
            "no {actor} {action} from http 127.0.0.1 in {lines:?}"
        );
    }
    assert!(lines
        .iter()
        .any(|(a, b, _)| a.starts_with("cli:") && b == "token.create"));
    assert_eq!(
        lines
            .iter()
            .filter(|(_, b, _)| b == "device.revoke")
            .count(),
        1,
        "revoking twice is audited once"
    );
    let first = w.auditor.get("/api/v1/audit?limit=2").json();
    let next = first["next_cursor"].as_str().unwrap();
    let second = w
        .auditor
        .get(&format!("/api/v1/audit?limit=2&cursor={next}"))
        .json();
    assert!(second["entries"][0]["id"].as_i64() < first["entries"][1]["id"].as_i64());

    // Unknown paths answer in the same JSON shape.
    refused(
        &w.analyst.get("/api/v1/nothing"),
        "not_found",
        "/api/v1/nothing",
    );
    drop(w.agent);
}

#[test]
fn browser_sessions_need_their_csrf_token_and_one_time_logins_are_spent() {
    let (_tmp, collector) = Collector::scratch("");
    let anon = Client::new(&collector.url(""));
    let login = collector
        .cli(&[
            "api-token",
            "create",
            "--name",
            "first-login",
            "--role",
            "analyst",
            "--once",
        ])
        .trim()
        .to_string();
    // A one-time login is not an API token.
    refused(&anon.bearer(&login).get("/api/v1/me"), "unauthorized", "");
    let cookie = anon.login(&login).expect("a session cookie");
    let r = anon.form("/login", &[("token", &login)]);
    assert_eq!(r.status, 401, "a spent one-time login is refused");
    assert!(r.body.contains("already used"), "{}", r.body);

    let page = anon.session(&cookie, None).get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Alerts"), "{}", page.body);
    let csrf = csrf_of(&page.body).unwrap();
    assert!(csrf.len() >= 32);
    let me = anon.session(&cookie, None).get("/api/v1/me").json();
    assert_eq!(me["name"], "first-login");
    // State-changing calls with the cookie need the CSRF header.
    let body = json!({"ids": [1], "status": "resolved"});
    refused(
        &anon
            .session(&cookie, None)
            .send("POST", "/api/v1/alerts/bulk", &body),
        "csrf",
        "CSRF",
    );
    refused(
        &anon
            .session(&cookie, Some("wrong"))
            .send("POST", "/api/v1/alerts/bulk", &body),
        "csrf",
        "CSRF",
    );
    let ok = anon
        .session(&cookie, Some(&csrf))
        .send("POST", "/api/v1/alerts/bulk", &body);
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Console forms carry it as a field.
    let r = anon.session(&cookie, None).form(
        "/alerts/bulk",
        &[("csrf", "forged"), ("status", "resolved"), ("ids", "1")],
    );
    assert_eq!(r.status, 403);
    // A form's capability is checked with its token: the analyst's session, with the right
    // token, may triage an alert (an unknown one is a 404) but not press Offboard.
    let r = anon
        .session(&cookie, None)
        .form("/alerts/999999", &[("csrf", &csrf), ("status", "triaged")]);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = anon
        .session(&cookie, None)
        .form("/users/ana/offboard", &[("csrf", &csrf)]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("offboard"), "{}", r.body);
    let r = anon
        .session(&cookie, None)
        .form("/users/ana/offboard", &[("csrf", "forged")]);
    assert_eq!(r.status, 403, "{}", r.body);
    // Cookie flags.
    let r = anon.form(
        "/login",
        &[("token", &collector.api_token("soc-2", "analyst"))],
    );
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert_eq!(r.header("location"), Some("/"));
    // Logging out ends the session.
    let out = anon
        .session(&cookie, None)
        .form("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    refused(
        &anon.session(&cookie, None).get("/api/v1/me"),
        "unauthorized",
        "",
    );
    // A page without a session goes to the login page.
    let r = anon.get("/users");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
}
