//! The `dingtalk`, `hubspot` and `zoho` connectors against their stand-ins
//! (`holdfast_tests::{dingtalk, hubspot, zoho}`, built from the vendors' documentation), in one
//! collector: offboarding disables and signs out the leaver's 钉钉 account through a rate
//! limit and a server error and reads it back disabled, and removes their HubSpot user
//! through a rate limit; a wrong AppSecret is a failed run that says so and never shows the
//! secret; exports polled from HubSpot's audit log (paged, through a rate-limited poll) and
//! from Zoho's asynchronous audit log export (a job followed until it finishes, its CSV read)
//! become alerts: a departing user's 5,000-row Zoho export is critical, an export of unknown
//! size is medium (critical when departing), edits are nothing, and a restore re-enables the
//! 钉钉 account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::dingtalk::{Account, DingTalkApi};
use holdfast_tests::hubspot::{AuditEntry, HsUser, HubSpotApi};
use holdfast_tests::zoho::{ZohoApi, ZohoEntry};
use holdfast_tests::{secret_file, wait_for, Collector};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const DT_SECRET: &str = "dingtalk-app-secret-0123456789abcdef";
const HS_TOKEN: &str = "pat-na1-0123abcd-4567-89ef-0123-456789abcdef";
const ZOHO_SECRET: &str = "zoho-client-secret-0123456789abcdef";
const ZOHO_REFRESH: &str = "1000.refresh-0123456789abcdef.0123456789abcdef";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn hs_entry(id: &str, category: &str, action: &str, target: &str, email: &str) -> AuditEntry {
    AuditEntry {
        id: id.into(),
        time_ms: now_ms() - 20,
        category: category.into(),
        sub_category: "CONTACT".into(),
        action: action.into(),
        target: target.into(),
        email: email.into(),
    }
}

fn zoho_entry(by: &str, action: &str, record: &str, description: &str) -> ZohoEntry {
    ZohoEntry {
        time_ms: now_ms() - 20,
        done_by: by.into(),
        action: action.into(),
        module: "Leads".into(),
        record: record.into(),
        description: description.into(),
    }
}

