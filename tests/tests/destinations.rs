//! Where customer data goes, with real processes: a removable medium mounted while the agent
//! runs (a tmpfs under /media, mounted by the test as root) and a cloud-sync folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, wait_for, Agent, Collector};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// A tmpfs mounted under /media for the test's life: to the agent, a USB stick.
struct Stick {
    base: PathBuf,
    mount: PathBuf,
}

impl Stick {
    /// A stick mounted and taken on by `agent`, which follows the mount table: the stick
    /// becomes a watched place.
    fn taken_on(agent: &Agent, label: &str) -> Stick {
        let stick = Stick::mount(label);
        wait_for("the agent to take the stick on", DEADLINE, || {
            agent
                .log()
                .contains(&format!("mount={}", stick.mount.display()))
                .then_some(())
        });
        stick
    }

    fn mount(label: &str) -> Stick {
        assert_eq!(
            std::fs::metadata("/proc/self").unwrap().uid(),
            0,
            "mounting a removable medium needs root (CI runs as root)"
        );
        let base = PathBuf::from(format!("/media/holdfast-test-{}", rand::random::<u32>()));
        let mount = base.join(label);
        std::fs::create_dir_all(&mount).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", mount.display());
        Stick { base, mount }
    }
}

impl Drop for Stick {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn events_at(c: &Collector, path: &Path) -> Vec<serde_json::Value> {
    let p = path.display().to_string();
    c.events().into_iter().filter(|e| e["path"] == p).collect()
}

#[test]
fn an_export_copied_to_removable_media_is_a_critical_alert_naming_the_medium() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ana", "");
    let stick = Stick::taken_on(&agent, "KINGSTON");
    let export = corpus::salesforce_contacts(5, 120);
    let on_stick = stick.mount.join("q3-clients.csv");
    std::fs::write(&on_stick, &export).unwrap();
    let prices = stick.mount.join("prices.csv");
    std::fs::write(&prices, corpus::price_list(2, 100)).unwrap();
    let alert = wait_for("the removable-media alert", DEADLINE, || {
        collector.alert_where("path", &on_stick.display().to_string())
    });
    assert_eq!(alert["rule_id"], "exfil.removable-media");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["records"], 120);
    let ev = events_at(&collector, &on_stick);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let d = &ev[0]["destination"];
    assert_eq!(d["kind"], "removable", "{d}");
    assert_eq!(d["name"], "KINGSTON", "{d}");
    assert_eq!(d["mount"], stick.mount.display().to_string());
    assert!(d["device"].as_str().is_some_and(|s| s.contains(':')), "{d}");
    // The price list is stored, and raises nothing.
    let p = wait_for("the price list's event", DEADLINE, || {
        events_at(&collector, &prices).into_iter().next()
    });
    assert_eq!(p["records"], 0);
    assert!(!collector
        .alerts()
        .iter()
        .any(|a| a["path"] == prices.display().to_string()));
}

#[test]
fn an_export_dropped_into_a_cloud_sync_folder_alerts_and_a_price_list_does_not() {
    let (tmp, collector) = Collector::scratch("");
    let mut agent = Agent::enroll(tmp.path(), &collector, "ben", "");
    // The Dropbox folder exists before the agent starts: the policy's cloud folders that
    // exist are watched.
    let dropbox = agent.home().join("Dropbox");
    std::fs::create_dir_all(dropbox.join("Clients")).unwrap();
    agent.start();
    wait_for("the agent to watch Dropbox", DEADLINE, || {
        agent
            .log()
            .contains("watching a cloud-sync folder")
            .then_some(())
    });
    let export = dropbox.join("Clients/export.csv");
    std::fs::write(&export, corpus::salesforce_contacts(6, 90)).unwrap();
    let prices = dropbox.join("prices.csv");
    std::fs::write(&prices, corpus::price_list(3, 100)).unwrap();
    let alert = wait_for("the cloud alert", DEADLINE, || {
        collector.alert_where("path", &export.display().to_string())
    });
    assert_eq!(alert["rule_id"], "exfil.cloud-sync");
    assert_eq!(alert["records"], 90);
    let ev = events_at(&collector, &export);
    assert_eq!(ev[0]["destination"]["kind"], "cloud");
    assert_eq!(ev[0]["destination"]["name"], "Dropbox");
    wait_for("the price list's event", DEADLINE, || {
        events_at(&collector, &prices).into_iter().next()
    });
    assert!(!collector
        .alerts()
        .iter()
        .any(|a| a["path"] == prices.display().to_string()));
    // OneDrive installed while the agent runs: its folder is taken on too.
    let onedrive = agent.home().join("OneDrive");
    std::fs::create_dir_all(&onedrive).unwrap();
    wait_for("the agent to watch OneDrive", DEADLINE, || {
        agent.log().contains("service=OneDrive").then_some(())
    });
    let later = onedrive.join("handover.csv");
    std::fs::write(&later, corpus::salesforce_contacts(9, 70)).unwrap();
    let alert = wait_for("the OneDrive alert", DEADLINE, || {
        collector.alert_where("path", &later.display().to_string())
    });
    assert_eq!(alert["rule_id"], "exfil.cloud-sync");
    assert_eq!(
        events_at(&collector, &later)[0]["destination"]["name"],
        "OneDrive"
    );
}

