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
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

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

const SIGNATURE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
/// Streams shorter than this live in the mini stream (64-byte sectors).
const MINI_CUTOFF: u64 = 4096;
/// Directory entries read at most (a workbook has a handful).
const MAX_DIR_ENTRIES: usize = 65_536;
/// Worksheets read at most.
const MAX_SHEETS: usize = 256;

// BIFF8 record types used here.
const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const FILEPASS: u16 = 0x002F;
const BOUNDSHEET: u16 = 0x0085;
const SST: u16 = 0x00FC;
const CONTINUE: u16 = 0x003C;
const LABELSST: u16 = 0x00FD;
const LABEL: u16 = 0x0204;
const RSTRING: u16 = 0x00D6;
const NUMBER: u16 = 0x0203;
const RK: u16 = 0x027E;
const MULRK: u16 = 0x00BD;
const FORMULA: u16 = 0x0006;
const STRING: u16 = 0x0207;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An OLE compound file opened for reading streams.
struct Compound<R> {
    r: R,
    sector_size: usize,
    /// Sectors the file can hold: every chain is shorter than this.
    sectors: u64,
    /// Where the allocation table's sectors are (from the header and the DIFAT chain).
    fat_sectors: Vec<u32>,
    /// The one cached sector of the allocation table: (index in `fat_sectors`, entries).
    fat_cache: Option<(usize, Vec<u32>)>,
    mini_cutoff: u64,
    first_mini_fat: u32,
    first_dir: u32,
}

/// A directory entry's stream: where it starts and how long it is.
#[derive(Clone, Copy)]
struct StreamRef {
    start: u32,
    size: u64,
}

impl<R: Read + Seek> Compound<R> {
    fn open(mut r: R) -> Result<Compound<R>, XlsError> {
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut h = [0u8; 512];
        r.read_exact(&mut h)
            .map_err(|_| XlsError::Damaged("shorter than its header"))?;
        if h[..8] != SIGNATURE {
            return Err(XlsError::Damaged("no compound-file signature"));
        }
        let shift = u16_at(&h, 0x1E).unwrap_or(0);
        let sector_size = match shift {
            9 => 512usize,
            12 => 4096,
            _ => return Err(XlsError::Damaged("unsupported sector size")),
        };
        let sectors = len
            .saturating_sub(sector_size as u64)
            .div_ceil(sector_size as u64);
        let num_fat = u64::from(u32_at(&h, 0x2C).unwrap_or(0));
        if num_fat > sectors {
            return Err(XlsError::Damaged("allocation table larger than the file"));
        }
        let mut fat_sectors: Vec<u32> = (0..109)
            .filter_map(|i| u32_at(&h, 0x4C + 4 * i))
            .take(num_fat as usize)
            .collect();
        let mut c = Compound {
            r,
            sector_size,
            sectors,
            fat_sectors: Vec::new(),
            fat_cache: None,
            // Fixed by the format; a header claiming more is not trusted with an allocation.
            mini_cutoff: MINI_CUTOFF,
            first_mini_fat: u32_at(&h, 0x3C).unwrap_or(END_OF_CHAIN),
            first_dir: u32_at(&h, 0x30).unwrap_or(END_OF_CHAIN),
        };
        // Large files list further table sectors in a chain of DIFAT sectors.
        let mut difat = u32_at(&h, 0x44).unwrap_or(END_OF_CHAIN);
        let per = sector_size / 4 - 1;
        let mut buf = vec![0u8; sector_size];
        let mut steps = 0u64;
        while (fat_sectors.len() as u64) < num_fat && difat < END_OF_CHAIN - 2 {
            steps += 1;
            if steps > sectors {
                return Err(XlsError::Damaged("looping DIFAT chain"));
            }
            c.read_sector(difat, &mut buf)?;
            let room = (num_fat as usize).saturating_sub(fat_sectors.len());
            fat_sectors.extend((0..per).filter_map(|i| u32_at(&buf, 4 * i)).take(room));
            difat = u32_at(&buf, 4 * per).unwrap_or(END_OF_CHAIN);
        }
        c.fat_sectors = fat_sectors;
        Ok(c)
    }

