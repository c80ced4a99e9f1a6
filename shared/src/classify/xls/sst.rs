//! The shared-string table (`SST`, continued across `CONTINUE` records), reduced as it is
//! parsed to one byte per string ([`SharedStrings`]), as for XLSX.

use super::u16_at;
use crate::classify::table::MAX_FIELD;
use crate::classify::xlsx::SharedStrings;
use crate::edm::Matcher;

/// Where the shared-string parser stands between pieces of the table.
pub(super) enum SstState {
    /// Collecting a string's header: `cch u16, flags u8, [cRun u16], [cbExtRst u32]`.
    Header(Vec<u8>),
    /// Characters still to come, their width, and the bytes to skip after them.
    Chars { left: u32, wide: bool, then: u64 },
    /// Formatting runs and phonetic data after a string.
    Skip(u64),
}

/// The SST record and its CONTINUE records, parsed piece by piece. At a piece boundary inside
/// a string's characters the next piece starts with a byte restating their width.
pub(super) struct SstParser {
    pub(super) state: SstState,
    /// The string being read, as UTF-16 units (capped).
    pub(super) units: Vec<u16>,
    pub(super) pending_low: Option<u8>,
    pub(super) text: Vec<u8>,
    pub(super) started: bool,
}

impl SstParser {
    pub(super) fn new() -> SstParser {
        SstParser {
            state: SstState::Header(Vec::new()),
            units: Vec::new(),
            pending_low: None,
            text: Vec::new(),
            started: false,
        }
    }

    pub(super) fn piece(&mut self, mut p: &[u8], out: &mut SharedStrings, edm: Option<&Matcher>) {
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

    pub(super) fn end_string(&mut self, out: &mut SharedStrings, edm: Option<&Matcher>) {
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
pub(super) fn unicode_string(d: &[u8], at: usize, out: &mut Vec<u8>) {
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