#[test]
fn a_renamed_and_zipped_export_on_a_stick_links_back_to_the_original_export() {
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ana", "");
    let stick = Stick::taken_on(&agent, "SANDISK");
    let export = corpus::salesforce_contacts(8, 150);
    let original = agent.watched.join("report1700000000000.csv");
    std::fs::write(&original, &export).unwrap();
    wait_for("the export", DEADLINE, || {
        events_at(&collector, &original).into_iter().next()
    });
    // Renamed, then zipped (under another name), then the zip copied to the stick as photos.
    let renamed = agent.watched.join("q3-review.csv");
    std::fs::rename(&original, &renamed).unwrap();
    wait_for("the rename", DEADLINE, || {
        events_at(&collector, &renamed).into_iter().next()
    });
    let zipped = agent.watched.join("q3.zip");
    std::fs::write(&zipped, corpus::zipped("q3-review.csv", &export)).unwrap();
    wait_for("the zip", DEADLINE, || {
        events_at(&collector, &zipped).into_iter().next()
    });
    let on_stick = stick.mount.join("holiday-photos.zip");
    std::fs::copy(&zipped, &on_stick).unwrap();
    // One story, one alert: export → rename → zip → stick within the hour is a single
    // critical sequence alert; the steps' own alerts are merged into it.
    let alert = wait_for("the sequence alert", DEADLINE, || {
        collector.alert_where("rule_id", "holdfast.exfil_sequence")
    });
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["path"], on_stick.display().to_string());
    assert_eq!(alert["records"], 150);
    let story = alert["detail"].as_str().unwrap();
    for step in [
        "exported as report1700000000000.csv",
        "renamed to q3-review.csv",
        "zipped into q3.zip",
        "holiday-photos.zip onto removable SANDISK",
    ] {
        assert!(story.contains(step), "{story:?} lacks {step:?}");
    }
    // (Only this test's places: the other tests' sticks are mounted on this machine too, and
    // every agent watches every removable medium.)
    let ours = |a: &serde_json::Value| {
        a["path"].as_str().is_some_and(|p| {
            p.starts_with(&agent.watched.display().to_string())
                || p.starts_with(&stick.mount.display().to_string())
        })
    };
    let all: Vec<serde_json::Value> = collector.alerts().into_iter().filter(ours).collect();
    let open: Vec<&serde_json::Value> = all
        .iter()
        .filter(|a| a["status"] == "new" || a["status"] == "triaged")
        .collect();
    assert_eq!(open.len(), 1, "one open alert: {all:#?}");
    let merged: Vec<&str> = all
        .iter()
        .filter(|a| a["status"] == "merged")
        .map(|a| a["rule_id"].as_str().unwrap())
        .collect();
    assert!(
        merged.contains(&"exfil.removable-media") && merged.contains(&"exfil.archive"),
        "{merged:?}"
    );
    // The chain: the stick's zip ← the zip made in Downloads ← the original export.
    let api = holdfast_tests::http::Client::new(&collector.url(""))
        .bearer(&collector.api_token("soc", "analyst"));
    let d = api.get(&format!("/api/v1/alerts/{}", alert["id"])).json();
    let chain: Vec<(String, String)> = d["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["origin"]["via"].as_str().unwrap_or("first").to_string(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            (zipped.display().to_string(), "archive".to_string()),
            (renamed.display().to_string(), "copy".to_string()),
            (original.display().to_string(), "first".to_string()),
        ],
        "{d}"
    );
    let ev = events_at(&collector, &on_stick);
    assert_eq!(ev[0]["origin"]["path"], zipped.display().to_string());
    assert_eq!(ev[0]["origin"]["via"], "copy");
    let rn = events_at(&collector, &renamed);
    assert_eq!(rn[0]["origin"]["path"], original.display().to_string());
}

/// The lineage memory outlives the agent: a copy made after a restart (a reboot, an update)
/// still links back to the export it came from.
#[test]
fn a_copy_made_after_an_agent_restart_links_back_to_the_export() {
    let (_tmp, collector, mut agent) = holdfast_tests::scene("", "dan", "");
    let original = agent.watched.join("contacts-export.csv");
    std::fs::write(&original, corpus::salesforce_contacts(12, 80)).unwrap();
    let first = wait_for("the export's event", DEADLINE, || {
        events_at(&collector, &original).into_iter().next()
    });
    agent.stop();
    agent.start();
    let copy = agent.watched.join("for-my-next-job.csv");
    std::fs::copy(&original, &copy).unwrap();
    let ev = wait_for("the copy's event", DEADLINE, || {
        events_at(&collector, &copy).into_iter().next()
    });
    assert_eq!(ev["origin"]["path"], original.display().to_string(), "{ev}");
    assert_eq!(ev["origin"]["via"], "copy", "{ev}");
    assert_eq!(ev["origin"]["seq"], first["seq"], "{ev}");
}
