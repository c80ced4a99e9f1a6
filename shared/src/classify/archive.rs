//! ZIP archives, nested ones included: every entry is classified as its own file and the
//! counts add up. Limits on depth, entry count, total uncompressed bytes and compression ratio
//! turn a zip bomb into a finding, never a hang or an allocation; an entry over a limit is
//! skipped and the entries after it are still read. What could not be read is a finding
//! (`encrypted`, `nested_too_deep`, `nested_too_large`, `damaged_entry`), each also counted
//! under [`UNREADABLE`] for the rules. Nested archives up to [`Limits::max_nested`] are
//! held in memory; larger ones are read as a stream of their entries. Pure over any
//! `Read + Seek`: the caller opens the file.

use super::limits::{Limits, CPU_LIMIT, UNREADABLE};
use super::{detect_type, disguise, record::RecordStats, Classifier};
use crate::edm::Matcher;
use crate::event::ContentSummary;
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek};
use std::sync::Arc;

/// Finding kinds that mean "a part could not be read".
const UNREADABLE_KINDS: [&str; 4] = [
    "encrypted",
    "nested_too_deep",
    "nested_too_large",
    "damaged_entry",
];

/// An entry, for `scan --explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryReport {
    pub name: String,
    pub summary: ContentSummary,
    /// Hex SHA-256 of the entry's bytes (for lineage on the device; never sent).
    pub sha256: String,
}

/// What classifying an archive found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub summary: ContentSummary,
    pub entries: Vec<EntryReport>,
}

/// Why an archive could not be read at all (a damaged entry inside is a finding instead).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The central directory is missing or damaged.
    #[error("not a readable ZIP archive: {0}")]
    Zip(#[from] zip::result::ZipError),
}

struct Walk {
    limits: Limits,
    edm: Option<Arc<Matcher>>,
    entries: u64,
    total: u64,
    findings: BTreeMap<String, u64>,
    report: ArchiveReport,
}

/// Classifies a ZIP archive and everything in it. `file_type` is the outer type (`zip`).
pub fn classify_zip<R: Read + Seek>(
    reader: R,
    file_type: &str,
    limits: Limits,
    edm: Option<Arc<Matcher>>,
) -> Result<ArchiveReport, ArchiveError> {
    let mut walk = Walk {
        limits,
        edm,
        entries: 0,
        total: 0,
        findings: BTreeMap::new(),
        report: ArchiveReport {
            summary: ContentSummary {
                file_type: file_type.to_string(),
                ..ContentSummary::default()
            },
            entries: Vec::new(),
        },
    };
    walk.archive(reader, "", 1)?;
    let mut report = walk.report;
    for (k, v) in walk.findings {
        *report.summary.findings.entry(k).or_insert(0) += v;
    }
    Ok(report)
}

impl Walk {
    fn finding(&mut self, kind: &str) {
        *self.findings.entry(kind.to_string()).or_insert(0) += 1;
        if UNREADABLE_KINDS.contains(&kind) {
            *self.findings.entry(UNREADABLE.to_string()).or_insert(0) += 1;
        }
    }

    /// Whether the cancel flag stopped the walk (noted once, as `cpu_limit`).
    fn stopped(&mut self) -> bool {
        if !self.limits.cancelled() {
            return false;
        }
        if !self.findings.contains_key(CPU_LIMIT) {
            self.findings.insert(CPU_LIMIT.into(), 1);
            self.report.summary.truncated = true;
        }
        true
    }

    /// A finding from one entry: a bomb entry is skipped (the archive is marked truncated)
    /// and the walk goes on, unless the whole archive's budget is spent. Returns whether
    /// to stop.
    fn outcome(&mut self, kind: Option<&'static str>) -> bool {
        let Some(kind) = kind else { return false };
        self.finding(kind);
        if kind == "zip_bomb" {
            self.report.summary.truncated = true;
        }
        self.total > self.limits.max_total
    }

    /// Whether another entry may be looked at: not cancelled, and under the entry limit
    /// (past it, the archive is a bomb).
    fn room_for_entry(&mut self) -> bool {
        if self.stopped() {
            return false;
        }
        if self.entries >= self.limits.max_entries {
            self.finding("zip_bomb");
            self.report.summary.truncated = true;
            return false;
        }
        true
    }

