//! Real export shapes end to end: the seeded shapes (`holdfast_tests::shapes`) in CSV, TSV,
//! XLSX, JSON and GBK go through `holdfast-agent scan --json`, which must give each file its
//! exact record count and verdict; the look-alikes must match no rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{json_lines, run, shapes};

/// Writes `files` (name, bytes) into `dir` and scans them: [`scan`].
fn scan_written<'a>(
    dir: &std::path::Path,
    files: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    scan(dir)
}

/// `scan --json` of every file in `dir`, by file name.
fn scan(dir: &std::path::Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = run(
        "holdfast-agent",
        &["scan", "--json", &dir.display().to_string()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .map(|v| {
            let name = std::path::Path::new(v["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, v)
        })
        .collect()
}

#[test]
fn every_shape_in_every_format_gives_its_exact_count_and_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let made = shapes::all(18, 240);
    let files = made.iter().map(|m| (m.name.as_str(), m.bytes.as_slice()));
    let got = scan_written(tmp.path(), files);
    let mut wrong = Vec::new();
    for m in &made {
        let v = &got[&m.name];
        let (records, table) = (v["records"].as_u64(), v["customer_table"].as_bool());
        if records != Some(m.records) || table != Some(m.customer_table) {
            wrong.push(format!(
                "{}: records {records:?} (want {}), customer table {table:?} (want {})",
                m.name, m.records, m.customer_table
            ));
        }
        // A customer table of 240 rows raises a rule; a look-alike raises none.
        let rules = v["rules"].as_array().map_or(0, Vec::len);
        if m.customer_table && m.records >= 50 && rules == 0 {
            wrong.push(format!(
                "{}: no rule for {} customer records",
                m.name, m.records
            ));
        }
        if !m.customer_table && rules > 0 {
            wrong.push(format!("{}: a look-alike matched {}", m.name, v["rules"]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} files wrong:\n{}",
        wrong.len(),
        made.len(),
        wrong.join("\n")
    );
    assert_eq!(made.len(), 7 * 5 + 4);
}

#[test]
fn look_alikes_stay_silent() {
    let tmp = tempfile::tempdir().unwrap();
    let files = shapes::look_alikes(18);
    let named = files.iter().map(|(n, b)| (n.as_str(), b.as_slice()));
    let got = scan_written(tmp.path(), named);
    assert_eq!(got.len(), files.len());
    for (name, v) in &got {
        assert_eq!(v["rules"].as_array().map(Vec::len), Some(0), "{name}: {v}");
    }
    // The ledger's order numbers are not phones, and the roster's nine people are too few.
    assert_eq!(
        got["order-ledger.csv"]["findings"]
            .get("phone")
            .and_then(|p| p.as_u64())
            .unwrap_or(0),
        0
    );
    assert_eq!(got["team-roster.csv"]["records"], 9);
    // `--explain` says which threshold it missed, and the ledger why it is no customer table.
    let explain = |name: &str| {
        let out = run(
            "holdfast-agent",
            &[
                "scan",
                "--explain",
                &tmp.path().join(name).display().to_string(),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let roster = explain("team-roster.csv");
    assert!(
        roster.contains("rule crm-export.bulk-contacts not raised: 9 records < 50"),
        "{roster}"
    );
    let ledger = explain("order-ledger.csv");
    assert!(
        ledger.contains("columns recognised: reference, date, amount"),
        "{ledger}"
    );
}

/// Each CRM's export, in its own file name and format and renamed, gives its exact count and
/// raises exactly one rule: the one naming that CRM (issue 18, item 2).
#[test]
fn every_crm_export_names_its_crm_once_with_its_exact_count() {
    let tmp = tempfile::tempdir().unwrap();
    let made = holdfast_tests::crm::exports(18, 120);
    let files = made.iter().map(|e| (e.name.as_str(), e.bytes.as_slice()));
    let got = scan_written(tmp.path(), files);
    let mut wrong = Vec::new();
    for e in &made {
        let v = &got[&e.name];
        let rules: Vec<&str> = v["rules"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
            .unwrap_or_default();
        if v["records"].as_u64() != Some(e.records) || rules != [e.rule] {
            wrong.push(format!(
                "{} ({}): records {} (want {}), rules {rules:?} (want [{}])",
                e.name, e.crm, v["records"], e.records, e.rule
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} exports wrong:\n{}",
        wrong.len(),
        made.len(),
        wrong.join("\n")
    );
    assert_eq!(made.len(), 40);
}

/// A customer master and an export of the same customers, each writing some numbers
/// nationally beside a country column and some internationally: every customer is found
/// (`edm import` and `scan --edm`, real binaries). Without the country column the national
/// numbers match nothing.
#[test]
fn national_phones_with_a_country_column_match_the_customer_set() {
    let (tmp, c) = holdfast_tests::Collector::scratch("");
    let fr = |i: usize| format!("01 42 68 {:02} {:02}", i / 10, i % 10);
    let fr_intl = |i: usize| format!("+33 1 42 68 {:02} {:02}", i / 10, i % 10);
    let uk = |i: usize| format!("020 7946 {i:04}");
    let uk_intl = |i: usize| format!("+44 20 7946 {i:04}");
    let mut master = String::from("Company,Phone,Country\n");
    for i in 0..30 {
        master.push_str(&format!("Client {i},{},France\n", fr(i)));
        master.push_str(&format!("Kunde {i},{},UK\n", uk_intl(i)));
    }
    std::fs::write(tmp.path().join("master.csv"), master).unwrap();
    let set = tmp.path().join("set.edm");
    c.cli(&[
        "edm",
        "import",
        &tmp.path().join("master.csv").display().to_string(),
        "--columns",
        "phone",
        "--out",
        &set.display().to_string(),
    ]);
    let export = |with_country: bool| {
        let mut text = String::from(if with_country {
            "Account Name,Phone,Billing Country\n"
        } else {
            "Account Name,Phone,Billing City\n"
        });
        for i in 0..30 {
            let (fr_place, uk_place) = if with_country {
                ("FR", "United Kingdom")
            } else {
                ("Paris", "London")
            };
            text.push_str(&format!("Client {i},{},{fr_place}\n", fr_intl(i)));
            text.push_str(&format!("Kunde {i},{},{uk_place}\n", uk(i)));
        }
        let name = format!("accounts-{with_country}.csv");
        std::fs::write(tmp.path().join(&name), text).unwrap();
        let out = holdfast_tests::run_ok(
            "holdfast-agent",
            &[
                "scan",
                "--json",
                "--edm",
                &set.display().to_string(),
                &tmp.path().join(&name).display().to_string(),
            ],
        );
        json_lines(&out)[0]["findings"]["edm"].as_u64()
    };
    assert_eq!(export(true), Some(60), "every customer, by country");
    assert_eq!(
        export(false),
        Some(30),
        "only the numbers written internationally"
    );
}
