//! XLSX spreadsheets, streamed: no sheet is ever loaded whole. The shared-string table is
//! read once and reduced to one byte per string (which identifier it is, if any), keeping the
//! text of only the first strings (where headers are); then each sheet's XML is streamed row
//! by row into [`Records`]. Memory: one byte per distinct string (capped) plus fixed buffers.
//!
//! Every part is read through [`Part`], which bounds its size and its compression ratio. A
//! part that breaks off (malformed XML, a bomb) keeps what was read before it, and an
//! undefined entity keeps its text as written: each is a finding, never the loss of the
//! workbook.

use super::limits::Limits;
use super::record::{RecordStats, Records};
use super::table::MAX_FIELD;
use crate::edm::Matcher;
use crate::event::ContentSummary;
use crate::ident::{classify_field, IdKind};
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

/// What went wrong in a workbook's parts without stopping it, as finding counts.
#[derive(Debug, Default)]
struct Faults {
    /// Text with an entity XML does not define (`&foo;`): kept as written.
    undefined_entity: u64,
    /// Parts whose XML broke off: what came before is kept.
    damaged_part: u64,
    /// Parts that expanded beyond the ratio or size limit: read up to it.
    zip_bomb: u64,
    /// The cancel flag stopped the reading.
    cancelled: bool,
}

impl Faults {
    /// A text node's content: unescaped, or as written when an entity is undefined.
    fn text<'a>(&mut self, t: &'a quick_xml::events::BytesText<'a>) -> std::borrow::Cow<'a, [u8]> {
        match t.unescape() {
            Ok(std::borrow::Cow::Borrowed(s)) => std::borrow::Cow::Borrowed(s.as_bytes()),
            Ok(std::borrow::Cow::Owned(s)) => std::borrow::Cow::Owned(s.into_bytes()),
            Err(_) => {
                self.undefined_entity += 1;
                std::borrow::Cow::Borrowed(t.as_ref())
            }
        }
    }

    fn into_findings(self, summary: &mut ContentSummary) {
        for (k, v) in [
            ("undefined_entity", self.undefined_entity),
            ("damaged_part", self.damaged_part),
            ("zip_bomb", self.zip_bomb),
        ] {
            if v > 0 {
                *summary.findings.entry(k.into()).or_insert(0) += v;
            }
        }
        if self.damaged_part > 0 {
            *summary
                .findings
                .entry(super::limits::UNREADABLE.into())
                .or_insert(0) += self.damaged_part;
        }
        if self.zip_bomb > 0 {
            summary.truncated = true;
        }
        if self.cancelled {
            summary.findings.insert(super::limits::CPU_LIMIT.into(), 1);
            summary.truncated = true;
        }
    }

    /// A part read to its end: a bound it hit is a `zip_bomb` finding.
    fn part_done<R>(&mut self, xml: &quick_xml::Reader<BufReader<Part<R>>>) {
        if xml.get_ref().get_ref().tripped {
            self.zip_bomb += 1;
        }
    }

    /// Whether to stop now: looked at every 256 XML events.
    fn stop(&mut self, events: &mut u32, limits: &Limits) -> bool {
        *events = events.wrapping_add(1);
        if (*events).is_multiple_of(256) && limits.cancelled() {
            self.cancelled = true;
        }
        self.cancelled
    }
}

/// The next XML event of a part, or `None` when the part ends: at its end, where its XML
/// breaks off (`damaged_part`), or when the cancel flag is raised.
fn next_event<'b, R: Read>(
    xml: &mut quick_xml::Reader<BufReader<Part<R>>>,
    buf: &'b mut Vec<u8>,
    faults: &mut Faults,
    events: &mut u32,
) -> Option<Event<'b>> {
    let limits = xml.get_ref().get_ref().limits;
    if faults.stop(events, &limits) {
        return None;
    }
    match xml.read_event_into(buf) {
        Ok(Event::Eof) => None,
        Ok(e) => Some(e),
        Err(_) => {
            faults.damaged_part += 1;
            None
        }
    }
}

/// One part of the workbook, read with its bounds: at most `max_total` bytes, and no more
/// than `max_ratio` times its compressed size once past 1 MiB. At a bound it ends (as if
/// the part ended there) and says so in `tripped`.
struct Part<R> {
    inner: R,
    read: u64,
    compressed: u64,
    limits: Limits,
    tripped: bool,
}

impl<R: Read> Part<R> {
    fn new(inner: R, compressed: u64, limits: Limits) -> Part<R> {
        Part {
            inner,
            read: 0,
            compressed: compressed.max(1),
            limits,
            tripped: false,
        }
    }
}

impl<R: Read> Read for Part<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.tripped {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limits.max_total
            || (self.read > (1 << 20) && self.read / self.compressed > self.limits.max_ratio)
        {
            self.tripped = true;
            return Ok(0);
        }
        Ok(n)
    }
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

