//! Content classification: file-type detection (content first, and a finding when the
//! extension lies), text decoding, readers for each format, identifier validators, and the
//! customer-table verdict.
//!
//! Callers feed bytes in chunks of any size; memory stays bounded whatever the input
//! (fields are capped, nesting is capped, nothing else is buffered). The result is a
//! [`ContentSummary`]: counts and column roles, never content.

pub mod archive;
mod decode;
mod json;
pub mod limits;
mod matching;
pub mod record;
pub mod roles;
mod table;
mod vcard;
pub mod xls;
pub mod xlsx;

pub use decode::{Encoding, TextDecoder};
pub use matching::{Batch, Counts, Tallier, Tally};
pub use record::{RecordStats, Records};
pub use table::{RowSink, TableReader, MAX_FIELD};

use crate::event::ContentSummary;
use std::collections::BTreeMap;

/// File types the classifiers and policies know. Policy files are validated against this list.
pub const FILE_TYPES: &[&str] = &[
    "csv", "tsv", "text", "json", "vcf", "xlsx", "xls", "zip", "pdf", "binary", "empty",
];

/// How many bytes of one file the agent classifies by default before it stops and marks
/// the summary `truncated`.
pub const DEFAULT_BYTE_BUDGET: u64 = 512 * 1024 * 1024;

/// Detects a file type from its name and its first bytes. Content wins over the extension.
pub fn detect_type(file_name: &str, head: &[u8]) -> &'static str {
    if head.is_empty() {
        return "empty";
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return if ext_of(file_name) == "xlsx" {
            "xlsx"
        } else {
            "zip"
        };
    }
    if head.starts_with(b"%PDF-") {
        return "pdf";
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return "xls";
    }
    if looks_binary(head) {
        return "binary";
    }
    match ext_of(file_name).as_str() {
        "csv" => "csv",
        "tsv" | "tab" => "tsv",
        "json" | "ndjson" | "jsonl" => "json",
        "vcf" => "vcf",
        _ => "text",
    }
}

fn ext_of(file_name: &str) -> String {
    file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Text has no NUL bytes and few control characters; UTF-16 (with a BOM) counts as text.
fn looks_binary(head: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return false;
    }
    let sample = &head[..head.len().min(8192)];
    if sample.contains(&0) {
        return true;
    }
    let control = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    control * 20 > sample.len()
}

/// The type an extension promises, as the families [`detect_type`] can return.
fn promised(ext: &str) -> Option<&'static [&'static str]> {
    const TEXT: &[&str] = &["csv", "tsv", "text", "json", "vcf", "empty"];
    const ZIP: &[&str] = &["xlsx", "zip", "empty"];
    const OLE: &[&str] = &["xls", "empty"];
    const PDF: &[&str] = &["pdf", "empty"];
    const BINARY: &[&str] = &["binary", "empty"];
    Some(match ext {
        "csv" | "tsv" | "tab" | "txt" | "log" | "json" | "ndjson" | "jsonl" | "vcf" | "md" => TEXT,
        "xlsx" | "xlsm" | "docx" | "pptx" | "zip" | "jar" | "apk" | "odt" | "ods" => ZIP,
        "xls" | "doc" | "ppt" | "msg" => OLE,
        "pdf" => PDF,
        "jpg" | "jpeg" | "png" | "gif" | "bmp" | "webp" | "heic" | "mp3" | "mp4" | "mov"
        | "avi" | "mkv" | "wav" | "exe" | "dll" | "so" | "iso" | "dmg" | "ttf" | "woff" => BINARY,
        _ => return None,
    })
}

/// `Some("extension .jpg, content zip")` when the name promises another type than the
/// content has: a renamed export.
pub fn disguise(file_name: &str, detected: &str) -> Option<String> {
    let ext = ext_of(file_name);
    let promised = promised(&ext)?;
    (!promised.contains(&detected)).then(|| format!("extension .{ext}, content {detected}"))
}

enum Reader {
    Table(TableReader),
    Vcard(vcard::VcardReader),
    Json(json::JsonReader),
    None,
}

