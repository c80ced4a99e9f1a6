//! The policy language's unit tests: the default pack's rules, escalations, destinations,
//! apps and bulk reads, and the errors broken policies get.

use super::*;

fn summary(ty: &str, records: u64, emails: u64) -> ContentSummary {
    ContentSummary {
        file_type: ty.into(),
        records,
        findings: [("email".to_string(), emails)].into_iter().collect(),
        truncated: false,
        ..Default::default()
    }
}

fn check(set: &PolicySet, action: Action, path: &str, s: Option<ContentSummary>, want: &[&str]) {
    let got = set.evaluate(&Subject {
        action,
        path,
        summary: s.as_ref(),
        headers: &[],
        destination: None,
        origin_records: 0,
    });
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, want, "{action:?} {path}");
}

/// Header names as the classifier hands them to rules.
fn keys(headers: &[&str]) -> Vec<String> {
    headers
        .iter()
        .map(|h| crate::classify::record::header_key(h))
        .collect()
}

/// The one-line error `src`, as the policy file `p.toml`, is refused with.
fn refused(src: &str) -> String {
    match PolicySet::compile(&[("p.toml", src)], "/h") {
        Ok(_) => panic!("accepted: {src}"),
        Err(e) => e.to_string(),
    }
}

const RULES: &str = r#"
[[rule]]
id = "bulk"
severity = "high"
actions = ["created", "modified"]
file_types = ["csv"]
paths = ["~/Downloads/**"]
exclude_paths = ["**/cache/**"]
[rule.content]
min_records = 50
min_findings = { email = 10 }

[[rule]]
id = "any-delete"
severity = "low"
actions = ["deleted"]
"#;

#[test]
fn evaluates() {
    let set = PolicySet::compile(&[("t.toml", RULES)], "/home/ada").unwrap();
    let d = "/home/ada/Downloads/x.csv";
    check(
        &set,
        Action::Created,
        d,
        Some(summary("csv", 50, 10)),
        &["bulk"],
    );
    check(&set, Action::Created, d, Some(summary("csv", 49, 10)), &[]);
    check(&set, Action::Created, d, Some(summary("csv", 50, 9)), &[]);
    check(
        &set,
        Action::Created,
        d,
        Some(summary("tsv", 500, 500)),
        &[],
    );
    check(
        &set,
        Action::Renamed,
        d,
        Some(summary("csv", 500, 500)),
        &[],
    );
    check(&set, Action::Created, d, None, &[]);
    check(
        &set,
        Action::Created,
        "/home/bob/Downloads/x.csv",
        Some(summary("csv", 99, 99)),
        &[],
    );
    check(
        &set,
        Action::Created,
        "/home/ada/Downloads/cache/x.csv",
        Some(summary("csv", 99, 99)),
        &[],
    );
    check(&set, Action::Deleted, "/anywhere", None, &["any-delete"]);
}

#[test]
fn default_pack_compiles_and_flags_exports_only() {
    let set = PolicySet::default_pack("/home/ada").unwrap();
    assert!(!set.rules.is_empty());
    let export = ContentSummary {
        customer_table: true,
        ..summary("csv", 200, 200)
    };
    let roster = ContentSummary {
        customer_table: true,
        ..summary("csv", 5, 5)
    };
    let flags = |summary: &ContentSummary| {
        !set.evaluate(&Subject {
            action: Action::Created,
            path: "/home/ada/Downloads/contacts.csv",
            summary: Some(summary),
            headers: &[],
            destination: None,
            origin_records: 0,
        })
        .is_empty()
    };
    assert!(flags(&export));
    assert!(!flags(&roster));
    assert!(!flags(&summary("csv", 0, 0)));
}