    /// Classifies one entry as opened, whichever way (a folder is skipped, an encrypted
    /// entry is a finding). Returns whether to stop the whole archive.
    fn opened<R: Read>(
        &mut self,
        entry: &mut zip::read::ZipFile<'_, R>,
        prefix: &str,
        depth: u32,
    ) -> bool {
        if entry.is_dir() {
            return false;
        }
        if entry.encrypted() {
            self.finding("encrypted");
            return false;
        }
        let name = format!("{prefix}{}", entry.name());
        let compressed = entry.compressed_size().max(1);
        let outcome = self.entry(entry, &name, compressed, depth);
        self.outcome(outcome)
    }

    /// The finding for an entry that cannot be read: `encrypted`, or else `otherwise`.
    fn unreadable(&mut self, e: &zip::result::ZipError, otherwise: &'static str) {
        match e {
            zip::result::ZipError::UnsupportedArchive(m) if encrypted_message(m) => {
                self.finding("encrypted")
            }
            _ => self.finding(otherwise),
        }
    }

    /// Reads a nested archive too large to hold as a stream of its entries (local headers
    /// in order; the central directory is never reached). An entry whose size the stream
    /// does not give (written with a data descriptor) ends the stream: `nested_too_large`.
    fn stream<R: Read>(&mut self, reader: &mut R, prefix: &str, depth: u32) {
        loop {
            if !self.room_for_entry() {
                return;
            }
            let mut entry = match zip::read::read_zipfile_from_stream(reader) {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => return self.unreadable(&e, "nested_too_large"),
            };
            self.entries += 1;
            if self.opened(&mut entry, prefix, depth) {
                return;
            }
            // What the entry did not read (a bomb skipped) is drained, bounded by its
            // compressed size, so the next local header is found.
            if std::io::copy(&mut entry, &mut std::io::sink()).is_err() {
                self.finding("damaged_entry");
                return;
            }
        }
    }