/// A classifier for one text-format file: feed it the file's bytes, then take the summary.
/// Archives and spreadsheets go through [`archive`] and [`xlsx`] instead (they need to seek).
pub struct Classifier {
    file_type: &'static str,
    decoder: TextDecoder,
    reader: Reader,
    records: Records,
    budget: u64,
    seen: u64,
    truncated: bool,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("file_type", &self.file_type)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// A classifier for a file of the given detected type, reading at most `budget` bytes.
    pub fn new(file_type: &'static str, budget: u64) -> Classifier {
        let (reader, records) = match file_type {
            "csv" | "text" => (Reader::Table(TableReader::new(None)), Records::table()),
            "tsv" => (
                Reader::Table(TableReader::new(Some(b'\t'))),
                Records::table(),
            ),
            "vcf" => (
                Reader::Vcard(vcard::VcardReader::new()),
                Records::contacts(),
            ),
            "json" => (Reader::Json(json::JsonReader::new()), Records::entries()),
            _ => (Reader::None, Records::table()),
        };
        Classifier {
            file_type,
            decoder: TextDecoder::new(),
            reader,
            records,
            budget,
            seen: 0,
            truncated: false,
        }
    }

    /// Also matches identifiers against the company's customers.
    pub fn with_edm(mut self, edm: Option<std::sync::Arc<crate::edm::Matcher>>) -> Classifier {
        let records = std::mem::replace(&mut self.records, Records::table());
        self.records = records.with_edm(edm);
        self
    }

    /// Also matches identifiers against the company's customers, looked up by `tally` (made
    /// for the same `edm`): a tally on another thread takes the lookups off this one.
    pub fn with_edm_tally(
        mut self,
        edm: std::sync::Arc<crate::edm::Matcher>,
        tally: Box<dyn Tally>,
    ) -> Classifier {
        let records = std::mem::replace(&mut self.records, Records::table());
        self.records = records.with_edm_tally(edm, tally);
        self
    }

    /// A classifier for the rest of this file from the line start at byte `from` on, reading
    /// it as this one would there (same type, encoding, delimiter, header and byte budget),
    /// with `tally` for its customer-set lookups: two threads can then read the two parts of
    /// a large table. `None` until the header is decided, and for what cannot be cut at a
    /// line end (JSON, vCard, encodings other than UTF-8).
    pub fn continuation(&self, from: u64, tally: Option<Box<dyn Tally>>) -> Option<Classifier> {
        let Reader::Table(table) = &self.reader else {
            return None;
        };
        let reader = table.from_line_start()?;
        let decoder = self.decoder.from_line_start()?;
        let records = self.records.continuation(tally)?;
        Some(Classifier {
            file_type: self.file_type,
            decoder,
            reader: Reader::Table(reader),
            records,
            budget: self.budget.saturating_sub(from),
            seen: 0,
            truncated: false,
        })
    }

    /// Whether the bytes fed so far, the last of them a line end, end a record outside
    /// quotes: where a [`Classifier::continuation`] may take over. When they do not (the line
    /// end is inside a quoted field), the continuation's reading is not this file's.
    pub fn at_record_end(&self) -> bool {
        matches!(&self.reader, Reader::Table(t) if t.at_record_end()) && !self.truncated
    }

    /// Takes over what a continuation read: the rest of the file, from where this one
    /// stopped (at a record end, [`Classifier::at_record_end`]).
    pub fn absorb(&mut self, mut rest: Classifier) {
        rest.flush();
        if let (Reader::Table(mine), Reader::Table(theirs)) = (&mut self.reader, &rest.reader) {
            mine.absorb(theirs);
        }
        self.seen += rest.seen;
        self.truncated |= rest.truncated;
        self.records.absorb(rest.records);
    }

    /// True once the classifier wants no more bytes (budget spent or nothing to classify).
    pub fn is_done(&self) -> bool {
        matches!(self.reader, Reader::None) || self.truncated
    }

    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.is_done() {
            return;
        }
        let room = self.budget.saturating_sub(self.seen);
        let take = (chunk.len() as u64).min(room) as usize;
        self.seen += take as u64;
        if take < chunk.len() {
            self.truncated = true;
        }
        let Classifier {
            decoder,
            reader,
            records,
            ..
        } = self;
        decoder.feed(&chunk[..take], &mut |text| {
            feed_reader(reader, text, records)
        });
    }

    /// The summary of everything fed.
    pub fn finish(self) -> ContentSummary {
        self.finish_explained().0
    }

    /// Decodes and reads what the decoder still holds, and ends the reader's last record.
    fn flush(&mut self) {
        let Classifier {
            decoder,
            reader,
            records,
            ..
        } = self;
        decoder.finish(&mut |text| feed_reader(reader, text, records));
        match reader {
            Reader::Table(t) => t.finish(records),
            Reader::Vcard(v) => v.finish(records),
            Reader::Json(j) => j.finish(records),
            Reader::None => {}
        }
    }

    /// The summary, and the record statistics behind it (for `scan --explain`).
    pub fn finish_explained(mut self) -> (ContentSummary, RecordStats) {
        self.flush();
        let long_fields = match &self.reader {
            Reader::Table(t) => t.long_fields(),
            _ => 0,
        };
        let has_reader = !matches!(self.reader, Reader::None);
        let stats = std::mem::replace(&mut self.records, Records::table()).finish();
        let mut summary = summarize(
            self.file_type,
            &stats,
            self.truncated,
            has_reader
                .then(|| self.decoder.encoding().map(|e| e.as_str().to_string()))
                .flatten(),
        );
        if long_fields > 0 {
            summary.findings.insert("long_field".into(), long_fields);
        }
        (summary, stats)
    }
}

