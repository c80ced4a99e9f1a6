//! Printing with the real programs: a private cupsd with a cups-pdf queue, `lp` run by an
//! unprivileged user, and the agent (fanotify, as root in CI) reading each job from the
//! spool as CUPS writes it. A CRM export printed is one alert naming the printer, the user
//! and the pages, linked to the export by its content; a price list printed is none; a
//! customer file the agent never saw is still classified from the spooled job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::cups::Cups;
use holdfast_tests::{corpus, root_or_skip, run_as_nobody, wait_for, wait_for_or};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

/// Prints `file` on `queue` as `nobody`, and returns the request id `lp` printed.
fn lp_as_nobody(cups: &Cups, queue: &str, file: &Path) -> String {
    let mut lp = cups.client("lp");
    lp.args(["-d", queue]).arg(file);
    run_as_nobody(lp, || cups.log())
}

#[test]
fn a_printed_export_is_one_alert_naming_printer_user_and_pages_and_a_price_list_is_none() {
    if !root_or_skip() {
        return;
    }
    assert!(
        Cups::available() || std::env::var_os("CI").is_none(),
        "CI installs cups and printer-driver-cups-pdf"
    );
    if !Cups::available() {
        eprintln!("skipped: no cupsd or cups-pdf here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // `nobody` reads what it prints: the folders on the way are open to it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cups = Cups::start(&tmp.path().join("cups"), "office-pdf");
    let (_, c) = ((), holdfast_tests::Collector::start_with(tmp.path(), ""));
    let mut a = holdfast_tests::Agent::started(
        tmp.path(),
        &c,
        "ivy",
        &format!(
            "heartbeat_ms = 300\nprint_spool = {:?}",
            cups.spool.display().to_string()
        ),
    );
    let reads = a.status()["reads"].as_str().unwrap_or_default().to_string();
    assert!(
        reads.contains(&format!("print jobs: read from {}", cups.spool.display())),
        "{reads}"
    );
    for d in [a.home(), a.watched.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (export, prices) = a.export_and_price_list(&c, 21);
    let export_s = export.display().to_string();
    let job = lp_as_nobody(&cups, "office-pdf", &export);
    assert!(job.contains("office-pdf-"), "{job}");
    lp_as_nobody(&cups, "office-pdf", &prices);
    let alert = wait_for_or(
        "the print alert",
        DEADLINE,
        || c.alert_where("rule_id", "exfil.print"),
        || format!("agent:\n{}\ncups:\n{}", a.log(), cups.log()),
    );
    assert_eq!(alert["path"], export_s.as_str(), "{alert}");
    assert_eq!(alert["severity"], "high", "{alert}");
    let printed = c
        .events()
        .into_iter()
        .find(|e| e["destination"]["kind"] == "print")
        .unwrap();
    assert_eq!(printed["action"], "opened", "{printed}");
    assert_eq!(printed["path"], export_s.as_str(), "{printed}");
    assert_eq!(printed["origin"]["path"], export_s.as_str(), "{printed}");
    assert_eq!(printed["records"], 200, "{printed}");
    let dest = &printed["destination"];
    assert_eq!(dest["name"], "office-pdf", "{printed}");
    assert_eq!(dest["user"], "nobody", "{printed}");
    // 200 rows of text, as CUPS's filters lay them out, are a few pages; CUPS counted them.
    let pages = dest["pages"].as_u64().unwrap_or(0);
    assert!(
        (2..=20).contains(&pages),
        "pages {pages}: {printed}\n{}",
        cups.completed()
    );
    // The price list was printed too (CUPS says so) but is no event and no alert.
    wait_for("both jobs completed", DEADLINE, || {
        (cups.completed().lines().count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.paths_sent_to("print"),
        std::slice::from_ref(&export_s),
        "one print event, the export's"
    );
    // A customer file the agent never saw (outside the watched folders) is classified from
    // the spooled job itself, and named as CUPS was told.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unseen = elsewhere.join("key-accounts.csv");
    std::fs::write(&unseen, corpus::salesforce_contacts(22, 120)).unwrap();
    lp_as_nobody(&cups, "office-pdf", &unseen);
    let second = wait_for_or(
        "the unseen file's print event",
        DEADLINE,
        || {
            c.events()
                .into_iter()
                .find(|e| e["destination"]["kind"] == "print" && e["path"] != export_s.as_str())
        },
        || format!("agent:\n{}\ncups:\n{}", a.log(), cups.log()),
    );
    assert_eq!(second["path"], "key-accounts.csv", "{second}");
    assert_eq!(second["records"], 120, "{second}");
    assert!(second["origin"].is_null(), "{second}");
    // Risk counts the print jobs.
    let ivy = c.user("ivy");
    assert!(
        ivy["signals"]
            .to_string()
            .contains("2 print job(s) of customer records"),
        "{ivy}"
    );
    a.stop();
}