fn shared_strings<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: Limits,
    edm: Option<&Matcher>,
    faults: &mut Faults,
) -> SharedStrings {
    let mut out = SharedStrings::default();
    let Ok(file) = zip.by_name("xl/sharedStrings.xml") else {
        return out;
    };
    let compressed = file.compressed_size();
    let mut xml =
        quick_xml::Reader::from_reader(BufReader::new(Part::new(file, compressed, limits)));
    let mut buf = Vec::new();
    let mut text: Vec<u8> = Vec::new();
    let mut in_t = false;
    let mut events = 0u32;
    while let Some(event) = next_event(&mut xml, &mut buf, faults, &mut events) {
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"si" => text.clear(),
            Event::Start(e) if e.local_name().as_ref() == b"t" => in_t = true,
            Event::End(e) if e.local_name().as_ref() == b"t" => in_t = false,
            Event::Text(t) if in_t => {
                let raw = faults.text(&t);
                let room = MAX_FIELD.saturating_sub(text.len());
                text.extend_from_slice(&raw[..raw.len().min(room)]);
            }
            Event::End(e) if e.local_name().as_ref() == b"si" => out.push(&text, edm),
            _ => {}
        }
        buf.clear();
    }
    faults.part_done(&xml);
    out
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
    let mut faults = Faults::default();
    let strings = shared_strings(&mut zip, limits, edm.as_deref(), &mut faults);
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
    let truncated = sheets.len() > MAX_SHEETS;
    for part in sheets.iter().take(MAX_SHEETS) {
        if faults.cancelled {
            break;
        }
        let file = zip.by_name(part)?;
        let compressed = file.compressed_size();
        let s = sheet(
            Part::new(file, compressed, limits),
            &strings,
            edm.clone(),
            &mut faults,
        );
        total.absorb(s, part);
    }
    let mut summary = super::summarize("xlsx", &total, truncated, None);
    faults.into_findings(&mut summary);
    Ok((summary, total))
}

fn sheet<R: Read>(
    file: Part<R>,
    strings: &SharedStrings,
    edm: Option<Arc<Matcher>>,
    faults: &mut Faults,
) -> RecordStats {
    let mut rec = Records::table().with_edm(edm);
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(file));
    let mut buf = Vec::new();
    let mut value: Vec<u8> = Vec::new();
    let mut cell_type: Vec<u8> = Vec::new();
    let mut in_value = false;
    let mut in_row = false;
    let mut events = 0u32;
    while let Some(event) = next_event(&mut xml, &mut buf, faults, &mut events) {
        match event {
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
                let raw = faults.text(&t);
                let room = MAX_FIELD.saturating_sub(value.len());
                value.extend_from_slice(&raw[..raw.len().min(room)]);
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
            _ => {}
        }
        buf.clear();
    }
    faults.part_done(&xml);
    rec.finish()
}

/// `13800138000.0` or `1.3800138E10` as Excel stores numbers → digits where it is a whole
/// number; anything else unchanged.
fn strip_float(v: &[u8]) -> &[u8] {
    v.strip_suffix(b".0").unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read, Write};

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

    /// An undefined entity keeps its text as written and the rest of the sheet is read; a
    /// sheet whose XML breaks off keeps the rows before; a sheet that is a bomb is read up to
    /// the ratio limit. Each is a finding.
    #[test]
    fn faults_in_a_part_are_findings_and_the_rest_is_read() {
        let mut rows = vec![vec![("inline", "Name"), ("inline", "Email")]];
        let names: Vec<(String, String)> = (0..60)
            .map(|i| (format!("Person {i}"), format!("p{i}@example.com")))
            .collect();
        for (n, e) in &names {
            rows.push(vec![("inline", n.as_str()), ("inline", e.as_str())]);
        }
        // One cell with an entity the XML never defines.
        rows[5][0].1 = "Smith &amp; Sons &nbsp;";
        let book = workbook(&[], &rows);
        let (s, _) = classify_xlsx(Cursor::new(book), Limits::default(), None).unwrap();
        assert_eq!((s.records, s.customer_table), (60, true));
        assert_eq!(s.findings.get("undefined_entity"), Some(&1));
        // The sheet's XML breaks off after row 31.
        let mut broken = workbook(&[], &rows);
        let book = {
            let mut r = zip::ZipArchive::new(Cursor::new(std::mem::take(&mut broken))).unwrap();
            let mut xml = String::new();
            r.by_name("xl/worksheets/sheet1.xml")
                .unwrap()
                .read_to_string(&mut xml)
                .unwrap();
            let cut = xml.find("<row r=\"32\">").unwrap();
            let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let o = zip::write::SimpleFileOptions::default();
            w.start_file("xl/worksheets/sheet1.xml", o).unwrap();
            w.write_all(&xml.as_bytes()[..cut]).unwrap();
            w.write_all(b"<row r=\"32\"><c><v>1</row>").unwrap();
            w.finish().unwrap().into_inner()
        };
        let (s, _) = classify_xlsx(Cursor::new(book), Limits::default(), None).unwrap();
        assert_eq!(s.records, 30, "the rows before the break");
        assert_eq!(s.findings.get("damaged_part"), Some(&1));
        assert_eq!(s.findings.get("unreadable"), Some(&1));
        // A sheet of 64 MiB of padding whitespace: read to the ratio limit, then a finding.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("xl/worksheets/sheet1.xml", o).unwrap();
        w.write_all(b"<worksheet><sheetData>").unwrap();
        w.write_all(&vec![b' '; 64 << 20]).unwrap();
        w.write_all(b"</sheetData></worksheet>").unwrap();
        let bomb = w.finish().unwrap().into_inner();
        let (s, _) = classify_xlsx(Cursor::new(bomb), Limits::default(), None).unwrap();
        assert_eq!(s.findings.get("zip_bomb"), Some(&1));
        assert!(s.truncated);
    }
}