fn feed_reader(reader: &mut Reader, text: &[u8], records: &mut Records) {
    match reader {
        Reader::Table(t) => t.feed(text, records),
        Reader::Vcard(v) => v.feed(text, records),
        Reader::Json(j) => j.feed(text, records),
        Reader::None => {}
    }
}

/// Builds the summary from record statistics.
pub fn summarize(
    file_type: &str,
    stats: &RecordStats,
    truncated: bool,
    encoding: Option<String>,
) -> ContentSummary {
    let mut findings = BTreeMap::new();
    for kind in crate::ident::IdKind::ALL {
        let n = stats.ids[kind as usize];
        if n > 0 {
            findings.insert(kind.as_str().to_string(), n);
        }
    }
    if stats.edm > 0 {
        findings.insert("edm".to_string(), stats.edm);
    }
    ContentSummary {
        file_type: file_type.to_string(),
        records: stats.records,
        findings,
        truncated,
        customer_table: stats.customer_table,
        columns: stats.roles.iter().map(|r| r.as_str().to_string()).collect(),
        encoding,
        disguised: None,
    }
}

/// Classifies a whole in-memory buffer (tests and small inputs).
pub fn classify_bytes(file_name: &str, bytes: &[u8]) -> ContentSummary {
    let ty = detect_type(file_name, &bytes[..bytes.len().min(8192)]);
    let mut c = Classifier::new(ty, DEFAULT_BYTE_BUDGET);
    c.feed(bytes);
    let mut s = c.finish();
    s.disguised = disguise(file_name, ty);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, content: &[u8], ty: &str, records: u64, emails: u64, phones: u64) {
        let s = classify_bytes(name, content);
        assert_eq!(s.file_type, ty, "{name}");
        assert_eq!(s.records, records, "records of {name}");
        assert_eq!(
            s.findings.get("email").copied().unwrap_or(0),
            emails,
            "{name}"
        );
        assert_eq!(
            s.findings.get("phone").copied().unwrap_or(0),
            phones,
            "{name}"
        );
    }

    #[test]
    fn detects_and_counts() {
        check(
            "contacts.csv",
            b"Name,Email,Phone\nAda,ada@example.com,(415) 555-0101\nBob,,+44 20 7946 0958\nCy,cy@x.io,\nDee,,\n",
            "csv",
            3,
            2,
            2,
        );
        let s = classify_bytes(
            "contacts.csv",
            b"Name,Email\nAda,ada@example.com\nBob,bob@example.com\n",
        );
        assert!(s.customer_table);
        assert_eq!(s.columns, ["name", "email"]);
        assert_eq!(s.encoding.as_deref(), Some("utf-8"));
        let gbk = encoding_rs::GBK
            .encode("客户名称,手机\n某某公司,13800138000\n某某贸易,13912345678\n")
            .0;
        let s = classify_bytes("导出.csv", &gbk);
        assert_eq!(
            (s.records, s.customer_table, s.encoding.as_deref()),
            (2, true, Some("gb18030"))
        );
        assert_eq!(
            classify_bytes("holiday.jpg", b"Name,Email\nAda,ada@example.com\n")
                .disguised
                .as_deref(),
            Some("extension .jpg, content text")
        );
        assert_eq!(
            classify_bytes("a.csv", b"PK\x03\x04").disguised.as_deref(),
            Some("extension .csv, content zip")
        );
        assert_eq!(classify_bytes("a.csv", b"x,y\n").disguised, None);
        assert_eq!(classify_bytes("noext", b"PK\x03\x04").disguised, None);
        check(
            "prices.csv",
            b"SKU,Product,Price,Updated\nA-100,Widget,12.99,2024-01-05\nA-101,Gadget,1299.00,2024-01-06\n",
            "csv",
            0,
            0,
            0,
        );
        check("x.csv", b"", "empty", 0, 0, 0);
        check("junk.csv", b"\x00\x01\x02binary\x00", "binary", 0, 0, 0);
        check("a.xlsx", b"PK\x03\x04rest", "xlsx", 0, 0, 0);
        check("a.csv", b"PK\x03\x04rest", "zip", 0, 0, 0);
        check("notes.txt", b"call me: ada@example.com\n", "text", 1, 1, 0);
        check(
            "contacts.vcf",
            b"BEGIN:VCARD\nFN:Ada\nEMAIL:ada@example.com\nEND:VCARD\n",
            "vcf",
            1,
            1,
            0,
        );
        check(
            "dump.json",
            br#"[{"name":"Ada","phone":"+1 415 555 0101"}]"#,
            "json",
            1,
            0,
            1,
        );
    }

    /// `text` read by one classifier, and by two: the first up to each line end, a
    /// continuation for the rest. Where the line end is a record's end the two readings
    /// agree; where it is inside a quoted field the first says so. Returns the seams taken.
    fn check_split(
        text: &[u8],
        edm: Option<std::sync::Arc<crate::edm::Matcher>>,
    ) -> (usize, RecordStats) {
        let whole = {
            let mut c = Classifier::new("csv", DEFAULT_BYTE_BUDGET).with_edm(edm.clone());
            c.feed(text);
            c.finish_explained()
        };
        let mut taken = 0;
        for seam in (0..text.len()).filter(|&i| text[i] == b'\n').map(|i| i + 1) {
            let mut first = Classifier::new("csv", DEFAULT_BYTE_BUDGET).with_edm(edm.clone());
            first.feed(&text[..seam]);
            let Some(mut rest) = first.continuation(seam as u64, None) else {
                continue;
            };
            if !first.at_record_end() {
                continue;
            }
            rest.feed(&text[seam..]);
            first.absorb(rest);
            assert_eq!(first.finish_explained(), whole, "cut after byte {seam}");
            taken += 1;
        }
        (taken, whole.1)
    }

    #[test]
    fn a_table_read_in_two_parts_counts_what_one_reading_counts() {
        // The encoding is decided after 16 KiB: seams come after that.
        let mut text = crate::testkit::contacts_csv(620).into_bytes();
        let seams = |t: &[u8]| t.iter().skip(16 * 1024).filter(|&&b| b == b'\n').count();
        let plain = seams(&text);
        assert!(plain > 10);
        let (taken, stats) = check_split(&text, None);
        assert_eq!((taken, stats.records), (plain, 620));
        // A quoted field spanning lines: the line end inside it is no seam. Rows wider than
        // the header, and a customer set whose counts add up.
        text.extend_from_slice(b"Ada,ada@example.com,\"two\nlines\"\nBob,bob@example.com,x\n");
        text.extend_from_slice(
            b"Cy,cy@x.io,extra@example.com,,+44 20 7946 0958\nDee,p7@example.com\n",
        );
        let mut b = crate::edm::EdmBuilder::new(b"k");
        for e in ["bob@example.com", "p3@example.com", "p610@example.com"] {
            assert!(b.add(crate::ident::IdKind::Email, e.as_bytes()));
        }
        let m = std::sync::Arc::new(b.finish().matcher());
        let (taken, stats) = check_split(&text, Some(m));
        assert_eq!(
            (taken, stats.records, stats.edm),
            (seams(&text) - 1, 624, 3)
        );
        // JSON cannot be cut at a line.
        let mut j = Classifier::new("json", DEFAULT_BYTE_BUDGET);
        j.feed(&[b"[{\"email\":\"a@b.co\"},\n".repeat(1000), b"{}]".to_vec()].concat());
        assert!(j.continuation(0, None).is_none());
    }

    #[test]
    fn budget_truncates() {
        let mut c = Classifier::new("csv", 10);
        c.feed(b"a@b.com\nc@d.com\ne@f.com\n");
        assert!(c.is_done());
        let s = c.finish();
        assert!(s.truncated);
        assert_eq!(s.records, 1);
    }
}
