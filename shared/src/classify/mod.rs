//! Content classification: file-type detection and the streaming table classifier.
//!
//! Callers feed bytes in chunks of any size; memory stays bounded whatever the input
//! (fields are capped, nothing else is buffered). The result is a [`ContentSummary`]:
//! counts only, never content.

mod identifiers;
mod table;

pub use identifiers::{is_email, is_phone};
pub use table::TableClassifier;

use crate::event::ContentSummary;

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

/// A classifier for one file: feed it the file's bytes, then take the summary.
#[derive(Debug)]
pub struct Classifier {
    file_type: &'static str,
    table: Option<TableClassifier>,
    budget: u64,
    seen: u64,
    truncated: bool,
}

impl Classifier {
    /// A classifier for a file of the given detected type, reading at most `budget` bytes.
    pub fn new(file_type: &'static str, budget: u64) -> Classifier {
        let table = match file_type {
            "csv" => Some(TableClassifier::new(None)),
            "tsv" => Some(TableClassifier::new(Some(b'\t'))),
            "text" => Some(TableClassifier::new(None)),
            _ => None,
        };
        Classifier {
            file_type,
            table,
            budget,
            seen: 0,
            truncated: false,
        }
    }

    /// True once the classifier wants no more bytes (budget spent or nothing to classify).
    pub fn is_done(&self) -> bool {
        self.table.is_none() || self.truncated
    }

    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        let Some(table) = self.table.as_mut() else {
            return;
        };
        let room = self.budget.saturating_sub(self.seen);
        let take = (chunk.len() as u64).min(room) as usize;
        table.feed(&chunk[..take]);
        self.seen += take as u64;
        if take < chunk.len() {
            self.truncated = true;
        }
    }

    /// The summary of everything fed.
    pub fn finish(self) -> ContentSummary {
        let mut summary = ContentSummary {
            file_type: self.file_type.to_string(),
            truncated: self.truncated,
            ..ContentSummary::default()
        };
        if let Some(table) = self.table {
            let t = table.finish();
            summary.records = t.records;
            for (name, n) in [("email", t.emails), ("phone", t.phones)] {
                if n > 0 {
                    summary.findings.insert(name.to_string(), n);
                }
            }
        }
        summary
    }
}

/// Classifies a whole in-memory buffer (tests and small inputs).
pub fn classify_bytes(file_name: &str, bytes: &[u8]) -> ContentSummary {
    let ty = detect_type(file_name, &bytes[..bytes.len().min(8192)]);
    let mut c = Classifier::new(ty, DEFAULT_BYTE_BUDGET);
    c.feed(bytes);
    c.finish()
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
