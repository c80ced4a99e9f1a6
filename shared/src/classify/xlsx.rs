//! XLSX spreadsheets, streamed: no sheet is ever loaded whole. The shared-string table is
//! read once and reduced to one byte per string (which identifier it is, if any), keeping the
//! text of only the first strings (where headers are); then each sheet's XML is streamed row
//! by row into [`Records`]. Memory: one byte per distinct string (capped) plus fixed buffers.

use super::archive::Limits;
use super::record::{classify_field, IdKind, RecordStats, Records};
use super::table::MAX_FIELD;
use crate::edm::Matcher;
use crate::event::ContentSummary;
use quick_xml::events::Event;
use std::io::{BufReader, Read, Seek};
use std::sync::Arc;

/// Shared strings whose text is kept (header candidates come first in the table).
const KEEP_TEXT: usize = 4096;
/// Shared strings tracked at all; beyond this they count as plain text.
const MAX_STRINGS: usize = 32 << 20;
/// Sheets read.
const MAX_SHEETS: usize = 64;

/// Why a workbook could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XlsxError {
    /// The ZIP container is unreadable.
    #[error("not a readable XLSX (ZIP): {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A part's XML is malformed.
    #[error("malformed XLSX part {part}: {message}")]
    Xml { part: String, message: String },
    /// The ZIP holds no worksheet.
    #[error("no worksheet in this workbook")]
    NoSheet,
}

/// Bit set in a string's code when it matched the customer set.
const EDM_HIT: u8 = 0x80;

fn kind_code(k: Option<IdKind>) -> u8 {
    k.map_or(0, |k| k as u8 + 1)
}

fn code_kind(c: u8) -> Option<IdKind> {
    IdKind::ALL
        .get(usize::from(c & !EDM_HIT).checked_sub(1)?)
        .copied()
}

/// A workbook's shared-string table, reduced to one byte per string (its identifier kind and
/// customer match), with the text of only the first [`KEEP_TEXT`] strings. XLS uses it too.
#[derive(Default)]
pub(super) struct SharedStrings {
    kinds: Vec<u8>,
    texts: Vec<String>,
}

impl SharedStrings {
    /// Classifies and records the next string of the table (beyond [`MAX_STRINGS`], nothing).
    pub(super) fn push(&mut self, text: &[u8], edm: Option<&Matcher>) {
        if self.kinds.len() >= MAX_STRINGS {
            return;
        }
        let f = text.trim_ascii();
        let kind = classify_field(f);
        let hit = match (kind, edm) {
            (Some(k), Some(m)) if m.matches(k, f) => EDM_HIT,
            _ => 0,
        };
        self.kinds.push(kind_code(kind) | hit);
        if self.texts.len() < KEEP_TEXT {
            self.texts.push(String::from_utf8_lossy(f).into_owned());
        }
    }

    /// Strings tracked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Feeds string `index` of the table to `rec` as the next field.
    pub(super) fn field(&self, index: Option<usize>, rec: &mut Records) {
        match index {
            Some(i) if i < self.kinds.len() => {
                let code = self.kinds[i];
                let text = self.texts.get(i).map_or(&b"\x01"[..], |t| t.as_bytes());
                rec.field_with(text, code_kind(code), Some(code & EDM_HIT != 0));
            }
            // Beyond the strings tracked: text of unknown kind.
            Some(_) => rec.field_with(b"\x01", None, None),
            None => rec.field(b""),
        }
    }
}

fn xml_err(part: &str, e: impl std::fmt::Display) -> XlsxError {
    XlsxError::Xml {
        part: part.to_string(),
        message: e.to_string(),
    }
}