    fn read_sector(&mut self, sector: u32, buf: &mut [u8]) -> Result<(), XlsError> {
        if u64::from(sector) >= self.sectors {
            return Err(XlsError::Damaged("sector beyond the end of the file"));
        }
        let at = (u64::from(sector) + 1) * self.sector_size as u64;
        self.r.seek(SeekFrom::Start(at))?;
        // The last sector may be cut short by the writer: the rest reads as zeros.
        let mut filled = 0;
        while filled < buf.len() {
            match self.r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf[filled..].fill(0);
        Ok(())
    }

    /// The sector after `sector` in its chain.
    fn next(&mut self, sector: u32) -> Result<u32, XlsError> {
        let per = self.sector_size / 4;
        let idx = sector as usize / per;
        if self.fat_cache.as_ref().map(|(i, _)| *i) != Some(idx) {
            let at = *self
                .fat_sectors
                .get(idx)
                .ok_or(XlsError::Damaged("sector outside the allocation table"))?;
            let mut buf = vec![0u8; self.sector_size];
            self.read_sector(at, &mut buf)?;
            let entries = (0..per).filter_map(|i| u32_at(&buf, 4 * i)).collect();
            self.fat_cache = Some((idx, entries));
        }
        let entries = self.fat_cache.as_ref().map(|(_, e)| e);
        entries
            .and_then(|e| e.get(sector as usize % per).copied())
            .ok_or(XlsError::Damaged("sector outside the allocation table"))
    }

    /// Reads a whole chain of regular sectors, up to `max` bytes (directory, mini table).
    fn read_chain(&mut self, start: u32, max: usize) -> Result<Vec<u8>, XlsError> {
        let mut out = Vec::new();
        let mut s = start;
        let mut buf = vec![0u8; self.sector_size];
        let mut steps = 0u64;
        while s < END_OF_CHAIN - 2 && out.len() < max {
            steps += 1;
            if steps > self.sectors {
                return Err(XlsError::Damaged("looping sector chain"));
            }
            self.read_sector(s, &mut buf)?;
            out.extend_from_slice(&buf);
            s = self.next(s)?;
        }
        Ok(out)
    }

    /// Finds the named stream (case-insensitive) in the directory, and the root entry's
    /// stream (the container of small streams).
    fn find(
        &mut self,
        names: &[&str],
    ) -> Result<(Option<(usize, StreamRef)>, StreamRef), XlsError> {
        let dir = self.read_chain(self.first_dir, MAX_DIR_ENTRIES * 128)?;
        let mut root = StreamRef {
            start: END_OF_CHAIN,
            size: 0,
        };
        let mut found = None;
        for e in dir.chunks_exact(128) {
            let kind = e[0x42];
            let name_len = usize::from(u16_at(e, 0x40).unwrap_or(0)).min(64);
            let units: Vec<u16> = (0..name_len.saturating_sub(2) / 2)
                .filter_map(|i| u16_at(e, 2 * i))
                .collect();
            let name = String::from_utf16_lossy(&units);
            let sref = StreamRef {
                start: u32_at(e, 0x74).unwrap_or(END_OF_CHAIN),
                // Version 3 files leave the high half undefined.
                size: if self.sector_size == 512 {
                    u64::from(u32_at(e, 0x78).unwrap_or(0))
                } else {
                    u32_at(e, 0x78).map_or(0, u64::from)
                        | u64::from(u32_at(e, 0x7C).unwrap_or(0)) << 32
                },
            };
            match kind {
                5 => root = sref,
                2 => {
                    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&name)) {
                        if found.is_none_or(|(j, _)| i < j) {
                            found = Some((i, sref));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((found, root))
    }

    /// A reader over a stream: regular sectors streamed, a small stream read from the mini
    /// stream (it is under the cutoff, 4 KiB, so holding it is bounded).
    fn stream(mut self, s: StreamRef, root: StreamRef) -> Result<Stream<R>, XlsError> {
        if s.size < self.mini_cutoff {
            let data = self.read_mini(s, root)?;
            return Ok(Stream::Small(std::io::Cursor::new(data)));
        }
        Ok(Stream::Sectors {
            buf: vec![0u8; self.sector_size],
            pos: self.sector_size,
            next: s.start,
            left: s.size,
            steps: 0,
            file: self,
        })
    }

    fn read_mini(&mut self, s: StreamRef, root: StreamRef) -> Result<Vec<u8>, XlsError> {
        const MINI: usize = 64;
        let size = usize::try_from(s.size.min(self.mini_cutoff)).unwrap_or(0);
        let per_sector = self.sector_size / 4;
        let mut out = Vec::with_capacity(size);
        let mut m = s.start;
        let mut steps = 0;
        while out.len() < size && m < END_OF_CHAIN - 2 {
            steps += 1;
            if steps > size / MINI + 1 {
                return Err(XlsError::Damaged("looping mini-sector chain"));
            }
            // Where mini sector m sits: offset m*64 in the root's stream.
            let offset = m as usize * MINI;
            let hop = offset / self.sector_size;
            if hop as u64 >= self.sectors || m as usize / per_sector >= self.sectors as usize {
                return Err(XlsError::Damaged("mini sector beyond the end of the file"));
            }
            let mut sector = root.start;
            for _ in 0..hop {
                sector = self.next(sector)?;
            }
            let mut buf = vec![0u8; self.sector_size];
            self.read_sector(sector, &mut buf)?;
            let at = offset % self.sector_size;
            let take = MINI.min(size - out.len());
            out.extend_from_slice(&buf[at..at + take]);
            // The mini table: entry m of the chain starting at first_mini_fat.
            let mut table_sector = self.first_mini_fat;
            for _ in 0..(m as usize / per_sector) {
                table_sector = self.next(table_sector)?;
            }
            self.read_sector(table_sector, &mut buf)?;
            m = u32_at(&buf, 4 * (m as usize % per_sector)).unwrap_or(END_OF_CHAIN);
        }
        Ok(out)
    }
}

enum Stream<R> {
    Small(std::io::Cursor<Vec<u8>>),
    Sectors {
        file: Compound<R>,
        buf: Vec<u8>,
        pos: usize,
        next: u32,
        left: u64,
        steps: u64,
    },
}

impl<R: Read + Seek> Read for Stream<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Small(c) => c.read(out),
            Stream::Sectors {
                file,
                buf,
                pos,
                next,
                left,
                steps,
            } => {
                if *left == 0 {
                    return Ok(0);
                }
                if *pos == buf.len() {
                    *steps += 1;
                    if *next >= END_OF_CHAIN - 2 || *steps > file.sectors {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "stream chain ends early or loops",
                        ));
                    }
                    let s = *next;
                    file.read_sector(s, buf).map_err(to_io)?;
                    *next = file.next(s).map_err(to_io)?;
                    *pos = 0;
                }
                let n = out.len().min(buf.len() - *pos).min(*left as usize);
                out[..n].copy_from_slice(&buf[*pos..*pos + n]);
                *pos += n;
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

fn to_io(e: XlsError) -> std::io::Error {
    match e {
        XlsError::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// Reads BIFF records: `u16 type | u16 length | data`, with a reusable buffer.
struct Biff<S> {
    s: S,
    data: Vec<u8>,
    /// Bytes of the stream read so far.
    read: u64,
}

impl<S: Read> Biff<S> {
    /// The next record's type (its data in `self.data`), or `None` at the stream's end.
    fn next(&mut self) -> std::io::Result<Option<u16>> {
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.s.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Ok(None),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let typ = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        self.data.resize(len, 0);
        self.s.read_exact(&mut self.data)?;
        self.read += 4 + len as u64;
        Ok(Some(typ))
    }
}

/// Where the shared-string parser stands between pieces of the table.
enum SstState {
    /// Collecting a string's header: `cch u16, flags u8, [cRun u16], [cbExtRst u32]`.
    Header(Vec<u8>),
    /// Characters still to come, their width, and the bytes to skip after them.
    Chars { left: u32, wide: bool, then: u64 },
    /// Formatting runs and phonetic data after a string.
    Skip(u64),
}

/// The SST record and its CONTINUE records, parsed piece by piece. At a piece boundary inside
/// a string's characters the next piece starts with a byte restating their width.
struct SstParser {
    state: SstState,
    /// The string being read, as UTF-16 units (capped).
    units: Vec<u16>,
    pending_low: Option<u8>,
    text: Vec<u8>,
    started: bool,
}

impl SstParser {
    fn new() -> SstParser {
        SstParser {
            state: SstState::Header(Vec::new()),
            units: Vec::new(),
            pending_low: None,
            text: Vec::new(),
            started: false,
        }
    }

    fn piece(&mut self, mut p: &[u8], out: &mut SharedStrings, edm: Option<&Matcher>) {
        if !self.started {
            // cstTotal and cstUnique: counts we do not trust for allocation.
            self.started = true;
            p = p.get(8..).unwrap_or(&[]);
        } else if let SstState::Chars { wide, left, .. } = &mut self.state {
            if *left > 0 {
                if let Some((&flag, rest)) = p.split_first() {
                    *wide = flag & 1 != 0;
                    self.pending_low = None;
                    p = rest;
                }
            }
        }
        while !p.is_empty() {
            match &mut self.state {
                SstState::Header(h) => {
                    // cch and flags first; the flags say how long the rest of the header is.
                    let want = match h.get(2) {
                        None => 3,
                        Some(f) => {
                            3 + 2 * usize::from(f & 0x08 != 0) + 4 * usize::from(f & 0x04 != 0)
                        }
                    };
                    let take = (want - h.len()).min(p.len());
                    h.extend_from_slice(&p[..take]);
                    p = &p[take..];
                    let complete = h.len() >= 3
                        && h.len()
                            == 3 + 2 * usize::from(h[2] & 0x08 != 0)
                                + 4 * usize::from(h[2] & 0x04 != 0);
                    if complete {
                        let cch = u32::from(u16::from_le_bytes([h[0], h[1]]));
                        let flags = h[2];
                        let mut at = 3;
                        let mut then = 0u64;
                        if flags & 0x08 != 0 {
                            then += 4 * u64::from(u16::from_le_bytes([h[at], h[at + 1]]));
                            at += 2;
                        }
                        if flags & 0x04 != 0 {
                            then += u64::from(u32::from_le_bytes([
                                h[at],
                                h[at + 1],
                                h[at + 2],
                                h[at + 3],
                            ]));
                        }
                        self.units.clear();
                        self.pending_low = None;
                        self.state = SstState::Chars {
                            left: cch,
                            wide: flags & 0x01 != 0,
                            then,
                        };
                        if cch == 0 {
                            self.end_string(out, edm);
                        }
                    }
                }
                SstState::Chars { left, wide, then } => {
                    if *wide {
                        while *left > 0 && !p.is_empty() {
                            match self.pending_low.take() {
                                None => self.pending_low = Some(p[0]),
                                Some(lo) => {
                                    if self.units.len() < MAX_FIELD {
                                        self.units.push(u16::from_le_bytes([lo, p[0]]));
                                    }
                                    *left -= 1;
                                }
                            }
                            p = &p[1..];
                        }
                    } else {
                        let take = (*left as usize).min(p.len());
                        let room = MAX_FIELD.saturating_sub(self.units.len());
                        self.units
                            .extend(p[..take.min(room)].iter().map(|&b| u16::from(b)));
                        *left -= take as u32;
                        p = &p[take..];
                    }
                    if *left == 0 {
                        let then = *then;
                        self.end_string(out, edm);
                        if then > 0 {
                            self.state = SstState::Skip(then);
                        }
                    }
                }
                SstState::Skip(n) => {
                    let take = (*n).min(p.len() as u64);
                    *n -= take;
                    p = &p[take as usize..];
                    if *n == 0 {
                        self.state = SstState::Header(Vec::new());
                    }
                }
            }
        }
    }

    fn end_string(&mut self, out: &mut SharedStrings, edm: Option<&Matcher>) {
        self.text.clear();
        for c in char::decode_utf16(self.units.iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut b = [0u8; 4];
            let s = c.encode_utf8(&mut b);
            if self.text.len() + s.len() > MAX_FIELD {
                break;
            }
            self.text.extend_from_slice(s.as_bytes());
        }
        out.push(&self.text, edm);
        self.units.clear();
        self.state = SstState::Header(Vec::new());
    }
}

/// An `XLUnicodeString` (`cch u16, flags u8, chars`) at `at` in a record, as UTF-8.
fn unicode_string(d: &[u8], at: usize, out: &mut Vec<u8>) {
    out.clear();
    let (Some(cch), Some(&flags)) = (u16_at(d, at), d.get(at + 2)) else {
        return;
    };
    let chars = &d[(at + 3).min(d.len())..];
    let cch = usize::from(cch);
    let text = if flags & 1 != 0 {
        let units: Vec<u16> = chars
            .chunks_exact(2)
            .take(cch.min(MAX_FIELD))
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        chars
            .iter()
            .take(cch.min(MAX_FIELD))
            .map(|&b| char::from(b))
            .collect()
    };
    let cut = (0..=text.len().min(MAX_FIELD))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    out.extend_from_slice(&text.as_bytes()[..cut]);
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

/// Writes `.xls` workbooks (BIFF8 in a version-3 compound file), for tests and the seeded
/// corpus: shared strings split over CONTINUE records the way Excel splits them, numbers as
/// NUMBER or RK records, and streams under 4 KiB in the mini stream.
#[cfg(any(test, feature = "testkit"))]
pub mod write {
    /// A cell to write.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Cell {
        /// A shared string (LABELSST).
        Text(String),
        /// An inline string (LABEL), as old writers produce.
        Inline(String),
        /// A number (NUMBER, or RK when it is a small integer).
        Number(f64),
        /// Nothing.
        Empty,
    }

    fn record(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
        out.extend_from_slice(&typ.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
    }

    /// The SST record and its CONTINUE records; strings are split at the 8,224-byte limit.
    fn sst(out: &mut Vec<u8>, strings: &[String]) {
        const LIMIT: usize = 8224;
        let mut pieces: Vec<Vec<u8>> = vec![Vec::new()];
        let n = strings.len() as u32;
        pieces[0].extend_from_slice(&n.to_le_bytes());
        pieces[0].extend_from_slice(&n.to_le_bytes());
        for s in strings {
            let units: Vec<u16> = s.encode_utf16().collect();
            let wide = units.iter().any(|&u| u > 0xFF);
            // The header stays in one piece.
            if pieces.last().map_or(0, Vec::len) + 3 > LIMIT {
                pieces.push(Vec::new());
            }
            if let Some(p) = pieces.last_mut() {
                p.extend_from_slice(&(units.len() as u16).to_le_bytes());
                p.push(u8::from(wide));
            }
            let width = if wide { 2 } else { 1 };
            let mut i = 0;
            while i < units.len() {
                let room = LIMIT - pieces.last().map_or(0, Vec::len);
                if room < width {
                    pieces.push(vec![u8::from(wide)]);
                    continue;
                }
                let take = (room / width).min(units.len() - i);
                if let Some(p) = pieces.last_mut() {
                    for &u in &units[i..i + take] {
                        if wide {
                            p.extend_from_slice(&u.to_le_bytes());
                        } else {
                            p.push(u as u8);
                        }
                    }
                }
                i += take;
            }
        }
        for (k, p) in pieces.iter().enumerate() {
            record(out, if k == 0 { 0x00FC } else { 0x003C }, p);
        }
    }

    fn bof(out: &mut Vec<u8>, dt: u16) {
        let mut d = vec![0u8; 16];
        d[0..2].copy_from_slice(&0x0600u16.to_le_bytes());
        d[2..4].copy_from_slice(&dt.to_le_bytes());
        record(out, 0x0809, &d);
    }

    /// The `Workbook` stream for these sheets (rows of cells).
    pub fn workbook_stream(sheets: &[Vec<Vec<Cell>>]) -> Vec<u8> {
        let mut strings: Vec<String> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for sheet in sheets {
            for row in sheet {
                for c in row {
                    if let Cell::Text(t) = c {
                        index.entry(t.clone()).or_insert_with(|| {
                            strings.push(t.clone());
                            strings.len() - 1
                        });
                    }
                }
            }
        }
        let mut out = Vec::new();
        bof(&mut out, 0x0005);
        for k in 0..sheets.len() {
            // Positions are not used by readers that follow the stream; names are.
            let name = format!("Sheet{}", k + 1);
            let mut d = vec![0u8; 6];
            d.push(name.len() as u8);
            d.push(0);
            d.extend_from_slice(name.as_bytes());
            record(&mut out, 0x0085, &d);
        }
        sst(&mut out, &strings);
        record(&mut out, 0x000A, &[]);
        for sheet in sheets {
            bof(&mut out, 0x0010);
            for (r, row) in sheet.iter().enumerate() {
                for (c, cell) in row.iter().enumerate() {
                    let mut d = Vec::new();
                    d.extend_from_slice(&(r as u16).to_le_bytes());
                    d.extend_from_slice(&(c as u16).to_le_bytes());
                    d.extend_from_slice(&15u16.to_le_bytes());
                    match cell {
                        Cell::Text(t) => {
                            d.extend_from_slice(&(index[t] as u32).to_le_bytes());
                            record(&mut out, 0x00FD, &d);
                        }
                        Cell::Inline(t) => {
                            let units: Vec<u16> = t.encode_utf16().collect();
                            d.extend_from_slice(&(units.len() as u16).to_le_bytes());
                            d.push(1);
                            for u in units {
                                d.extend_from_slice(&u.to_le_bytes());
                            }
                            record(&mut out, 0x0204, &d);
                        }
                        Cell::Number(v) if v.fract() == 0.0 && v.abs() < 5e8 => {
                            let rk = ((*v as i32) << 2) as u32 | 2;
                            d.extend_from_slice(&rk.to_le_bytes());
                            record(&mut out, 0x027E, &d);
                        }
                        Cell::Number(v) => {
                            d.extend_from_slice(&v.to_le_bytes());
                            record(&mut out, 0x0203, &d);
                        }
                        Cell::Empty => {}
                    }
                }
            }
            record(&mut out, 0x000A, &[]);
        }
        out
    }

    /// A whole `.xls` file for these sheets.
    pub fn xls(sheets: &[Vec<Vec<Cell>>]) -> Vec<u8> {
        compound("Workbook", &workbook_stream(sheets))
    }

    /// A version-3 compound file (512-byte sectors) holding one stream.
    pub fn compound(name: &str, stream: &[u8]) -> Vec<u8> {
        const SS: usize = 512;
        const END: u32 = 0xFFFF_FFFE;
        const FREE: u32 = 0xFFFF_FFFF;
        const FATSECT: u32 = 0xFFFF_FFFD;
        let small = stream.len() < 4096;
        // Layout: [FAT sectors][directory][mini table?][data sectors].
        let data_len = if small {
            stream.len().div_ceil(64) * 64
        } else {
            stream.len()
        };
        let data_sectors = data_len.div_ceil(SS).max(1);
        let mini_sectors = usize::from(small);
        let mut fat_count = 1;
        while fat_count * (SS / 4) < fat_count + 1 + mini_sectors + data_sectors {
            fat_count += 1;
        }
        assert!(
            fat_count <= 109,
            "test workbook too large for a header-only DIFAT"
        );
        let dir_at = fat_count;
        let mini_at = dir_at + 1;
        let data_at = mini_at + mini_sectors;
        let total = data_at + data_sectors;
        let mut fat = vec![FREE; fat_count * SS / 4];
        for f in fat.iter_mut().take(fat_count) {
            *f = FATSECT;
        }
        fat[dir_at] = END;
        if small {
            fat[mini_at] = END;
        }
        for (s, f) in fat.iter_mut().enumerate().take(total).skip(data_at) {
            *f = if s + 1 < total { (s + 1) as u32 } else { END };
        }
        let mut out = vec![0u8; 512];
        out[..8].copy_from_slice(&super::SIGNATURE);
        out[0x18..0x1A].copy_from_slice(&0x003Eu16.to_le_bytes());
        out[0x1A..0x1C].copy_from_slice(&3u16.to_le_bytes());
        out[0x1C..0x1E].copy_from_slice(&0xFFFEu16.to_le_bytes());
        out[0x1E..0x20].copy_from_slice(&9u16.to_le_bytes());
        out[0x20..0x22].copy_from_slice(&6u16.to_le_bytes());
        out[0x2C..0x30].copy_from_slice(&(fat_count as u32).to_le_bytes());
        out[0x30..0x34].copy_from_slice(&(dir_at as u32).to_le_bytes());
        out[0x38..0x3C].copy_from_slice(&4096u32.to_le_bytes());
        let (mini_first, mini_n) = if small {
            (mini_at as u32, 1u32)
        } else {
            (END, 0)
        };
        out[0x3C..0x40].copy_from_slice(&mini_first.to_le_bytes());
        out[0x40..0x44].copy_from_slice(&mini_n.to_le_bytes());
        out[0x44..0x48].copy_from_slice(&END.to_le_bytes());
        for i in 0..109 {
            let v = if i < fat_count { i as u32 } else { FREE };
            out[0x4C + 4 * i..0x50 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        for f in &fat {
            out.extend_from_slice(&f.to_le_bytes());
        }
        // Directory: the root (owning the mini stream when there is one) and the stream.
        let mut dir = vec![0u8; SS];
        let entry = |d: &mut [u8], name: &str, kind: u8, start: u32, size: u32, child: u32| {
            let units: Vec<u16> = name.encode_utf16().collect();
            for (i, u) in units.iter().enumerate() {
                d[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
            }
            d[0x40..0x42].copy_from_slice(&((units.len() as u16 + 1) * 2).to_le_bytes());
            d[0x42] = kind;
            d[0x43] = 1;
            d[0x44..0x48].copy_from_slice(&FREE.to_le_bytes());
            d[0x48..0x4C].copy_from_slice(&FREE.to_le_bytes());
            d[0x4C..0x50].copy_from_slice(&child.to_le_bytes());
            d[0x74..0x78].copy_from_slice(&start.to_le_bytes());
            d[0x78..0x7C].copy_from_slice(&size.to_le_bytes());
        };
        let (root_start, root_size) = if small {
            (data_at as u32, data_len as u32)
        } else {
            (END, 0)
        };
        entry(&mut dir[..128], "Root Entry", 5, root_start, root_size, 1);
        let start = if small { 0 } else { data_at as u32 };
        entry(
            &mut dir[128..256],
            name,
            2,
            start,
            stream.len() as u32,
            FREE,
        );
        for k in 2..4 {
            dir[128 * k + 0x44..128 * k + 0x50].fill(0xFF);
        }
        out.extend_from_slice(&dir);
        if small {
            let mut mini = vec![0xFFu8; SS];
            let n = data_len / 64;
            for m in 0..n {
                let v = if m + 1 < n { (m + 1) as u32 } else { END };
                mini[4 * m..4 * m + 4].copy_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&mini);
        }
        let mut data = stream.to_vec();
        data.resize(data_sectors * SS, 0);
        out.extend_from_slice(&data);
        out
    }
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
