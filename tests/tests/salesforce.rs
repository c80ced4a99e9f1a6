//! The `salesforce` connector against the Salesforce stand-in (`holdfast_tests::salesforce`,
//! built from Salesforce's documentation): offboarding freezes the leaver's user (at the effective time) through a
//! rate limit and a server error, and reads it back frozen; a wrong consumer secret is a failed
//! run that says so and never shows the secret; report exports polled from `ReportEvent`
//! (paged, through a failed poll) become alerts under the same rules as an agent's files: a
//! departing user's 5,000-row export is critical within one poll and counts in their risk, a
//! report only run on screen is nothing, an export polled again is not a second event; a
//! restore unfreezes the user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::salesforce::{Org, ReportEvent, SalesforceApi, SfUser};
use holdfast_tests::{secret_file, wait_for, Collector};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const SECRET: &str = "sf-consumer-secret-0123456789ABCDEF";

fn user(id: &str, name: &str, login: &str) -> SfUser {
    SfUser {
        id: id.into(),
        username: name.into(),
        login_id: login.into(),
        active: true,
        frozen: false,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn export(
    id: &str,
    login: &str,
    report: &str,
    operation: &str,
    rows: u64,
    ago_ms: i64,
) -> ReportEvent {
    ReportEvent {
        id: id.into(),
        time_ms: now_ms() - ago_ms,
        username: login.into(),
        report: report.into(),
        operation: operation.into(),
        rows,
        format: (operation == "ReportExported").then(|| "CSV".into()),
    }
}

#[test]
fn salesforce_freezes_the_leaver_and_its_report_exports_raise_alerts_within_one_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let api = SalesforceApi::start(Org {
        client_id: "3MVG9-acme-holdfast".into(),
        client_secret: SECRET.into(),
        users: vec![
            user("005K00000001", "kim@acme.example", "05gK00000001"),
            user("005L00000002", "lee@acme.example", "05gL00000002"),
        ],
        page_size: 2,
        // The freeze meets a rate limit, then a server error, then goes through.
        patch_faults: vec![429, 500],
        poll_faults: vec![500],
        ..Org::default()
    });
    let good = secret_file(tmp.path(), "sf.secret", SECRET);
    let old = secret_file(
        tmp.path(),
        "old.secret",
        "sf-rotated-away-secret-9876543210",
    );
    let c = Collector::start_with(
        tmp.path(),
        &format!(
            "[[connector]]\nname = \"sf\"\nkind = \"salesforce\"\nurl = \"{base}\"\nclient_id = \"3MVG9-acme-holdfast\"\nsecret_file = \"{good}\"\nlogin = \"{{user}}@acme.example\"\npoll = \"1s\"\nretry_base = \"200ms\"\nusers = {{ \"Kim.Sales@acme.example\" = \"kim\" }}\n\n\
             [[connector]]\nname = \"sf-old\"\nkind = \"salesforce\"\nurl = \"{base}\"\nclient_id = \"3MVG9-acme-holdfast\"\nsecret_file = \"{old}\"\nmax_attempts = 1\n",
            base = api.base,
            good = good.display(),
            old = old.display(),
        ),
    );
    c.token("kim");
    c.token("lee");
    // kim gives notice: effective tomorrow, departing until then.
    let tomorrow = {
        let t = std::time::SystemTime::now() + Duration::from_secs(86_400);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let started = c.cli(&["offboard", "kim", "--effective", &tomorrow]);
    assert!(started.contains("offboarding started"), "{started}");
    // lee leaves now: the connectors run at once.
    c.cli(&["offboard", "lee"]);
    let run = c.settled_run("lee", "sf", "offboard");
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["attempts"], 3, "{run}");
    assert_eq!(
        run["last"]["detail"],
        "Salesforce user lee@acme.example (005L00000002) frozen and read back frozen"
    );
    {
        let org = api.org.lock().unwrap();
        assert!(org.users[1].frozen && org.users[1].active);
        assert!(
            !org.users[0].frozen,
            "kim is untouched until her effective time"
        );
    }
    let stale = c.settled_run("lee", "sf-old", "offboard");
    assert_eq!(stale["status"], "failed");
    assert_eq!(
        stale["last"]["detail"],
        "token: HTTP 400: invalid_client: invalid client credentials (check client_id and secret_file)"
    );
    let shown = c.shown_of_offboarding("lee");
    assert!(
        !shown.contains(SECRET) && !shown.contains("rotated-away"),
        "{shown}"
    );

    // The exports the org records from now on, in the last 50 ms (kim's from a phone: no agent saw them).
    api.org.lock().unwrap().events.extend([
        export(
            "0a1-e1",
            "kim@acme.example",
            "All Accounts",
            "ReportExported",
            5000,
            30,
        ),
        export(
            "0a1-e2",
            "kim@acme.example",
            "Pipeline",
            "ReportRunFromLightning",
            300,
            25,
        ),
        export(
            "0a1-e3",
            "lee@acme.example",
            "Pipeline",
            "ReportExported",
            120,
            20,
        ),
        export(
            "0a1-e4",
            "kim.sales@acme.example",
            "Leads",
            "ReportExported",
            120,
            15,
        ),
        export(
            "0a1-e5",
            "contractor@partner.example",
            "Contacts",
            "ReportExported",
            80,
            10,
        ),
    ]);
    let mass = wait_for("kim's 5,000-row export alert", DEADLINE, || {
        c.alerts()
            .into_iter()
            .find(|a| a["rule_id"] == "crm-export.mass-contacts" && a["user"] == "kim")
    });
    assert_eq!(mass["severity"], "critical", "{mass}");
    assert_eq!(mass["device_id"], "crm:sf");
    assert_eq!(mass["path"], "salesforce://kim@acme.example/All Accounts");
    assert_eq!(mass["records"], 5000);
    assert!(
        mass["detail"]
            .as_str()
            .unwrap()
            .starts_with("Salesforce report export (Lightning): 5000 records of Account in report \"All Accounts\" exported by kim@acme.example at "),
        "{mass}"
    );
    let alerts = wait_for("the other exports' alerts", DEADLINE, || {
        let a = c.alerts();
        (a.iter().filter(|a| a["device_id"] == "crm:sf").count() >= 4).then_some(a)
    });
    let find = |path: &str| {
        alerts
            .iter()
            .find(|a| a["path"] == path)
            .unwrap_or_else(|| panic!("no alert at {path}: {alerts:?}"))
    };
    // kim's second login, mapped by the table: a bulk export raised to critical (departing).
    let leads = find("salesforce://kim.sales@acme.example/Leads");
    assert_eq!(
        (&leads["user"], &leads["severity"]),
        (&"kim".into(), &"critical".into())
    );
    // lee has left (his offboarding took effect): an export now is access after
    // offboarding, critical.
    let lee: Vec<(&serde_json::Value, &serde_json::Value)> = alerts
        .iter()
        .filter(|a| a["path"] == "salesforce://lee@acme.example/Pipeline")
        .map(|a| (&a["rule_id"], &a["severity"]))
        .collect();
    assert!(
        lee.contains(&(&"holdfast.offboarded_access".into(), &"critical".into())),
        "{lee:?}"
    );
    // A login nobody maps is kept under the login itself.
    let other = find("salesforce://contractor@partner.example/Contacts");
    assert_eq!(
        (&other["user"], &other["severity"]),
        (&"contractor@partner.example".into(), &"high".into())
    );
    // A report run on screen is no export.
    assert!(!alerts
        .iter()
        .any(|a| a["path"] == "salesforce://kim@acme.example/Pipeline"));
    // The poll met a server error first and was retried; pages were followed.
    assert!(api.org.lock().unwrap().poll_faults.is_empty());
    assert!(!api.calls("/services/data/v62.0/query/01gPAGE").is_empty());
    // Polled again and again, each export is one event.
    let polls = api
        .calls("/services/data/v62.0/query?q=SELECT%20EventIdentifier")
        .len();
    wait_for("two more polls", DEADLINE, || {
        (api.calls("/services/data/v62.0/query?q=SELECT%20EventIdentifier")
            .len()
            >= polls + 2)
            .then_some(())
    });
    let again = c
        .alert_where("path", "salesforce://kim@acme.example/All Accounts")
        .unwrap();
    assert_eq!(again["event_count"], 1, "{again}");
    // The exports count in kim's risk.
    let risk = c.user("kim");
    assert!(risk["score"].as_u64().unwrap() >= 70, "{risk}");
    assert_eq!(risk["alerts_30d"]["critical"], 2, "{risk}");
    // A restore unfreezes the user.
    c.cli(&["offboard", "restore", "lee"]);
    let back = c.settled_run("lee", "sf", "restore");
    assert_eq!(
        back["last"]["detail"],
        "Salesforce user lee@acme.example (005L00000002) unfrozen and read back not frozen",
        "{back}"
    );
    assert!(!api.org.lock().unwrap().users[1].frozen);
}
