//! The `scim` connector against a real SCIM 2.0 server (scim2-server from PyPI, started on
//! loopback): an offboarding deactivates the leaver there and nobody else, a restore asked to
//! re-enable activates them again, a wrong token is a failed run with the server's reason that
//! never shows the token, and a leaver the server does not know is a failed run naming the
//! filter it searched with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::scim::ScimServer;
use holdfast_tests::{secret_file, wait_for, Collector};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "idp-bearer-0123456789";

#[test]
fn offboarding_deactivates_the_leaver_on_the_identity_provider_and_restore_brings_them_back() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(idp) = ScimServer::start(tmp.path(), TOKEN) else {
        return;
    };
    let lea = idp.create_user("lea@acme.example");
    let leah = idp.create_user("leah@acme.example");
    let good = secret_file(tmp.path(), "idp.token", TOKEN);
    let stale = secret_file(tmp.path(), "stale.token", "stale-bearer-9876543210");
    let c = Collector::start_with(
        tmp.path(),
        &format!(
            "[[connector]]\nname = \"idp\"\nkind = \"scim\"\nurl = \"{base}/\"\ntoken_file = \"{good}\"\nlogin = \"{{user}}@acme.example\"\non_restore = \"reactivate\"\nretry_base = \"200ms\"\n\n\
             [[connector]]\nname = \"old-idp\"\nkind = \"scim\"\nurl = \"{base}\"\ntoken_file = \"{stale}\"\nmatch = \"email\"\nlogin = \"{{user}}@acme.example\"\nmax_attempts = 1\n",
            base = idp.base,
            good = good.display(),
            stale = stale.display(),
        ),
    );
    c.token("lea");
    assert!(c.cli(&["offboard", "lea"]).contains("offboarding started"));
    let run = c.settled_run("lea", "idp", "offboard");
    assert_eq!(run["status"], "ok", "{run}");
    assert!(
        run["last"]["detail"]
            .as_str()
            .unwrap()
            .contains("lea@acme.example (id ")
            && run["last"]["detail"]
                .as_str()
                .unwrap()
                .ends_with("is now inactive; read back"),
        "{run}"
    );
    // On the server: the leaver is inactive, the colleague with the longer name is not.
    assert!(!idp.active(&lea));
    assert!(idp.active(&leah));
    // The connector with a stale token failed on its one attempt, with the server's answer.
    let old = c.settled_run("lea", "old-idp", "offboard");
    assert_eq!(
        (&old["status"], &old["attempts"], &old["last"]["code"]),
        (
            &serde_json::json!("failed"),
            &serde_json::json!(1),
            &serde_json::json!(401)
        ),
        "{old}"
    );
    assert!(
        old["last"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("search: HTTP 401"),
        "{old}"
    );
    // Neither token is anywhere the operator sees.
    let shown = c.shown_of_offboarding("lea");
    assert!(
        !shown.contains(TOKEN) && !shown.contains("stale-bearer"),
        "{shown}"
    );

    // A restore re-enables the account, as the connector asks.
    c.cli(&["offboard", "restore", "lea"]);
    let back = c.settled_run("lea", "idp", "restore");
    assert_eq!(back["status"], "ok", "{back}");
    assert!(idp.active(&lea));
    assert!(idp.active(&leah));

    // A leaver the identity provider does not know: failed attempts that say whom they
    // looked for, retried with backoff.
    c.token("zed");
    c.cli(&["offboard", "zed"]);
    let missing = wait_for("zed's run to record a failed attempt", DEADLINE, || {
        c.offboard_status("zed")["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["connector"] == "idp" && r["last"].is_object())
            .cloned()
    });
    assert_eq!(missing["last"]["code"], 404, "{missing}");
    assert_eq!(
        missing["last"]["detail"], "no SCIM user with userName eq \"zed@acme.example\"",
        "{missing}"
    );
}
