//! The web console in a real headless Chromium, against a real collector fed by a real agent:
//! log in, see the alert, triage from the keyboard, open an alert, add a note, resolve it,
//! and find all of it in the audit log. Screenshots land in target/test-artifacts/console.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::browser::Browser;
use holdfast_tests::{artifacts, corpus, wait_for};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn analyst_logs_in_triages_from_the_keyboard_resolves_with_a_note_and_sees_the_audit() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ana", "");
    // Two exports: the newer is the one at the top of the queue.
    let first = agent.watched.join("report1700000000000.csv");
    std::fs::write(&first, corpus::salesforce_contacts(7, 240)).unwrap();
    wait_for("the first alert", DEADLINE, || {
        (collector.alerts().len() == 1).then_some(())
    });
    let second = agent.watched.join("report1700000009999.csv");
    std::fs::write(&second, corpus::salesforce_contacts(8, 120)).unwrap();
    let alerts = wait_for("both alerts", DEADLINE, || {
        let a = collector.alerts();
        (a.len() == 2).then_some(a)
    });
    let id_of = |p: &std::path::Path| {
        alerts
            .iter()
            .find(|a| a["path"] == p.display().to_string())
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (first_id, second_id) = (id_of(&first), id_of(&second));
    let token = collector.api_token("soc-ana", "admin");

    let shots = artifacts("console");
    let b = Browser::start(&shots);

    // Log in.
    b.goto(&collector.url("/"));
    assert!(
        b.url().ends_with("/login"),
        "sent to the login page: {}",
        b.url()
    );
    b.screenshot("01-login");
    let input = b.find("#token");
    b.type_into(&input, &token);
    b.click(&b.find("form.login button[type=submit]"));
    let html = b.wait_for_text("matching</span>");
    assert!(html.contains("soc-ana (admin)"), "logged in as soc-ana");

    // The queue shows both alerts, most severe then newest first.
    let rows = b.find_all("#queue tbody tr");
    assert_eq!(rows.len(), 2, "two open alerts");
    assert_eq!(b.attr(&rows[0], "data-id"), second_id.to_string());
    assert!(b.text(&rows[0]).contains("report1700000009999.csv"));
    assert!(b.text(&rows[1]).contains("240"));
    b.screenshot("02-queue");

    // Two keystrokes triage: j selects the top alert, t triages it.
    b.press("j");
    wait_for(
        "the first row to be current",
        Duration::from_secs(5),
        || {
            b.attr_of("#queue tbody tr", "class")
                .filter(|c| c.contains("current"))
        },
    );
    b.press("t");
    wait_for("the keyboard triage to land", DEADLINE, || {
        collector
            .alerts()
            .iter()
            .any(|a| a["id"] == second_id && a["status"] == "triaged")
            .then_some(())
    });

    // Open the other alert from the keyboard: j, j, o (on the reloaded queue).
    b.wait_for_text("status-triaged");
    b.press("j");
    b.press("j");
    b.press("o");
    wait_for("the alert page", Duration::from_secs(10), || {
        b.url()
            .ends_with(&format!("/alerts/{first_id}"))
            .then_some(())
    });
    let records = wait_for("the alert page to load", Duration::from_secs(10), || {
        b.text_of("#records")
    });
    assert_eq!(records, "240");
    assert_eq!(b.text_of("#status").as_deref(), Some("new"));
    let html = b.source();
    assert!(html.contains("Where the file went"));
    assert!(html.contains(&first.display().to_string()));

    // A note, then resolve.
    let note = "Spoke to Ana's manager: export was for the Q3 review, not taken off-site.";
    b.type_into(&b.find("#note"), note);
    b.click(&b.find("#add-note"));
    let notes = wait_for("the note to show", Duration::from_secs(10), || {
        b.text_of("#notes").filter(|n| n.contains("Q3 review"))
    });
    assert!(notes.contains("api:soc-ana"), "{notes}");
    b.click(&b.find("#btn-resolved"));
    wait_for(
        "the status to show resolved",
        Duration::from_secs(10),
        || b.text_of("#status").filter(|s| s == "resolved"),
    );
    b.screenshot("03-alert-resolved");
    let stored = collector.alerts();
    let a = stored.iter().find(|a| a["id"] == first_id).unwrap();
    assert_eq!(a["status"], "resolved");

    // The audit log shows the login, the keyboard triage, the note and the resolution.
    b.goto(&collector.url("/audit"));
    let rows: Vec<String> = b
        .find_all("#audit tbody tr")
        .iter()
        .map(|r| b.text(r))
        .collect();
    let has = |action: &str, target: &str, detail: &str| {
        rows.iter().any(|r| {
            r.contains("api:soc-ana")
                && r.contains(action)
                && r.contains(target)
                && r.contains(detail)
        })
    };
    assert!(has("login", "soc-ana", "console session"), "{rows:#?}");
    assert!(
        has("alert.status", &format!("alert {second_id}"), "triaged"),
        "{rows:#?}"
    );
    assert!(
        has("alert.note", &format!("alert {first_id}"), "Q3 review"),
        "{rows:#?}"
    );
    assert!(
        has("alert.status", &format!("alert {first_id}"), "resolved"),
        "{rows:#?}"
    );
    b.screenshot("04-audit");

    // Users and devices pages render the same facts.
    b.goto(&collector.url("/users"));
    let html = b.wait_for_text("Offboard");
    assert!(html.contains(">ana<"), "ana listed");
    assert!(
        html.contains(r#"<th scope="col">Risk</th>"#) && html.contains("alerts in 30 days: "),
        "the users page shows each user's risk and why"
    );
    b.goto(&collector.url("/devices"));
    b.wait_for_text("health-ok");
    b.screenshot("05-devices");

    // IT offboards ana from the Users page (after a confirmation).
    b.goto(&collector.url("/users"));
    b.click(&b.find("form.offboard button"));
    b.accept_dialog();
    let html = b.wait_for_text("offboarded");
    assert!(
        !html.contains("class=\"inline offboard\""),
        "no second Offboard button"
    );
    b.screenshot("06-users-offboarded");
    let users = collector.users();
    assert_eq!(users[0]["state"], "offboarded", "{users:?}");
    for name in [
        "01-login",
        "02-queue",
        "03-alert-resolved",
        "04-audit",
        "05-devices",
        "06-users-offboarded",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.len() > 1000, "{name}.png is a real screenshot");
    }
    drop(agent);
}
