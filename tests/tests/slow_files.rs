//! One slow file never holds up the others, end to end: a 16 GiB and a 1 TiB sparse file and
//! three CPU-heavy workbooks land in Downloads, then a CRM export. The export is read and
//! alerted before any of them is done; the big files stop at the byte limit and the
//! workbooks at the CPU limit, each with a verdict that says so. (The latency figure, with
//! and without the slow files, is `tests/bench/slow.sh` in BENCHMARKS.md.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::{corpus, wait_for};
use std::io::Write;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(180);

/// A workbook that is legitimately expensive to read: 100,000 rows of numbers (about 25 MB
/// of sheet XML, well within the ratio limit).
fn heavy_workbook(seed: u64) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("xl/worksheets/sheet1.xml", o).unwrap();
    w.write_all(b"<worksheet><sheetData>").unwrap();
    let mut x = seed | 1;
    let mut row = String::new();
    for r in 1..=100_000u32 {
        row.clear();
        row.push_str(&format!("<row r=\"{r}\">"));
        for c in 0..8u8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            row.push_str(&format!(
                "<c r=\"{}{r}\"><v>{}</v></c>",
                (b'A' + c) as char,
                x % 1_000_000
            ));
        }
        row.push_str("</row>");
        w.write_all(row.as_bytes()).unwrap();
    }
    w.write_all(b"</sheetData></worksheet>").unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn an_export_behind_huge_and_slow_files_is_read_first() {
    // Reading stops at 4 GiB: hashing that much takes seconds, so the export (written after
    // the big files) is read well before them only if it has a lane of its own.
    let (_tmp, collector, agent) = holdfast_tests::scene("", "ada", "read_limit = \"4GiB\"");
    let d = agent.watched.clone();
    // Everything made before anything lands, so the files arrive within milliseconds.
    let books: Vec<Vec<u8>> = (0..3).map(heavy_workbook).collect();
    let export_body = corpus::salesforce_contacts(3, 200);
    for (name, len) in [("disk.img", 16u64 << 30), ("backup.vhd", 1 << 40)] {
        std::fs::File::create(d.join(name))
            .unwrap()
            .set_len(len)
            .unwrap();
    }
    for (i, book) in books.iter().enumerate() {
        std::fs::write(d.join(format!("pipeline-{i}.xlsx")), book).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let export = agent.watched.join("report1700000000000.csv");
    std::fs::write(&export, export_body).unwrap();
    let export = export.display().to_string();

    let events = wait_for("every file to be stored", DEADLINE, || {
        let ev = collector.events();
        let stored = |name: &str| {
            ev.iter()
                .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name)))
        };
        ([
            "disk.img",
            "backup.vhd",
            "pipeline-0.xlsx",
            "pipeline-1.xlsx",
            "pipeline-2.xlsx",
        ]
        .iter()
        .all(|n| stored(n))
            && stored("report1700000000000.csv"))
        .then_some(ev)
    });
    let seq_of = |name: &str| {
        events
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .and_then(|e| e["seq"].as_u64())
            .unwrap()
    };
    let export_seq = seq_of("report1700000000000.csv");
    for slow in ["disk.img", "backup.vhd"] {
        assert!(
            export_seq < seq_of(slow),
            "the export (seq {export_seq}) must be sealed before {slow} ({})",
            seq_of(slow)
        );
    }
    let find = |name: &str| {
        events
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap()
    };
    // The sparse files: their size as it is, read only up to a limit that the verdict
    // names (the byte limit, or the CPU limit on a slow build), no hash.
    for (name, len) in [("disk.img", 16u64 << 30), ("backup.vhd", 1 << 40)] {
        let e = find(name);
        assert_eq!(e["size"].as_u64(), Some(len), "{e}");
        assert!(e["sha256"].is_null(), "{e}");
        let f = &e["findings"];
        assert!(f["byte_limit"] == 1 || f["cpu_limit"] == 1, "{e}");
    }
    // The export raised its alert.
    assert!(collector
        .alerts()
        .iter()
        .any(|a| a["path"] == export.as_str() && a["rule_id"] == "crm-export.salesforce"));
}
