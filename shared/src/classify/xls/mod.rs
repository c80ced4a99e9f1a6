//! Legacy Excel workbooks (`.xls`: BIFF8 records inside an OLE compound file), streamed.
//!
//! The compound file is read sector by sector through its allocation table, looked up one
//! table sector at a time, so memory holds one sector of the table, one of data and the list
//! of table sectors (4 bytes per 64 KiB of file). The `Workbook` stream is parsed record by
//! record: the shared-string table is reduced to one byte per string, as for XLSX
//! ([`SharedStrings`]), and each worksheet's cells are fed row by row into [`Records`].
//! Nothing is ever loaded whole, and every chain walk is bounded by the file's sector count,
//! so a looping or truncated file ends in an error, not a hang.

use super::limits::Limits;
use super::record::{RecordStats, Records};
use super::table::MAX_FIELD;
use super::xlsx::SharedStrings;
use crate::edm::Matcher;
use crate::event::ContentSummary;
use std::io::{Read, Seek};
use std::sync::Arc;

mod biff;
mod compound;
mod sst;
#[cfg(any(test, feature = "testkit"))]
pub mod write;

use biff::{
    Biff, BOF, BOUNDSHEET, CONTINUE, EOF, FILEPASS, FORMULA, LABEL, LABELSST, MULRK, NUMBER, RK,
    RSTRING, SST, STRING,
};
use compound::Compound;
use sst::{unicode_string, SstParser};

