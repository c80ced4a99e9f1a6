//! Uploads with the real programs: a headless Chromium (WebDriver) uploads a CRM export
//! through a local HTTP form, and the agent (fanotify, as root in CI) reports one upload
//! alert naming Chromium and the file, and again after the agent restarts; the same browser
//! uploading a price list, and reading its own profile and cache, raises nothing. An export
//! zipped and then uploaded is one exfiltration story, and risk counts the upload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::browser::Browser;
use holdfast_tests::hook::Hook;
use holdfast_tests::{corpus, root_or_skip, wait_for, Agent, Collector};
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

/// The upload page a webmail or a personal cloud would show, reduced to its form.
const FORM: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Upload</title></head>
<body><form method="post" action="/upload" enctype="multipart/form-data">
<input type="file" name="attachment" id="file"><button id="send" type="submit">Send</button>
</form></body></html>"#;

/// A collector and a running agent of `user`, as root (fanotify); `None` when not root.
fn laptop(user: &str) -> Option<(tempfile::TempDir, Collector, Agent)> {
    root_or_skip().then(|| holdfast_tests::scene("", user, "heartbeat_ms = 300"))
}

/// Uploads `file` through the form with the browser, and waits until the form has it.
fn upload_with(b: &Browser, form: &Hook, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let posted = || {
        form.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _, body)| {
                line.starts_with("POST /upload")
                    && String::from_utf8_lossy(body).contains(&format!("filename=\"{name}\""))
            })
            .count()
    };
    let before = posted();
    b.goto(&format!("http://127.0.0.1:{}/", form.port));
    let input = b.find("#file");
    b.type_into(&input, &file.display().to_string());
    b.click(&b.find("#send"));
    // The form got the file: the browser read it.
    wait_for(&format!("the form to receive {name}"), DEADLINE, || {
        (posted() > before).then_some(())
    });
}

#[test]
fn a_browser_uploading_an_export_is_one_alert_naming_it_and_a_price_list_is_none() {
    let Some((tmp, c, mut a)) = laptop("ivy") else {
        return;
    };
    // The status says what is watched for: the default pack's thirteen apps (twelve, and obexd).
    let reads = a.status()["reads"].as_str().unwrap_or_default().to_string();
    assert!(
        reads.contains("uploads: customer files read by the policy's 13 app(s)"),
        "{reads}"
    );
    // Both classified first: the export is a customer file the agent now marks for reads.
    let (export, prices) = a.export_and_price_list(&c, 7);
    let export_s = export.display().to_string();
    let form = Hook::start(vec![200], FORM);
    let b = Browser::start(&tmp.path().join("shots"));
    for file in [&export, &prices] {
        upload_with(&b, &form, file);
    }
    let alert = wait_for("the upload alert", DEADLINE, || {
        c.alert_where("rule_id", "exfil.upload")
    });
    assert_eq!(alert["path"], export_s.as_str(), "{alert}");
    assert_eq!(alert["severity"], "high", "{alert}");
    // The upload event names the app, its process and the records it carried off.
    let upload = wait_for("the upload event", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["destination"]["kind"] == "upload")
    });
    assert_eq!(upload["action"], "opened", "{upload}");
    assert_eq!(upload["path"], export_s.as_str(), "{upload}");
    assert_eq!(upload["destination"]["name"], "Chromium", "{upload}");
    assert_eq!(upload["destination"]["app_kind"], "browser", "{upload}");
    assert_eq!(
        upload["process"]["exe"], "/usr/lib/chromium/chromium",
        "{upload}"
    );
    assert_eq!(upload["records"], 200, "{upload}");
    // Its origin is the export's own report: the story can follow it back.
    assert_eq!(upload["origin"]["path"], export_s.as_str(), "{upload}");
    // A little later: still one upload alert, and no upload of anything but the export (not
    // the price list, not the browser's profile or cache files).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.paths_sent_to("upload"),
        std::slice::from_ref(&export_s),
        "one upload event, the export's"
    );
    let upload_alerts = c
        .alerts()
        .into_iter()
        .filter(|x| x["rule_id"] == "exfil.upload")
        .count();
    assert_eq!(upload_alerts, 1);
    // After a restart the agent still knows the export for a customer file (its lineage
    // memory marks it again): the next upload of it is seen too.
    a.stop();
    a.start();
    upload_with(&b, &form, &export);
    wait_for("a second upload event after the restart", DEADLINE, || {
        let n = c
            .events()
            .into_iter()
            .filter(|e| e["destination"]["kind"] == "upload" && e["path"] == export_s.as_str())
            .count();
        (n == 2).then_some(())
    });
    a.stop();
}

#[test]
fn an_export_zipped_then_uploaded_is_one_exfiltration_story_and_counts_in_risk() {
    let Some((tmp, c, mut a)) = laptop("jo") else {
        return;
    };
    let export = a.watched.join("hubspot-contacts-export.csv");
    std::fs::write(&export, corpus::salesforce_contacts(11, 300)).unwrap();
    let export_s = export.display().to_string();
    wait_for("the export reported", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["path"] == export_s.as_str())
    });
    let zipped = a.watched.join("notes.zip");
    std::fs::write(
        &zipped,
        corpus::zipped("contacts.csv", &std::fs::read(&export).unwrap()),
    )
    .unwrap();
    let zipped_s = zipped.display().to_string();
    wait_for("the zip reported", DEADLINE, || {
        c.events()
            .into_iter()
            .find(|e| e["path"] == zipped_s.as_str())
    });
    let form = Hook::start(vec![200], FORM);
    let b = Browser::start(&tmp.path().join("shots"));
    upload_with(&b, &form, &zipped);
    let story = wait_for("the exfiltration story", DEADLINE, || {
        c.alert_where("rule_id", "holdfast.exfil_sequence")
    });
    assert_eq!(story["severity"], "critical", "{story}");
    let detail = story["detail"].as_str().unwrap();
    assert!(
        detail.contains("exported as hubspot-contacts-export.csv"),
        "{detail}"
    );
    assert!(detail.contains("zipped into notes.zip"), "{detail}");
    assert!(
        detail.contains("notes.zip uploaded by Chromium (browser)"),
        "{detail}"
    );
    // Risk names the upload among its signals.
    let jo = c.user("jo");
    let signals = jo["signals"].to_string();
    assert!(
        signals.contains("1 upload(s) of customer files"),
        "{signals}"
    );
    a.stop();
}