    fn archive<R: Read + Seek>(
        &mut self,
        reader: R,
        prefix: &str,
        depth: u32,
    ) -> Result<(), ArchiveError> {
        let mut zip = zip::ZipArchive::new(reader)?;
        for i in 0..zip.len() {
            if !self.room_for_entry() {
                return Ok(());
            }
            self.entries += 1;
            let mut entry = match zip.by_index(i) {
                Ok(e) => e,
                Err(e) => {
                    self.unreadable(&e, "damaged_entry");
                    continue;
                }
            };
            if self.opened(&mut entry, prefix, depth) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Classifies one entry; returns a finding kind when a limit or a fault stopped it.
    fn entry(
        &mut self,
        entry: &mut dyn Read,
        name: &str,
        compressed: u64,
        depth: u32,
    ) -> Option<&'static str> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut head: Vec<u8> = Vec::new();
        let mut read_here = 0u64;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        // The first chunk decides the type.
        let n = match read_some(entry, &mut buf) {
            Ok(n) => n,
            Err(_) => return Some("damaged_entry"),
        };
        head.extend_from_slice(&buf[..n]);
        let file_name = name.rsplit('/').next().unwrap_or(name);
        let ty = detect_type(file_name, &head);
        if let Some(d) = disguise(file_name, ty) {
            let _ = d;
            *self.findings.entry("disguised".into()).or_insert(0) += 1;
        }
        let nested = matches!(ty, "zip" | "xlsx" | "xls");
        let mut held: Vec<u8> = Vec::new();
        let mut classifier =
            (!nested).then(|| Classifier::new(ty, u64::MAX).with_edm(self.edm.clone()));
        let mut chunk_len = n;
        loop {
            if chunk_len == 0 {
                break;
            }
            read_here += chunk_len as u64;
            self.total += chunk_len as u64;
            if self.total > self.limits.max_total
                || (read_here > (1 << 20) && read_here / compressed > self.limits.max_ratio)
            {
                return Some("zip_bomb");
            }
            let chunk = if head.is_empty() {
                &buf[..chunk_len]
            } else {
                &head[..]
            };
            sha2::Digest::update(&mut hasher, chunk);
            if let Some(c) = classifier.as_mut() {
                c.feed(chunk);
            } else if (held.len() + chunk.len()) as u64 <= self.limits.max_nested {
                held.extend_from_slice(chunk);
            } else if ty == "zip" && depth < self.limits.max_depth {
                // Too large to hold: its entries as a stream, from what is held on.
                let mut rest = Cursor::new(std::mem::take(&mut held))
                    .chain(Cursor::new(chunk.to_vec()))
                    .chain(entry);
                self.stream(&mut rest, &format!("{name}!/"), depth + 1);
                return None;
            } else if depth >= self.limits.max_depth {
                return Some("nested_too_deep");
            } else {
                return Some("nested_too_large");
            }
            head.clear();
            if self.stopped() {
                return None;
            }
            chunk_len = match read_some(entry, &mut buf) {
                Ok(n) => n,
                Err(_) => return Some("damaged_entry"),
            };
        }
        let summary = match classifier {
            Some(c) => c.finish(),
            None if depth >= self.limits.max_depth => return Some("nested_too_deep"),
            None if ty == "xlsx" => {
                match super::xlsx::classify_xlsx(Cursor::new(held), self.limits, self.edm.clone()) {
                    Ok((s, _)) => s,
                    Err(_) => return Some("damaged_entry"),
                }
            }
            None if ty == "xls" => {
                match super::xls::classify_xls(Cursor::new(held), self.limits, self.edm.clone()) {
                    Ok((s, _)) => s,
                    Err(_) => return Some("damaged_entry"),
                }
            }
            None => {
                let inner = format!("{name}!/");
                return match self.archive(Cursor::new(held), &inner, depth + 1) {
                    Ok(()) => None,
                    Err(_) => Some("damaged_entry"),
                };
            }
        };
        self.add(name, summary, hex::encode(sha2::Digest::finalize(hasher)));
        None
    }

    fn add(&mut self, name: &str, s: ContentSummary, sha256: String) {
        let total = &mut self.report.summary;
        total.records += s.records;
        for (k, v) in &s.findings {
            *total.findings.entry(k.clone()).or_insert(0) += v;
        }
        total.customer_table |= s.customer_table;
        for c in &s.columns {
            if !total.columns.contains(c) {
                total.columns.push(c.clone());
            }
        }
        if self.report.entries.len() < 1000 {
            self.report.entries.push(EntryReport {
                name: name.to_string(),
                summary: s,
                sha256,
            });
        }
    }
}

/// Whether the ZIP library refused an entry for its encryption (ZipCrypto or AES).
fn encrypted_message(m: &str) -> bool {
    m.contains("assword") || m.contains("ncrypt")
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The record statistics of an archive are its entries' summed; this adapter exists so
/// callers can treat every format alike.
pub fn stats_of(report: &ArchiveReport) -> RecordStats {
    RecordStats {
        records: report.summary.records,
        customer_table: report.summary.customer_table,
        reasons: vec![format!(
            "{} entries classified; customer data in {}",
            report.entries.len(),
            report
                .entries
                .iter()
                .filter(|e| e.summary.customer_table)
                .count()
        )],
        ..RecordStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of `files`, deflated.
    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        zip_with(zip::CompressionMethod::Deflated, files)
    }

    fn zip_with(method: zip::CompressionMethod, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn contacts(n: usize) -> Vec<u8> {
        crate::testkit::contacts_csv(n).into_bytes()
    }

    /// One `check()` per module: (records, customer table, findings) of an archive.
    fn check(bytes: Vec<u8>, limits: Limits, want: (u64, bool, &[(&str, u64)])) {
        let r = classify_zip(Cursor::new(bytes), "zip", limits, None).unwrap();
        let findings: Vec<(&str, u64)> = r
            .summary
            .findings
            .iter()
            .filter(|(k, _)| !["email", "phone", "cn_id", "card"].contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            (
                r.summary.records,
                r.summary.customer_table,
                findings.as_slice()
            ),
            want
        );
    }

    #[test]
    fn entries_nesting_and_bombs() {
        let plain = zip_of(&[("export.csv", &contacts(120)), ("readme.txt", b"hello")]);
        check(plain.clone(), Limits::default(), (120, true, &[]));
        // Nested twice: still found.
        let inner = zip_of(&[("deep.zip", &plain)]);
        let outer = zip_of(&[("mid.zip", &inner)]);
        check(outer.clone(), Limits::default(), (120, true, &[]));
        check(
            outer,
            Limits {
                max_depth: 2,
                ..Limits::default()
            },
            (0, false, &[("nested_too_deep", 1), ("unreadable", 1)]),
        );
        // A disguised entry.
        check(
            zip_of(&[("photo.jpg", &contacts(60))]),
            Limits::default(),
            (60, true, &[("disguised", 1)]),
        );
        // 64 MiB of zeros in a few KiB: a bomb, found after reading a bounded amount.
        let zeros = vec![0u8; 64 << 20];
        let bomb = zip_of(&[("a.dat", &zeros)]);
        assert!(bomb.len() < 200_000);
        check(bomb, Limits::default(), (0, false, &[("zip_bomb", 1)]));
        // Too many entries.
        let many: Vec<(String, Vec<u8>)> =
            (0..50).map(|i| (format!("f{i}.txt"), vec![b'x'])).collect();
        let refs: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        check(
            zip_of(&refs),
            Limits {
                max_entries: 10,
                ..Limits::default()
            },
            (0, false, &[("zip_bomb", 1)]),
        );
        assert!(classify_zip(
            Cursor::new(b"PK\x03\x04junk".to_vec()),
            "zip",
            Limits::default(),
            None
        )
        .is_err());
    }

    /// A zip of `files`, stored without compression.
    fn stored_zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        zip_with(zip::CompressionMethod::Stored, files)
    }

    /// Marks every entry as encrypted (general-purpose flag bit 0, in the local and central
    /// headers), as a password-protecting archiver writes it.
    fn encrypted(mut zip: Vec<u8>) -> Vec<u8> {
        for i in 0..zip.len().saturating_sub(10) {
            match &zip[i..i + 4] {
                b"PK\x03\x04" => zip[i + 6] |= 1,
                b"PK\x01\x02" => zip[i + 8] |= 1,
                _ => {}
            }
        }
        zip
    }

    /// Bytes that do not compress (a seeded xorshift).
    fn noise(n: usize) -> Vec<u8> {
        crate::testkit::noise(n, 0x9e37_79b9_7f4a_7c15)
    }

    /// The shapes that used to hide an export: each gives its records where they can be
    /// read, and a finding saying what could not.
    #[test]
    fn every_shape_gives_its_records_or_says_what_could_not_be_read() {
        let export = contacts(200);
        // Nested 4 deep (the outer archive is depth 1, the limit 3): a finding.
        let mut z = zip_of(&[("export.csv", &export)]);
        for level in 0..3 {
            z = zip_of(&[(&format!("level{level}.zip"), &z)]);
        }
        check(
            z,
            Limits::default(),
            (0, false, &[("nested_too_deep", 1), ("unreadable", 1)]),
        );
        // Nested 3 deep: read.
        let mut z = zip_of(&[("export.csv", &export)]);
        for level in 0..2 {
            z = zip_of(&[(&format!("level{level}.zip"), &z)]);
        }
        check(z, Limits::default(), (200, true, &[]));
        // Password-protected: a finding per entry, the plain entries still read.
        check(
            encrypted(zip_of(&[("export.csv", &export), ("more.csv", &export)])),
            Limits::default(),
            (0, false, &[("encrypted", 2), ("unreadable", 2)]),
        );
        // An inner archive over the in-memory limit (32 MiB): read as a stream, the export
        // after 33 MiB of incompressible video found.
        let inner = stored_zip_of(&[("video.mp4", &noise(33 << 20)), ("export.csv", &export)]);
        check(
            stored_zip_of(&[("backup.zip", &inner)]),
            Limits::default(),
            (200, true, &[]),
        );
        // ...and one deeper than the limit while streamed is still a finding.
        check(
            stored_zip_of(&[("backup.zip", &inner)]),
            Limits {
                max_depth: 1,
                ..Limits::default()
            },
            (0, false, &[("nested_too_deep", 1), ("unreadable", 1)]),
        );
        // A padding entry first: it is a bomb finding, and the export after it still counts.
        let zeros = vec![0u8; 64 << 20];
        let padded = zip_of(&[("padding.bin", &zeros), ("export.csv", &export)]);
        let r = classify_zip(Cursor::new(padded), "zip", Limits::default(), None).unwrap();
        assert_eq!(
            (
                r.summary.records,
                r.summary.customer_table,
                r.summary.truncated
            ),
            (200, true, true)
        );
        assert_eq!(r.summary.findings.get("zip_bomb"), Some(&1));
    }
}