/// Why a workbook could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XlsError {
    /// Reading the file failed.
    #[error("reading the workbook: {0}")]
    Io(#[from] std::io::Error),
    /// The compound-file structure is broken (bad header, chain out of range or looping).
    #[error("damaged compound file: {0}")]
    Damaged(&'static str),
    /// A BIFF5 or older workbook (Excel 95 and before): not read.
    #[error("workbook format older than Excel 97 (BIFF5); not inspected")]
    OldFormat,
}

/// Worksheets read at most.
const MAX_SHEETS: usize = 256;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An RK number (a compressed double or integer, possibly divided by 100).
fn rk_value(rk: u32) -> f64 {
    let v = if rk & 2 != 0 {
        f64::from((rk as i32) >> 2)
    } else {
        f64::from_bits(u64::from(rk & 0xFFFF_FFFC) << 32)
    };
    if rk & 1 != 0 {
        v / 100.0
    } else {
        v
    }
}

/// A number as a spreadsheet shows it: whole numbers without a fraction, so a mobile stored
/// as a number (13800138000) reads as its digits.
fn number_text(v: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `sheet "客户"`, or `sheet 2` when the workbook did not name it.
fn sheet_label(names: &[String], n: usize) -> String {
    match n.checked_sub(1).and_then(|i| names.get(i)) {
        Some(name) => format!("sheet \"{name}\""),
        None => format!("sheet {n}"),
    }
}

/// One worksheet being read: its records and the row its cells are on.
struct Sheet {
    rec: Records,
    row: Option<u16>,
}

impl Sheet {
    fn cell(&mut self, row: u16, col: u16) {
        if self.row != Some(row) {
            if self.row.is_some() {
                self.rec.end_record();
            }
            self.row = Some(row);
        }
        self.rec.seek_column(usize::from(col));
    }
}

/// Classifies an XLS workbook: every worksheet's rows into one [`Records`] per sheet, added
/// up. A password-protected workbook is a finding (`encrypted`), not an error; a compound
/// file without a workbook (a Word `.doc`) has nothing to classify.
pub fn classify_xls<R: Read + Seek>(
    reader: R,
    limits: Limits,
    edm: Option<Arc<Matcher>>,
) -> Result<(ContentSummary, RecordStats), XlsError> {
    let mut file = Compound::open(reader)?;
    let (found, root) = file.find(&["Workbook", "Book"])?;
    let mut total = RecordStats::default();
    let Some((which, stream)) = found else {
        total
            .reasons
            .push("compound file without a workbook".into());
        return Ok((super::summarize("xls", &total, false, None), total));
    };
    if which == 1 {
        return Err(XlsError::OldFormat);
    }
    let mut biff = Biff {
        s: file.stream(stream, root)?,
        data: Vec::new(),
        read: 0,
    };
    let mut strings = SharedStrings::default();
    let mut sst: Option<SstParser> = None;
    let mut sheet: Option<Sheet> = None;
    let mut sheets = 0usize;
    // Worksheet names, in the order their substreams follow (for `scan --explain`).
    let mut names: Vec<String> = Vec::new();
    let mut formula_string = false;
    let mut truncated = false;
    let mut encrypted = false;
    let mut field = Vec::with_capacity(MAX_FIELD);
    let mut cancelled = false;
    loop {
        if biff.read > limits.max_total {
            truncated = true;
            break;
        }
        if limits.cancelled() {
            cancelled = true;
            truncated = true;
            break;
        }
        let typ = match biff.next() {
            Ok(Some(t)) => t,
            Ok(None) => break,
            // A stream cut short: keep what was read, and say so.
            Err(_) => {
                truncated = true;
                break;
            }
        };
        let d = &biff.data;
        if typ != CONTINUE {
            sst = None;
        }
        match typ {
            BOF => {
                if u16_at(d, 0) != Some(0x0600) {
                    return Err(XlsError::OldFormat);
                }
                if u16_at(d, 2) == Some(0x0010) {
                    sheets += 1;
                    if sheets > MAX_SHEETS {
                        truncated = true;
                        break;
                    }
                    sheet = Some(Sheet {
                        rec: Records::table().with_edm(edm.clone()),
                        row: None,
                    });
                }
            }
            EOF => {
                if let Some(s) = sheet.take() {
                    total.absorb(s.rec.finish(), &sheet_label(&names, sheets));
                }
            }
            BOUNDSHEET if names.len() < MAX_SHEETS => {
                // lbPlyPos u32, hsState u8, dt u8 (0 = worksheet), then a short string.
                let mut name = Vec::new();
                if d.get(5) == Some(&0) {
                    if let (Some(&cch), Some(&flags)) = (d.get(6), d.get(7)) {
                        let mut long = vec![cch, 0, flags];
                        long.extend_from_slice(d.get(8..).unwrap_or(&[]));
                        unicode_string(&long, 0, &mut name);
                    }
                    names.push(String::from_utf8_lossy(&name).into_owned());
                }
            }
            FILEPASS => {
                encrypted = true;
                break;
            }
            SST => {
                let mut p = SstParser::new();
                p.piece(d, &mut strings, edm.as_deref());
                sst = Some(p);
            }
            CONTINUE => {
                if let Some(p) = sst.as_mut() {
                    p.piece(d, &mut strings, edm.as_deref());
                }
            }
            _ => {}
        }
        let Some(s) = sheet.as_mut() else { continue };
        if typ == STRING && formula_string {
            formula_string = false;
            // STRING carries no row and column: it belongs to the FORMULA just read.
            unicode_string(d, 0, &mut field);
            s.rec.field(&field);
            continue;
        }
        let (Some(row), Some(col)) = (u16_at(d, 0), u16_at(d, 2)) else {
            continue;
        };
        match typ {
            LABELSST => {
                s.cell(row, col);
                strings.field(u32_at(d, 6).map(|i| i as usize), &mut s.rec);
            }
            LABEL | RSTRING => {
                s.cell(row, col);
                unicode_string(d, 6, &mut field);
                s.rec.field(&field);
            }
            NUMBER => {
                s.cell(row, col);
                let v = d
                    .get(6..14)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0.0, f64::from_le_bytes);
                number_text(v, &mut field);
                s.rec.field(&field);
            }
            RK => {
                s.cell(row, col);
                number_text(rk_value(u32_at(d, 6).unwrap_or(0)), &mut field);
                s.rec.field(&field);
            }
            MULRK => {
                // row, first column, then (xf u16, rk u32) per cell, then the last column.
                let cells = d.len().saturating_sub(6) / 6;
                for i in 0..cells {
                    s.cell(row, col.saturating_add(i as u16));
                    number_text(rk_value(u32_at(d, 6 + 6 * i).unwrap_or(0)), &mut field);
                    s.rec.field(&field);
                }
            }
            FORMULA => {
                s.cell(row, col);
                // A string result is marked by 0xFFFF in the top bytes and follows in STRING.
                let marker = d.get(6..14);
                formula_string = marker.is_some_and(|m| m[0] == 0 && m[6..8] == [0xFF, 0xFF]);
                if !formula_string {
                    let v = marker
                        .and_then(|b| b.try_into().ok())
                        .map_or(0.0, f64::from_le_bytes);
                    if marker.is_some_and(|m| m[6..8] == [0xFF, 0xFF]) {
                        // Booleans, errors and empty strings: nothing to classify.
                        s.rec.field(b"");
                    } else {
                        number_text(v, &mut field);
                        s.rec.field(&field);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(s) = sheet.take() {
        total.absorb(s.rec.finish(), &sheet_label(&names, sheets));
    }
    let mut summary = super::summarize("xls", &total, truncated, None);
    if encrypted {
        summary.findings.insert("encrypted".into(), 1);
        total.reasons.push("workbook is password-protected".into());
    }
    if cancelled {
        summary.findings.insert(super::limits::CPU_LIMIT.into(), 1);
        total.reasons.push("stopped at the CPU limit".into());
    }
    Ok((summary, total))
}

#[cfg(test)]
mod tests {
    use super::write::{compound, workbook_stream, xls, Cell};
    use super::*;
    use crate::ident::IdKind;
    use std::io::Cursor;

    fn t(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }

    /// Classifies `bytes` and checks (records, rows, emails, phones, customer table).
    fn check(bytes: Vec<u8>, want: (u64, u64, u64, u64, bool)) -> (ContentSummary, RecordStats) {
        let (s, stats) = classify_xls(Cursor::new(bytes), Limits::default(), None).unwrap();
        let got = (
            s.records,
            stats.rows,
            s.findings.get("email").copied().unwrap_or(0),
            s.findings.get("phone").copied().unwrap_or(0),
            s.customer_table,
        );
        assert_eq!(got, want, "{:?}", stats.reasons);
        (s, stats)
    }

    fn contacts(n: usize) -> Vec<Vec<Cell>> {
        let mut rows = vec![vec![t("客户名称"), t("联系人"), t("手机"), t("邮箱")]];
        for i in 0..n {
            rows.push(vec![
                t(&format!("深圳某某科技{i}有限公司")),
                Cell::Inline(format!("张{i}")),
                Cell::Number(13_800_000_000.0 + i as f64),
                t(&format!("zhang{i}@example.cn")),
            ]);
        }
        rows
    }

    #[test]
    fn reads_sheets_small_and_large() {
        // A few rows: the stream is under 4 KiB and lives in the mini stream.
        let small = xls(&[contacts(3)]);
        let (s, stats) = check(small, (3, 3, 3, 3, true));
        assert_eq!(s.file_type, "xls");
        assert_eq!(s.columns, ["account", "contact", "phone", "email"]);
        assert!(stats.header);
        // Thousands of rows over two sheets: regular sectors, an SST split over CONTINUE
        // records, more than one allocation-table sector.
        let big = xls(&[contacts(3000), contacts(1500)]);
        assert!(big.len() > 128 * 512, "needs a second FAT sector");
        let (_, stats) = check(big, (4500, 4500, 4500, 4500, true));
        assert!(stats
            .reasons
            .iter()
            .any(|r| r.starts_with("sheet \"Sheet2\": 1500 of 1500")));
        // Numbers as RK (small integers) and plain numbers are not identifiers.
        check(
            xls(&[vec![
                vec![t("SKU"), t("Price")],
                vec![Cell::Number(100.0), Cell::Number(12.99)],
                vec![Cell::Number(101.0), Cell::Empty],
            ]]),
            (0, 2, 0, 0, false),
        );
    }

    #[test]
    fn shared_strings_split_inside_a_string_switch_width() {
        // One long ASCII string then a CJK string straddling the CONTINUE boundary.
        let long = "x".repeat(8200);
        let mut rows = vec![vec![t("Name"), t("Email")]];
        rows.push(vec![t(&long), t("ada@example.com")]);
        for i in 0..60 {
            rows.push(vec![
                t(&format!("客户{i}")),
                t(&format!("c{i}@example.com")),
            ]);
        }
        let stream = workbook_stream(&[rows]);
        // The writer did split the table.
        assert!(stream.windows(2).any(|w| w == 0x003Cu16.to_le_bytes()));
        let (s, _) = check(compound("Workbook", &stream), (61, 61, 61, 0, true));
        assert_eq!(s.columns, ["name", "email"]);
    }

    #[test]
    fn rich_and_phonetic_strings_are_skipped_correctly() {
        let mut sst = SstParser::new();
        let mut out = SharedStrings::default();
        // cstTotal, cstUnique; then "ab" with 1 run and 3 bytes of phonetic data; then a@b.co.
        let mut p = vec![2, 0, 0, 0, 2, 0, 0, 0];
        p.extend_from_slice(&[2, 0, 0x0C, 1, 0, 3, 0, 0, 0]);
        p.extend_from_slice(b"ab");
        p.extend_from_slice(&[9, 9, 9, 9, 7, 7]);
        let mut q = vec![7];
        q.extend_from_slice(&[6, 0, 0]);
        q.extend_from_slice(b"a@b.co");
        sst.piece(&p, &mut out, None);
        sst.piece(&q, &mut out, None);
        let mut rec = Records::table();
        out.field(Some(0), &mut rec);
        out.field(Some(1), &mut rec);
        let stats = rec.finish();
        assert_eq!(stats.ids[IdKind::Email as usize], 1);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn numbers_read_as_a_spreadsheet_shows_them() {
        let mut b = Vec::new();
        number_text(13_800_138_000.0, &mut b);
        assert_eq!(b, b"13800138000");
        number_text(12.5, &mut b);
        assert_eq!(b, b"12.5");
        assert_eq!(rk_value((1234 << 2) | 2), 1234.0);
        assert_eq!(rk_value((1234 << 2) | 3), 12.34);
        assert_eq!(rk_value((1.5f64.to_bits() >> 32) as u32), 1.5);
    }

    #[test]
    fn hostile_compound_files_are_errors_not_hangs() {
        let good = xls(&[contacts(200)]);
        // Junk, a bad signature, a truncated file.
        assert!(classify_xls(Cursor::new(b"junk".to_vec()), Limits::default(), None).is_err());
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(classify_xls(Cursor::new(bad), Limits::default(), None).is_err());
        let (s, _) = classify_xls(
            Cursor::new(good[..good.len() / 2].to_vec()),
            Limits::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("a cut file reads what it can: {e}"));
        assert!(s.truncated);
        // A chain that loops on itself: the data's first sector points back to itself.
        let mut looped = good.clone();
        let fat = 512;
        let first_data = 2; // 1 FAT sector, the directory, then data (no mini table)
        looped[fat + 4 * first_data..fat + 4 * first_data + 4]
            .copy_from_slice(&(first_data as u32).to_le_bytes());
        let r = classify_xls(Cursor::new(looped), Limits::default(), None);
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|(s, _)| s.truncated),
            "a loop is cut"
        );
        // Every single-byte corruption of the header ends without a panic.
        for i in 0..512 {
            let mut b = good.clone();
            b[i] ^= 0xA5;
            let _ = classify_xls(Cursor::new(b), Limits::default(), None);
        }
        // A compound file without a workbook (a Word document): nothing to classify.
        let (s, stats) = classify_xls(
            Cursor::new(compound("WordDocument", &[0u8; 5000])),
            Limits::default(),
            None,
        )
        .unwrap();
        assert_eq!(s.records, 0);
        assert_eq!(stats.reasons, ["compound file without a workbook"]);
        // A BIFF5 workbook is refused by name.
        assert!(matches!(
            classify_xls(
                Cursor::new(compound("Book", &[0u8; 5000])),
                Limits::default(),
                None
            ),
            Err(XlsError::OldFormat)
        ));
    }

    #[test]
    fn password_protected_workbooks_are_a_finding() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&BOF.to_le_bytes());
        stream.extend_from_slice(&16u16.to_le_bytes());
        stream.extend_from_slice(&0x0600u16.to_le_bytes());
        stream.extend_from_slice(&5u16.to_le_bytes());
        stream.extend_from_slice(&[0u8; 12]);
        stream.extend_from_slice(&FILEPASS.to_le_bytes());
        stream.extend_from_slice(&6u16.to_le_bytes());
        stream.extend_from_slice(&[1, 0, 1, 0, 1, 0]);
        let (s, _) = classify_xls(
            Cursor::new(compound("Workbook", &stream)),
            Limits::default(),
            None,
        )
        .unwrap();
        assert_eq!(s.findings.get("encrypted"), Some(&1));
    }

    #[test]
    fn customer_set_matches_through_shared_strings() {
        let mut b = crate::edm::EdmBuilder::new(b"k");
        b.add(IdKind::Email, b"zhang1@example.cn");
        b.add(IdKind::Email, b"zhang2@example.cn");
        let m = Arc::new(b.finish().matcher());
        let (s, _) = classify_xls(
            Cursor::new(xls(&[contacts(10)])),
            Limits::default(),
            Some(m),
        )
        .unwrap();
        assert_eq!(s.findings.get("edm"), Some(&2));
    }
}