/// What `scan --explain` says of a file a rule was made for but did not raise.
#[test]
fn a_rule_says_which_threshold_a_file_missed() {
    let set = PolicySet::default_pack("/home/u").unwrap();
    let missed = |id: &str, records: u64, table: bool| {
        let s = ContentSummary {
            customer_table: table,
            ..summary("csv", records, records)
        };
        set.rule(id).unwrap().missed(&Subject {
            action: Action::Created,
            path: "/home/u/Downloads/list.csv",
            summary: Some(&s),
            headers: &[],
            destination: None,
            origin_records: 0,
        })
    };
    let bulk = "crm-export.bulk-contacts";
    assert_eq!(missed(bulk, 9, true).as_deref(), Some("9 records < 50"));
    assert_eq!(
        missed(bulk, 300, false).as_deref(),
        Some("not a customer table")
    );
    assert_eq!(missed(bulk, 300, true), None, "it matched");
    // A rule made for another product's exports says nothing.
    assert_eq!(missed("crm-export.salesforce", 9, false), None);
}

/// One export names one CRM: a HubSpot export's "Contact owner" is also a Salesforce
/// header, but only the HubSpot rule speaks for it.
#[test]
fn a_hubspot_export_is_not_also_a_salesforce_one() {
    let set = PolicySet::default_pack("/home/u").unwrap();
    let s = ContentSummary {
        customer_table: true,
        ..summary("csv", 300, 300)
    };
    let rules = |headers: &[&str]| -> Vec<String> {
        let headers = keys(headers);
        set.evaluate(&Subject {
            action: Action::Created,
            path: "/home/u/Downloads/contacts.csv",
            summary: Some(&s),
            headers: &headers,
            destination: None,
            origin_records: 0,
        })
        .into_iter()
        .map(|m| m.id)
        .collect()
    };
    assert_eq!(
        rules(&[
            "Record ID",
            "First Name",
            "Email",
            "Contact owner",
            "Lifecycle Stage"
        ]),
        ["crm-export.hubspot"]
    );
    assert_eq!(
        rules(&[
            "First Name",
            "Last Name",
            "Email",
            "Contact Owner",
            "Mailing Street"
        ]),
        ["crm-export.salesforce"]
    );
    assert_eq!(
        rules(&[
            "Record Id",
            "First Name",
            "Email",
            "Contact Owner",
            "Created Time"
        ]),
        ["crm-export.zoho"]
    );
}

