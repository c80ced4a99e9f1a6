//! Classification quality on a seeded, labelled corpus (exports in CSV/GBK/TSV/XLSX/XLS/VCF/
//! JSON/ZIP, English and Chinese; logs, price lists, source code, financial series, rosters),
//! and hostile inputs that must end in a finding or a clear error within bounded memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_agent::scan::scan_file;
use holdfast_tests::corpus;

#[test]
fn precision_and_recall_on_the_labelled_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = corpus::labelled(20_241_123);
    let (mut tp, mut fp, mut fn_, mut tn) = (0u32, 0u32, 0u32, 0u32);
    let mut wrong = Vec::new();
    let mut worst_count_error = 0.0f64;
    for s in &samples {
        let path = tmp.path().join(&s.name);
        std::fs::write(&path, &s.bytes).unwrap();
        let r = scan_file(&path, None).unwrap();
        let verdict = r.summary.customer_table && r.summary.records >= 50;
        match (verdict, s.positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
        if verdict != s.positive {
            wrong.push(format!(
                "{} ({}): records {} table {}",
                s.name, s.what, r.summary.records, r.summary.customer_table
            ));
        }
        if s.records > 0 {
            let err = (r.summary.records as f64 - s.records as f64).abs() / s.records as f64;
            if err > 0.01 {
                wrong.push(format!(
                    "{} ({}): records {} vs truth {}",
                    s.name, s.what, r.summary.records, s.records
                ));
            }
            worst_count_error = worst_count_error.max(err);
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp).max(1.0);
    let recall = f64::from(tp) / f64::from(tp + fn_).max(1.0);
    eprintln!(
        "{} samples: tp {tp} fp {fp} fn {fn_} tn {tn}; precision {precision:.4} recall {recall:.4}; worst record-count error {:.2} %",
        samples.len(),
        worst_count_error * 100.0
    );
    assert!(
        tp >= 100 && tn >= 100,
        "the corpus must exercise both sides"
    );
    assert!(precision >= 0.99 && recall >= 0.99, "misjudged: {wrong:#?}");
    assert!(worst_count_error <= 0.01, "record counts off: {wrong:#?}");
}

/// Scans one file with the real binary under a 128 MiB address-space limit: a reader that
/// buffered a file (or a bomb) would fail to allocate and the scan would not succeed.
fn scan_bounded(path: &std::path::Path) -> serde_json::Value {
    let bin = holdfast_tests::bin("holdfast-agent");
    let out = holdfast_tests::succeed(std::process::Command::new("sh").arg("-c").arg(format!(
        "ulimit -v 131072; exec '{}' scan --json '{}'",
        bin.display(),
        path.display()
    )));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn hostile_inputs_end_in_findings_within_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // A zip bomb: 512 MiB of zeros in well under a megabyte.
    let bomb = tmp.path().join("quarterly.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&bomb).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        w.start_file("customers.csv", opts).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..512 {
            std::io::Write::write_all(&mut w, &zeros).unwrap();
        }
        w.finish().unwrap();
    }
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let v = scan_bounded(&bomb);
    assert_eq!(v["findings"]["zip_bomb"], 1, "{v}");
    assert_eq!(v["truncated"], true);

    // A 4 GiB sparse file named like an export.
    let sparse = tmp.path().join("contacts.csv");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let v = scan_bounded(&sparse);
    assert_eq!(v["size"], 4u64 << 30);
    assert_eq!(v["file_type"], "binary");
    assert_eq!(v["findings"]["disguised"], 1, "{v}");

    // Binary junk named .csv.
    let junk = tmp.path().join("export.csv");
    let bytes: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&junk, bytes).unwrap();
    let v = scan_bounded(&junk);
    assert_eq!(
        (v["file_type"].as_str(), v["records"].as_u64()),
        (Some("binary"), Some(0))
    );
    assert_eq!(v["disguised"], "extension .csv, content binary");

    // A CSV whose second line is one 100 MB field, with a real row after it.
    let long = tmp.path().join("long.csv");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&long).unwrap());
        f.write_all(b"Name,Email\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b",\nAda,ada@example.com\n").unwrap();
    }
    let v = scan_bounded(&long);
    assert_eq!(v["findings"]["long_field"], 1, "{v}");
    assert_eq!(v["records"], 1);
}

/// Archives whose content cannot all be read raise the rule that says so, and an export
/// behind a padding entry or inside a large inner archive still raises its own: the
/// default pack, on files scanned as the agent scans them.
#[test]
fn archive_shapes_raise_the_rule_that_says_what_could_not_be_read() {
    use holdfast_shared::event::Action;
    use holdfast_shared::policy::{PolicySet, Subject};
    let zip_of = corpus::zip_of;
    let deflated = zip::CompressionMethod::Deflated;
    let stored = zip::CompressionMethod::Stored;
    let export = corpus::salesforce_contacts(5, 200);
    let mut deep = zip_of(&[("report1700000000000.csv", &export)], deflated);
    for i in 0..3 {
        deep = zip_of(&[(&format!("l{i}.zip"), &deep)], deflated);
    }
    // Password-protected: the entries' "encrypted" flag, as archivers write it.
    let mut locked = zip_of(&[("report1700000000000.csv", &export)], deflated);
    for i in 0..locked.len() - 10 {
        match &locked[i..i + 4] {
            b"PK\x03\x04" => locked[i + 6] |= 1,
            b"PK\x01\x02" => locked[i + 8] |= 1,
            _ => {}
        }
    }
    let noise = holdfast_shared::testkit::noise(33 << 20, 88_172_645_463_325_252);
    let big_inner = zip_of(
        &[("video.mp4", &noise), ("report1700000000000.csv", &export)],
        stored,
    );
    let big = zip_of(&[("backup.zip", &big_inner)], stored);
    let padded = zip_of(
        &[
            ("padding.bin", &vec![0u8; 64 << 20]),
            ("report1700000000000.csv", &export),
        ],
        deflated,
    );
    let set = PolicySet::default_pack("/home/u").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes, want) in [
        ("deep.zip", deep, vec!["archive.unreadable"]),
        ("locked.zip", locked, vec!["archive.encrypted"]),
        // An archive of customer records: the pack's archive rule.
        ("big.zip", big, vec!["exfil.archive"]),
        (
            "padded.zip",
            padded,
            vec!["archive.zip-bomb", "exfil.archive"],
        ),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let r = scan_file(&path, None).unwrap();
        let shown = path.display().to_string();
        let mut got: Vec<String> = set
            .evaluate(&Subject {
                action: Action::Created,
                path: &shown,
                summary: Some(&r.summary),
                headers: &r.headers,
                destination: None,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| m.id)
            .collect();
        got.sort();
        assert_eq!(got, want, "{name}: {:?}", r.summary);
    }
    // With `archive_depth = 4` the same four-deep archive is read through.
    let deeper = holdfast_agent::scan::ScanLimits {
        archive_depth: 4,
        ..Default::default()
    };
    let r =
        holdfast_agent::scan::scan_file_with(&tmp.path().join("deep.zip"), None, deeper).unwrap();
    assert_eq!(r.summary.records, 200, "{:?}", r.summary);
    assert_eq!(r.summary.findings.get("nested_too_deep"), None);
}