#[test]
fn dingtalk_hubspot_and_zoho_cut_access_and_their_exports_raise_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let dt = DingTalkApi::start(holdfast_tests::dingtalk::Org {
        app_key: "dingoa1b2c3d4e5".into(),
        app_secret: DT_SECRET.into(),
        accounts: [
            ("lee".to_string(), Account::default()),
            ("kim".to_string(), Account::default()),
        ]
        .into(),
        // The disable meets a rate limit, then a server error, then goes through.
        faults: vec![403, 500],
        ..Default::default()
    });
    let hs = HubSpotApi::start(holdfast_tests::hubspot::Account {
        token: HS_TOKEN.into(),
        users: vec![
            HsUser {
                id: "7001".into(),
                email: "kim@acme.example".into(),
            },
            HsUser {
                id: "7002".into(),
                email: "lee@acme.example".into(),
            },
        ],
        page_size: 2,
        delete_faults: vec![429],
        poll_faults: vec![429],
        ..Default::default()
    });
    let zoho = ZohoApi::start(holdfast_tests::zoho::Org {
        client_id: "1000.ABCDEF123456".into(),
        client_secret: ZOHO_SECRET.into(),
        refresh_token: ZOHO_REFRESH.into(),
        schedule_faults: vec![429],
        ..Default::default()
    });
    let f = |name: &str, value: &str| secret_file(tmp.path(), name, value).display().to_string();
    let c = Collector::start_with(
        tmp.path(),
        &format!(
            "[[connector]]\nname = \"dt\"\nkind = \"dingtalk\"\nurl = \"{dt}\"\nclient_id = \"dingoa1b2c3d4e5\"\nsecret_file = \"{dts}\"\non_restore = \"reactivate\"\nretry_base = \"200ms\"\n\n\
             [[connector]]\nname = \"dt-old\"\nkind = \"dingtalk\"\nurl = \"{dt}\"\nclient_id = \"dingoa1b2c3d4e5\"\nsecret_file = \"{old}\"\nmax_attempts = 1\n\n\
             [[connector]]\nname = \"hs\"\nkind = \"hubspot\"\nurl = \"{hs}\"\ntoken_file = \"{hst}\"\nlogin = \"{{user}}@acme.example\"\nusers = {{ \"lee.sales@acme.example\" = \"lee\" }}\npoll = \"1s\"\nretry_base = \"200ms\"\n\n\
             [[connector]]\nname = \"zoho\"\nkind = \"zoho\"\nurl = \"{z}\"\naccounts_url = \"{z}\"\nclient_id = \"1000.ABCDEF123456\"\nsecret_file = \"{zs}\"\ntoken_file = \"{zt}\"\nlogin = \"{{user}}@acme.example\"\npoll = \"1s\"\n",
            dt = dt.base,
            dts = f("dt.secret", DT_SECRET),
            old = f("dt-old.secret", "dingtalk-rotated-away-9876543210"),
            hs = hs.base,
            hst = f("hs.token", HS_TOKEN),
            z = zoho.base,
            zs = f("zoho.secret", ZOHO_SECRET),
            zt = f("zoho.refresh", ZOHO_REFRESH),
        ),
    );
    // hubspot's users table maps lee's second login; the template maps the rest.
    c.token("kim");
    c.token("lee");
    let tomorrow = {
        let t = std::time::SystemTime::now() + Duration::from_secs(86_400);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    c.cli(&["offboard", "kim", "--effective", &tomorrow]);
    c.cli(&["offboard", "lee"]);

    let run = c.settled_run("lee", "dt", "offboard");
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["attempts"], 3, "{run}");
    assert_eq!(
        run["last"]["detail"],
        "DingTalk account lee disabled, signed out, and read back disabled"
    );
    let lee = dt.account("lee");
    assert!(lee.disabled && lee.sign_outs >= 1, "{lee:?}");
    assert_eq!(lee.reason.as_deref(), Some("Holdfast offboarding"));
    assert!(
        !dt.account("kim").disabled,
        "kim is untouched until her effective time"
    );
    let stale = c.settled_run("lee", "dt-old", "offboard");
    assert_eq!(stale["status"], "failed");
    assert_eq!(
        stale["last"]["detail"],
        "accessToken: HTTP 400: invalidClientIdOrSecret: 无效的clientId或者clientSecret (check client_id and secret_file)"
    );
    // HubSpot: lee's user is found by email, removed through a rate limit, and read back gone.
    let removed = c.settled_run("lee", "hs", "offboard");
    assert_eq!(removed["status"], "ok", "{removed}");
    assert_eq!(removed["attempts"], 2, "{removed}");
    assert_eq!(
        removed["last"]["detail"],
        "HubSpot user lee@acme.example (7002) removed and read back gone"
    );
    let left: Vec<String> = hs
        .account
        .lock()
        .unwrap()
        .users
        .iter()
        .map(|u| u.email.clone())
        .collect();
    assert_eq!(left, ["kim@acme.example"]);
    let z = c.settled_run("lee", "zoho", "offboard");
    assert_eq!(z["status"], "ok", "{z}");
    let shown = c.shown_of_offboarding("lee");
    for secret in [
        DT_SECRET,
        "rotated-away",
        HS_TOKEN,
        ZOHO_SECRET,
        ZOHO_REFRESH,
    ] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }

    // The exports the CRMs record from now on (kim's from a browser at home: no agent saw them).
    hs.account.lock().unwrap().audit.extend([
        hs_entry(
            "hs-1",
            "EXPORT",
            "CREATE",
            "All contacts",
            "kim@acme.example",
        ),
        hs_entry(
            "hs-2",
            "PROPERTY_VALUE",
            "UPDATE",
            "Acme Ltd",
            "kim@acme.example",
        ),
        hs_entry(
            "hs-3",
            "EXPORT",
            "CREATE",
            "Customers Q4",
            "ada@acme.example",
        ),
        hs_entry(
            "hs-4",
            "CRM_OBJECT",
            "CREATE",
            "New deal",
            "ada@acme.example",
        ),
        hs_entry(
            "hs-5",
            "EXPORT",
            "CREATE",
            "Leads",
            "lee.sales@acme.example",
        ),
    ]);
    zoho.org.lock().unwrap().entries.extend([
        zoho_entry(
            "Kim Lee (kim@acme.example)",
            "Exported",
            "All Leads",
            "Exported 5,000 Leads",
        ),
        zoho_entry(
            "Kim Lee (kim@acme.example)",
            "Updated",
            "Acme Ltd",
            "Changed Phone",
        ),
        zoho_entry("Ada Chen (ada@acme.example)", "Exported", "Contacts", ""),
    ]);
    let mass = wait_for("kim's 5,000-row Zoho export alert", DEADLINE, || {
        c.alert_where("path", "zoho://kim@acme.example/All Leads")
    });
    assert_eq!(
        (
            &mass["rule_id"],
            &mass["severity"],
            &mass["user"],
            &mass["device_id"],
            &mass["records"]
        ),
        (
            &"crm-export.mass-contacts".into(),
            &"critical".into(),
            &"kim".into(),
            &"crm:zoho".into(),
            &5000.into()
        ),
        "{mass}"
    );
    assert!(
        mass["detail"].as_str().unwrap().starts_with("Zoho CRM export (audit log): 5000 records of Leads in report \"All Leads\" exported by kim@acme.example at "),
        "{mass}"
    );
    let alerts = wait_for("the other exports' alerts", DEADLINE, || {
        let a = c.alerts();
        (a.iter().filter(|a| a["device_id"] == "crm:hs").count() >= 3
            && a.iter()
                .any(|a| a["device_id"] == "crm:zoho" && a["user"] == "ada"))
        .then_some(a)
    });
    let find = |path: &str| {
        alerts
            .iter()
            .find(|a| a["path"] == path)
            .unwrap_or_else(|| panic!("no alert at {path}: {alerts:?}"))
    };
    let sized = |path: &str| {
        let a = find(path);
        (
            a["rule_id"].as_str().unwrap().to_string(),
            a["severity"].as_str().unwrap().to_string(),
            a["user"].as_str().unwrap().to_string(),
        )
    };
    let unknown = |sev: &str, user: &str| {
        (
            "holdfast.crm_export".to_string(),
            sev.to_string(),
            user.to_string(),
        )
    };
    // HubSpot does not say how many records: departing kim's is critical, ada's medium.
    assert_eq!(
        sized("hubspot://kim@acme.example/All contacts"),
        unknown("critical", "kim")
    );
    assert_eq!(
        sized("hubspot://ada@acme.example/Customers Q4"),
        unknown("medium", "ada")
    );
    assert_eq!(
        sized("zoho://ada@acme.example/Contacts"),
        unknown("medium", "ada")
    );
    // lee left: his export (a login the table maps) is access after offboarding.
    assert!(alerts
        .iter()
        .any(|a| a["path"] == "hubspot://lee.sales@acme.example/Leads"
            && a["rule_id"] == "holdfast.offboarded_access"
            && a["user"] == "lee"));
    // Edits are no exports.
    for path in [
        "hubspot://kim@acme.example/Acme Ltd",
        "hubspot://ada@acme.example/New deal",
        "zoho://kim@acme.example/Acme Ltd",
    ] {
        assert!(!alerts.iter().any(|a| a["path"] == path), "{path}");
    }
    // The HubSpot poll was rate limited, then read page after page; the Zoho job was followed
    // until it finished, after a rate-limited schedule.
    assert!(hs.account.lock().unwrap().poll_faults.is_empty());
    assert!(hs
        .hook
        .calls("/account-info/v3/activity/audit-logs")
        .iter()
        .any(|l| l.contains("after=")));
    let jobs = zoho.org.lock().unwrap().jobs.clone();
    assert!(jobs.iter().any(|j| j.looks >= 3), "{jobs:?}");
    assert!(zoho.org.lock().unwrap().schedule_faults.is_empty());
    // Polled again and again, each export is one event.
    let polls = zoho.hook.calls("/crm/v8/settings/audit_log_export").len();
    wait_for("two more Zoho polls", DEADLINE, || {
        (zoho.hook.calls("/v2/crm/").len() >= 2
            && zoho.hook.calls("/crm/v8/settings/audit_log_export").len() >= polls + 4)
            .then_some(())
    });
    let again = c
        .alert_where("path", "zoho://kim@acme.example/All Leads")
        .unwrap();
    assert_eq!(again["event_count"], 1, "{again}");
    let risk = c.user("kim");
    assert_eq!(risk["alerts_30d"]["critical"], 2, "{risk}");

    // `connectors list` says what each does and how each CRM's polling stands.
    let listed = holdfast_tests::json_lines(&c.cli(&["connectors", "list", "--json"]));
    let row = |name: &str| {
        let r = listed
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {listed:?}"));
        (
            r["kind"].as_str().unwrap().to_string(),
            r["poll_ok"].clone(),
            r["exports"].as_i64().unwrap(),
        )
    };
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(row("dt"), ("dingtalk".into(), serde_json::Value::Null, 0));
    let (kind, ok, exports) = row("zoho");
    assert_eq!(
        (kind.as_str(), ok, exports >= 2),
        ("zoho", true.into(), true),
        "{listed:?}"
    );
    let (kind, ok, exports) = row("hs");
    assert_eq!(
        (kind.as_str(), ok, exports >= 3),
        ("hubspot", true.into(), true),
        "{listed:?}"
    );
    let table = c.cli(&["connectors", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(!table.contains(HS_TOKEN) && !listed.iter().any(|r| r.to_string().contains(HS_TOKEN)));

    // A restore re-enables the 钉钉 account (on_restore = "reactivate"); HubSpot says what it cannot do.
    c.cli(&["offboard", "restore", "lee"]);
    let back = c.settled_run("lee", "dt", "restore");
    assert_eq!(
        back["last"]["detail"], "DingTalk account lee enabled and read back enabled",
        "{back}"
    );
    assert!(!dt.account("lee").disabled);
    let hs_back = c.settled_run("lee", "hs", "restore");
    assert!(
        hs_back["last"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("restore: HubSpot cannot reactivate"),
        "{hs_back}"
    );
}