/// The default pack gives one alert per file, whose severity follows the content: a
/// recognised export names its CRM and is critical as a whole customer base or when it
/// holds real customers, wherever it is and whatever else would have matched.
#[test]
fn the_default_pack_gives_one_alert_per_file_at_the_contents_severity() {
    let set = PolicySet::default_pack("/home/u").unwrap();
    let check = |path: &str, dest: Option<&str>, records: u64, edm: u64, want: (&str, Severity)| {
        let mut s = ContentSummary {
            customer_table: true,
            ..summary("csv", records, records)
        };
        s.findings.insert("edm".into(), edm);
        let got: Vec<(String, Severity)> = set
            .evaluate(&Subject {
                action: Action::Created,
                path,
                summary: Some(&s),
                headers: &[],
                destination: dest,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| (m.id, m.severity))
            .collect();
        assert_eq!(
            got,
            [(want.0.to_string(), want.1)],
            "{path} {records} records, edm {edm}"
        );
    };
    let sf = "/home/u/Downloads/report1700000000000.csv";
    check(sf, None, 300, 0, ("crm-export.salesforce", Severity::High));
    check(
        sf,
        None,
        6000,
        0,
        ("crm-export.salesforce", Severity::Critical),
    );
    check(
        sf,
        None,
        300,
        25,
        ("crm-export.salesforce", Severity::Critical),
    );
    let any = "/home/u/Downloads/list.csv";
    check(
        any,
        None,
        300,
        0,
        ("crm-export.bulk-contacts", Severity::High),
    );
    check(
        any,
        None,
        6000,
        0,
        ("crm-export.mass-contacts", Severity::Critical),
    );
    check(
        any,
        None,
        300,
        25,
        ("customer-data.real-customers", Severity::Critical),
    );
    let cloud = "/home/u/Dropbox/report1700000000000.csv";
    check(
        cloud,
        Some("cloud"),
        300,
        0,
        ("exfil.cloud-sync", Severity::High),
    );
    check(
        cloud,
        Some("cloud"),
        6000,
        0,
        ("exfil.cloud-sync", Severity::Critical),
    );
    check(
        cloud,
        Some("cloud"),
        300,
        25,
        ("exfil.cloud-sync", Severity::Critical),
    );
    check(
        "/mnt/sales/list.csv",
        Some("network"),
        6000,
        0,
        ("exfil.network-share", Severity::Critical),
    );
    check(
        "/media/u/KINGSTON/list.csv",
        Some("removable"),
        300,
        0,
        ("exfil.removable-media", Severity::Critical),
    );
    // A recognised export hidden under another extension: the disguise's alert alone.
    let hidden = |records: u64, edm: u64| {
        let mut s = ContentSummary {
            customer_table: true,
            ..summary("text", records, records)
        };
        s.findings.insert("edm".into(), edm);
        s.findings.insert("disguised".into(), 1);
        set.evaluate(&Subject {
            action: Action::Created,
            path: "/home/u/Downloads/report1700000000000.jpg",
            summary: Some(&s),
            headers: &["accountowner".to_string()],
            destination: None,
            origin_records: 0,
        })
        .into_iter()
        .map(|m| (m.id, m.severity))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        hidden(300, 0),
        [("customer-data.disguised".to_string(), Severity::High)]
    );
    assert_eq!(
        hidden(300, 25),
        [("customer-data.disguised".to_string(), Severity::Critical)]
    );
}

#[test]
fn apps_are_known_by_executable_and_their_reads_of_customer_files_are_uploads() {
    let set = PolicySet::default_pack("/home/u").unwrap();
    let app = |exe: &str| set.app_of(exe).map(|a| (a.name.as_str(), a.kind.as_str()));
    for (exe, want) in [
        ("/usr/lib/chromium/chromium", Some(("Chromium", "browser"))),
        ("/opt/google/chrome/chrome", Some(("Chrome", "browser"))),
        (
            "/usr/lib/firefox-esr/firefox-esr",
            Some(("Firefox", "browser")),
        ),
        (
            "/usr/lib/thunderbird/thunderbird",
            Some(("Thunderbird", "mail")),
        ),
        (
            "/opt/apps/com.qq.weixin.work.deepin/files/WXWork/WXWork.exe",
            Some(("企业微信", "chat")),
        ),
        (
            "/snap/slack/127/usr/lib/slack/slack",
            Some(("Slack", "chat")),
        ),
        ("/usr/libexec/bluetooth/obexd", Some(("obexd", "bluetooth"))),
        // `*` stays within one folder name; other programs are not apps.
        ("/snap/slack/1/x/usr/lib/slack/slack", None),
        ("/usr/bin/cat", None),
        ("/usr/lib/libreoffice/program/soffice.bin", None),
    ] {
        assert_eq!(app(exe), want, "{exe}");
    }
    let eval = |action: Action, dest: Option<&str>, s: &ContentSummary| -> Vec<String> {
        set.evaluate(&Subject {
            action,
            path: "/home/u/Downloads/contacts.csv",
            summary: Some(s),
            headers: &[],
            destination: dest,
            origin_records: 0,
        })
        .into_iter()
        .map(|m| format!("{} {}", m.id, m.severity))
        .collect()
    };
    let contacts = summary("csv", 80, 80);
    assert_eq!(
        eval(Action::Opened, Some("upload"), &contacts),
        ["exfil.upload high"]
    );
    let many = summary("csv", 6000, 6000);
    assert_eq!(
        eval(Action::Opened, Some("upload"), &many),
        ["exfil.upload critical"]
    );
    // A price list, a handful of records, or a read that is no upload: nothing.
    assert!(eval(Action::Opened, Some("upload"), &summary("csv", 0, 0)).is_empty());
    assert!(eval(Action::Opened, Some("upload"), &summary("csv", 3, 3)).is_empty());
    assert!(eval(Action::Opened, None, &contacts).is_empty());
    // obexd's read is a file sent to a phone over Bluetooth: the phone rule, critical.
    assert_eq!(
        set.app_of("/usr/libexec/bluetooth/obexd")
            .map(|a| a.kind.destination()),
        Some("phone")
    );
    assert_eq!(
        eval(Action::Opened, Some("phone"), &contacts),
        ["exfil.phone critical"]
    );
    assert!(eval(Action::Opened, Some("phone"), &summary("csv", 3, 3)).is_empty());
    for (src, want) in [
        (
            "[[app]]\nname = \"x\"\nkind = \"fax\"\nexecutables = [\"/usr/bin/x\"]\n",
            "p.toml:3:8: app[0].kind: unknown kind `fax`, expected one of: browser, mail, chat, bluetooth",
        ),
        (
            "[[app]]\nname = \"x\"\nkind = \"chat\"\nexecutables = [\"x\"]\n",
            "p.toml:4:16: app[0].executables: `x`: an executable is an absolute path (`*` within one folder name, `**` across folders)",
        ),
        (
            "[[app]]\nname = \"x\"\nkind = \"chat\"\nexecutables = []\n",
            "p.toml:1:1: app[0]: needs a name and at least one executable",
        ),
    ] {
        assert_eq!(refused(src), want);
    }
}

#[test]
fn destinations_and_cloud_folders() {
    let set = PolicySet::default_pack("/home/u").unwrap();
    let eval = |path: &str, dest: Option<&str>, s: &ContentSummary| -> Vec<String> {
        set.evaluate(&Subject {
            action: Action::Created,
            path,
            summary: Some(s),
            headers: &[],
            destination: dest,
            origin_records: 0,
        })
        .into_iter()
        .map(|m| m.id)
        .collect()
    };
    let contacts = ContentSummary {
        customer_table: true,
        ..summary("csv", 80, 80)
    };
    let prices = summary("csv", 0, 0);
    // One alert per file, the destination's.
    assert_eq!(
        eval("/media/u/KINGSTON/x.csv", Some("removable"), &contacts),
        ["exfil.removable-media"]
    );
    assert_eq!(
        eval("/home/u/Dropbox/x.csv", Some("cloud"), &contacts),
        ["exfil.cloud-sync"]
    );
    assert_eq!(
        eval("/mnt/sales/x.csv", Some("network"), &contacts),
        ["exfil.network-share"]
    );
    assert_eq!(
        eval("/home/u/Downloads/x.csv", None, &contacts),
        ["crm-export.bulk-contacts"]
    );
    assert!(eval("/home/u/Dropbox/prices.csv", Some("cloud"), &prices).is_empty());
    let zip = ContentSummary {
        customer_table: true,
        ..summary("zip", 80, 80)
    };
    assert_eq!(
        eval("/home/u/Downloads/x.zip", None, &zip),
        ["exfil.archive"]
    );
    // Cloud folders, `*` within one folder name.
    assert_eq!(set.cloud_of("/home/u/Dropbox/a/b.csv"), Some("Dropbox"));
    assert_eq!(
        set.cloud_of("/home/u/Library/CloudStorage/OneDrive-Corp/b.csv"),
        Some("OneDrive")
    );
    assert_eq!(
        set.cloud_of("/home/u/Documents/WeChat Files/wxid_9/FileStorage/File/2026-11/客户.xlsx"),
        Some("WeChat")
    );
    assert_eq!(
        set.cloud_of("/home/u/BaiduNetdiskWorkspace/客户.csv"),
        Some("百度网盘")
    );
    assert_eq!(set.cloud_of("/home/u/Downloads/b.csv"), None);
    assert_eq!(set.cloud_of("/home/u/Dropboxx/b.csv"), None);
    let bad = "[[rule]]\nid = \"a\"\nseverity = \"low\"\ndestinations = [\"usb\"]\n";
    let err = refused(bad);
    assert_eq!(err, "p.toml:4:17: rule[0].destinations: unknown destination `usb`, expected one of: removable, cloud, network, upload, print, phone");
    let bad = "[[cloud]]\nname = \"x\"\nfolders = [\"~\"]\n";
    let err = refused(bad);
    assert!(err.contains("cloud[0].folders: `~` "), "{err}");
}

#[test]
fn a_rule_escalates_with_its_content_to_its_highest_tier_reached() {
    let src = "[[rule]]\nid = \"crm\"\nseverity = \"high\"\n[rule.content]\nmin_records = 50\n\
               [[rule.escalate]]\nseverity = \"critical\"\nmin_records = 5000\n\
               [[rule.escalate]]\nseverity = \"critical\"\nmin_findings = { edm = 20 }\n";
    let set = PolicySet::compile(&[("p.toml", src)], "/h").unwrap();
    let severity = |records: u64, edm: u64, origin_records: u64| {
        let mut s = summary("csv", records, records);
        s.findings.insert("edm".into(), edm);
        set.evaluate(&Subject {
            action: Action::Created,
            path: "/d/x.csv",
            summary: Some(&s),
            headers: &[],
            destination: None,
            origin_records,
        })
        .into_iter()
        .map(|m| (m.id, m.severity))
        .collect::<Vec<_>>()
    };
    let crm = |sev| vec![("crm".to_string(), sev)];
    assert_eq!(severity(49, 0, 0), vec![]);
    assert_eq!(severity(50, 0, 0), crm(Severity::High));
    assert_eq!(severity(4999, 19, 0), crm(Severity::High));
    assert_eq!(severity(5000, 0, 0), crm(Severity::Critical));
    assert_eq!(severity(60, 20, 0), crm(Severity::Critical));
    // A copy of a 6,000-record export is held to its origin's records.
    assert_eq!(severity(60, 0, 6000), crm(Severity::Critical));
    // Tiers are checked: thresholds needed, and only upwards, errors pointing at them.
    for (bad, want) in [
        (
            "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"critical\"\n",
            "p.toml:4:1: rule[0].escalate[0]: needs min_records or min_findings",
        ),
        (
            "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"medium\"\nmin_records = 5\n",
            "p.toml:5:12: rule[0].escalate[0].severity: `medium` is not above the rule's own `high`",
        ),
        (
            "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"critical\"\nmin_findings = { emd = 1 }\n",
            "p.toml:6:18: rule[0].escalate[0].min_findings: unknown classifier `emd`, expected one of: email, phone, edm, cn_id, card, disguised, zip_bomb, encrypted, nested_too_deep, nested_too_large, damaged_entry, damaged_part, undefined_entity, unreadable, cpu_limit, byte_limit",
        ),
    ] {
        assert_eq!(refused(bad), want);
    }
}

#[test]
fn recognise_supersede_and_customer_table() {
    let src = "[[rule]]\nid = \"generic\"\nseverity = \"high\"\n[rule.content]\nmin_records = 50\ncustomer_table = true\n\
               [[rule]]\nid = \"acme\"\nseverity = \"high\"\nsupersedes = [\"generic\"]\n[rule.recognise]\nfile_names = [\"ACME-*.csv\"]\nheaders_all = [\"Acme ID\", \"E-mail\"]\n[rule.content]\nmin_records = 50\n";
    let set = PolicySet::compile(&[("p.toml", src)], "/h").unwrap();
    let table = ContentSummary {
        customer_table: true,
        ..summary("csv", 80, 80)
    };
    let eval = |path: &str, headers: &[&str], s: &ContentSummary| -> Vec<String> {
        let keys = keys(headers);
        set.evaluate(&Subject {
            action: Action::Created,
            path,
            summary: Some(s),
            headers: &keys,
            destination: None,
            origin_records: 0,
        })
        .into_iter()
        .map(|m| m.id)
        .collect()
    };
    // By file name (case-insensitive), by the whole header set, or not at all.
    assert_eq!(eval("/d/acme-2024.csv", &[], &table), ["acme"]);
    assert_eq!(
        eval("/d/x.csv", &["acme_id", "email", "Name"], &table),
        ["acme"]
    );
    assert_eq!(eval("/d/x.csv", &["Acme ID"], &table), ["generic"]);
    // Not a customer table: the generic rule stays quiet; the recognised export does not.
    let plain = summary("csv", 80, 80);
    assert!(eval("/d/x.csv", &[], &plain).is_empty());
    assert_eq!(eval("/d/ACME-1.csv", &[], &plain), ["acme"]);
    let bad = "[[rule]]\nid = \"a\"\nseverity = \"low\"\nsupersedes = [\"nope\"]\n";
    let err = refused(bad);
    assert_eq!(
        err,
        "p.toml:4:15: rule[0].supersedes: no rule `nope` to supersede"
    );
    let empty = "[[rule]]\nid = \"a\"\nseverity = \"low\"\n[rule.recognise]\n";
    let err = refused(empty);
    assert!(
        err.contains("rule[0].recognise: needs file_names, headers_any or headers_all"),
        "{err}"
    );
}