fn shared_strings<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: Limits,
    edm: Option<&Matcher>,
) -> Result<SharedStrings, XlsxError> {
    let mut out = SharedStrings::default();
    let part = "xl/sharedStrings.xml";
    let Ok(file) = zip.by_name(part) else {
        return Ok(out);
    };
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(file.take(limits.max_total)));
    let mut buf = Vec::new();
    let mut text: Vec<u8> = Vec::new();
    let mut in_t = false;
    loop {
        match xml
            .read_event_into(&mut buf)
            .map_err(|e| xml_err(part, e))?
        {
            Event::Start(e) if e.local_name().as_ref() == b"si" => text.clear(),
            Event::Start(e) if e.local_name().as_ref() == b"t" => in_t = true,
            Event::End(e) if e.local_name().as_ref() == b"t" => in_t = false,
            Event::Text(t) if in_t => {
                let raw = t.unescape().map_err(|e| xml_err(part, e))?;
                let room = MAX_FIELD.saturating_sub(text.len());
                text.extend_from_slice(&raw.as_bytes()[..raw.len().min(room)]);
            }
            Event::End(e) if e.local_name().as_ref() == b"si" => out.push(&text, edm),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// `C12` → column index 2.
fn column_of(r: &[u8]) -> Option<usize> {
    let mut col = 0usize;
    let mut any = false;
    for &b in r {
        if b.is_ascii_uppercase() {
            col = col
                .checked_mul(26)?
                .checked_add(usize::from(b - b'A') + 1)?;
            any = true;
        } else {
            break;
        }
    }
    any.then(|| col - 1)
}

/// Classifies a workbook: every worksheet's rows into one [`Records`] per sheet, added up.
pub fn classify_xlsx<R: Read + Seek>(
    reader: R,
    limits: Limits,
    edm: Option<Arc<Matcher>>,
) -> Result<(ContentSummary, RecordStats), XlsxError> {
    let mut zip = zip::ZipArchive::new(reader)?;
    let strings = shared_strings(&mut zip, limits, edm.as_deref())?;
    let mut sheets: Vec<String> = zip
        .file_names()
        .filter(|n| n.starts_with("xl/worksheets/") && n.ends_with(".xml"))
        .map(str::to_string)
        .collect();
    sheets.sort();
    if sheets.is_empty() {
        return Err(XlsxError::NoSheet);
    }
    let mut total = RecordStats::default();
    let mut truncated = sheets.len() > MAX_SHEETS;
    for part in sheets.iter().take(MAX_SHEETS) {
        let file = zip.by_name(part)?;
        let size = file.size();
        let s = sheet(file.take(limits.max_total), part, &strings, edm.clone())?;
        truncated |= size > limits.max_total;
        total.absorb(s, part);
    }
    let summary = super::summarize("xlsx", &total, truncated, None);
    Ok((summary, total))
}

fn sheet(
    file: impl Read,
    part: &str,
    strings: &SharedStrings,
    edm: Option<Arc<Matcher>>,
) -> Result<RecordStats, XlsxError> {
    let mut rec = Records::table().with_edm(edm);
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(file));
    let mut buf = Vec::new();
    let mut value: Vec<u8> = Vec::new();
    let mut cell_type: Vec<u8> = Vec::new();
    let mut in_value = false;
    let mut in_row = false;
    loop {
        match xml
            .read_event_into(&mut buf)
            .map_err(|e| xml_err(part, e))?
        {
            Event::Start(e) if e.local_name().as_ref() == b"row" => {
                in_row = true;
            }
            Event::End(e) if e.local_name().as_ref() == b"row" => {
                if in_row {
                    rec.end_record();
                }
                in_row = false;
            }
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"c" => {
                cell_type.clear();
                value.clear();
                for a in e.attributes().flatten() {
                    match a.key.local_name().as_ref() {
                        b"t" => cell_type.extend_from_slice(&a.value),
                        b"r" => {
                            if let Some(c) = column_of(&a.value) {
                                rec.seek_column(c);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Event::Start(e) if matches!(e.local_name().as_ref(), b"v" | b"t") => in_value = true,
            Event::End(e) if matches!(e.local_name().as_ref(), b"v" | b"t") => in_value = false,
            Event::Text(t) if in_value => {
                let raw = t.unescape().map_err(|e| xml_err(part, e))?;
                let room = MAX_FIELD.saturating_sub(value.len());
                value.extend_from_slice(&raw.as_bytes()[..raw.len().min(room)]);
            }
            Event::End(e) if e.local_name().as_ref() == b"c" => {
                if cell_type == b"s" {
                    let idx: Option<usize> = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                    strings.field(idx, &mut rec);
                } else {
                    // Numbers, inline strings, formulas' cached text: classified as written.
                    // A number-typed mobile (13800138000) is a plain digit run here.
                    let text = if cell_type.is_empty() || cell_type == b"n" {
                        strip_float(&value)
                    } else {
                        &value
                    };
                    rec.field(text);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(rec.finish())
}

/// `13800138000.0` or `1.3800138E10` as Excel stores numbers → digits where it is a whole
/// number; anything else unchanged.
fn strip_float(v: &[u8]) -> &[u8] {
    v.strip_suffix(b".0").unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    /// A minimal workbook: shared strings plus one sheet of (cell type, value) rows.
    fn workbook(shared: &[&str], rows: &[Vec<(&str, &str)>]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        w.start_file("[Content_Types].xml", o).unwrap();
        w.write_all(b"<Types/>").unwrap();
        w.start_file("xl/sharedStrings.xml", o).unwrap();
        let mut sst = String::from(
            "<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">",
        );
        for s in shared {
            sst.push_str(&format!("<si><t>{s}</t></si>"));
        }
        sst.push_str("</sst>");
        w.write_all(sst.as_bytes()).unwrap();
        w.start_file("xl/worksheets/sheet1.xml", o).unwrap();
        let mut x = String::from("<worksheet><sheetData>");
        for (r, row) in rows.iter().enumerate() {
            x.push_str(&format!("<row r=\"{}\">", r + 1));
            for (c, (t, v)) in row.iter().enumerate() {
                let col = (b'A' + c as u8) as char;
                match *t {
                    "inline" => x.push_str(&format!(
                        "<c r=\"{col}{}\" t=\"inlineStr\"><is><t>{v}</t></is></c>",
                        r + 1
                    )),
                    "" => x.push_str(&format!("<c r=\"{col}{}\"><v>{v}</v></c>", r + 1)),
                    t => x.push_str(&format!("<c r=\"{col}{}\" t=\"{t}\"><v>{v}</v></c>", r + 1)),
                }
            }
            x.push_str("</row>");
        }
        x.push_str("</sheetData></worksheet>");
        w.write_all(x.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn streams_sheets_with_shared_strings() {
        let book = workbook(
            &[
                "客户名称",
                "手机",
                "邮箱",
                "深圳某某科技",
                "zhang@example.cn",
            ],
            &[
                vec![("s", "0"), ("s", "1"), ("s", "2")],
                vec![("s", "3"), ("", "13800138000"), ("s", "4")],
                vec![
                    ("inline", "上海某某"),
                    ("", "1.3912345678E10"),
                    ("inline", "li@example.cn"),
                ],
                vec![("inline", "北京某某")],
            ],
        );
        let (s, stats) = classify_xlsx(Cursor::new(book.clone()), Limits::default(), None).unwrap();
        assert_eq!(
            (s.file_type.as_str(), s.records, s.customer_table),
            ("xlsx", 2, true)
        );
        assert_eq!(stats.rows, 3);
        assert_eq!(s.findings.get("email"), Some(&2));
        assert_eq!(s.findings.get("phone"), Some(&1));
        assert_eq!(s.columns, ["account", "phone", "email"]);
        assert_eq!(column_of(b"AB7"), Some(27));
        assert!(classify_xlsx(Cursor::new(b"junk".to_vec()), Limits::default(), None).is_err());
        // With a customer set holding one of the two addresses: one real customer.
        let mut b = crate::edm::EdmBuilder::new(b"k");
        b.add(IdKind::Email, b"li@example.cn");
        let m = Arc::new(b.finish().matcher());
        let (s, _) = classify_xlsx(Cursor::new(book), Limits::default(), Some(m)).unwrap();
        assert_eq!(s.findings.get("edm"), Some(&1));
    }
}
