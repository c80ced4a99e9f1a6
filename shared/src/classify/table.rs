//! The streaming table reader: splits CSV/TSV/text (UTF-8, after decoding) into rows and
//! fields, quote-aware, with the delimiter sniffed from the first line, and feeds them to
//! [`Records`]. Memory is bounded: fields are cut at [`MAX_FIELD`] bytes and at most
//! [`SNIFF`] bytes wait for the first line.

use super::record::Records;

/// Where a table reader puts rows: [`Records`] for classification, or anything else that
/// wants fields (the collector's customer-list import).
pub trait RowSink {
    /// One field of the current row (cut at [`MAX_FIELD`] bytes; untrimmed, so the last field
    /// of a CR LF line ends with its carriage return).
    fn field(&mut self, text: &[u8]);
    /// The current row ended.
    fn end_record(&mut self);
}

impl RowSink for Records {
    fn field(&mut self, text: &[u8]) {
        Records::field(self, text);
    }
    fn end_record(&mut self) {
        Records::end_record(self);
    }
}

/// Longest field kept for validation; longer fields are cut (identifiers are short).
pub const MAX_FIELD: usize = 512;
/// Bytes of the first line used to sniff the delimiter.
const SNIFF: usize = 64 * 1024;
/// A field longer than this is reported (`long_field`): no export has one; a crafted file does.
pub const LONG_FIELD: u64 = 1 << 20;

/// Incremental CSV/TSV reader with bounded memory.
#[derive(Debug)]
pub struct TableReader {
    delimiter: Option<u8>,
    sniff: Vec<u8>,
    field: Vec<u8>,
    in_quotes: bool,
    quote_pending: bool,
    /// Bytes of the current field, including those beyond [`MAX_FIELD`].
    field_len: u64,
    long_fields: u64,
}

impl TableReader {
    /// A reader with a fixed delimiter, or `None` to sniff it from the first line.
    pub fn new(delimiter: Option<u8>) -> TableReader {
        TableReader {
            delimiter,
            sniff: Vec::new(),
            field: Vec::with_capacity(MAX_FIELD),
            in_quotes: false,
            quote_pending: false,
            field_len: 0,
            long_fields: 0,
        }
    }

    /// Fields longer than [`LONG_FIELD`] bytes seen so far.
    pub fn long_fields(&self) -> u64 {
        self.long_fields
    }

    fn end_field<R: RowSink + ?Sized>(&mut self, rec: &mut R) {
        rec.field(&self.field);
        self.field.clear();
        if self.field_len > LONG_FIELD {
            self.long_fields += 1;
        }
        self.field_len = 0;
    }

    /// A reader for the same table from a line start on (same delimiter), once the
    /// delimiter is known.
    pub fn from_line_start(&self) -> Option<TableReader> {
        self.delimiter.map(|d| TableReader::new(Some(d)))
    }

    /// Whether what was fed ends exactly at a record's end, outside quotes: where a reader
    /// made by [`TableReader::from_line_start`] can take over.
    pub fn at_record_end(&self) -> bool {
        self.delimiter.is_some() && !self.in_quotes && self.field.is_empty() && self.field_len == 0
    }

    /// Takes over the long-field count of a reader that read the rest of the table.
    pub fn absorb(&mut self, rest: &TableReader) {
        self.long_fields += rest.long_fields;
    }

    /// The delimiter in use, once known.
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
    }

    /// Feeds the next chunk of UTF-8 text.
    pub fn feed<R: RowSink + ?Sized>(&mut self, chunk: &[u8], rec: &mut R) {
        if self.delimiter.is_some() {
            self.scan(chunk, rec);
            return;
        }
        self.sniff.extend_from_slice(chunk);
        let line_end = self.sniff.iter().position(|&b| b == b'\n');
        if line_end.is_some() || self.sniff.len() >= SNIFF {
            let first = &self.sniff[..line_end.unwrap_or(self.sniff.len())];
            self.delimiter = Some(sniff_delimiter(first));
            let buffered = std::mem::take(&mut self.sniff);
            self.scan(&buffered, rec);
        }
    }

    fn scan<R: RowSink + ?Sized>(&mut self, chunk: &[u8], rec: &mut R) {
        let delim = self.delimiter.unwrap_or(b',');
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            i += 1;
            if self.in_quotes {
                if self.quote_pending {
                    self.quote_pending = false;
                    if b == b'"' {
                        self.push(b'"');
                        continue;
                    }
                    self.in_quotes = false;
                    // fall through: `b` is outside the quotes
                } else if b == b'"' {
                    self.quote_pending = true;
                    continue;
                } else {
                    // The run of quoted bytes up to the next quote.
                    let start = i - 1;
                    let end = memchr::memchr(b'"', &chunk[i..]).map_or(chunk.len(), |p| i + p);
                    self.extend(&chunk[start..end]);
                    i = end;
                    continue;
                }
            }
            if b == delim {
                self.end_field(rec);
            } else if b == b'\n' {
                self.end_field(rec);
                rec.end_record();
            } else if b == b'"' && self.field.iter().all(|c| c.is_ascii_whitespace()) {
                self.field.clear();
                self.in_quotes = true;
            } else if b != b'\r' {
                // Fast path: the run of ordinary bytes up to the next delimiter, line end or
                // quote. `b` itself is always taken (it may be a quote inside an unquoted
                // field). A carriage return before the line end is trimmed with the field.
                let start = i - 1;
                let end = find3(&chunk[i..], delim, b'\n', b'"').map_or(chunk.len(), |p| i + p);
                if self.field.is_empty() && end < chunk.len() && chunk[end] != b'"' {
                    // The whole field lies in this chunk: hand it over without a copy.
                    let f = &chunk[start..end];
                    self.field_len = f.len() as u64;
                    rec.field(&f[..f.len().min(MAX_FIELD)]);
                    if self.field_len > LONG_FIELD {
                        self.long_fields += 1;
                    }
                    self.field_len = 0;
                    if chunk[end] == b'\n' {
                        rec.end_record();
                    }
                    i = end + 1;
                } else {
                    self.extend(&chunk[start..end]);
                    i = end;
                }
            }
        }
    }

    /// Appends bytes to the current field, keeping at most [`MAX_FIELD`] of them.
    fn extend(&mut self, bytes: &[u8]) {
        let room = MAX_FIELD.saturating_sub(self.field.len());
        self.field
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.field_len += bytes.len() as u64;
    }

    fn push(&mut self, b: u8) {
        self.field_len += 1;
        if self.field.len() < MAX_FIELD {
            self.field.push(b);
        }
    }

    /// Flushes the last row.
    pub fn finish<R: RowSink + ?Sized>(&mut self, rec: &mut R) {
        if self.delimiter.is_none() {
            let buffered = std::mem::take(&mut self.sniff);
            self.delimiter = Some(sniff_delimiter(&buffered));
            self.scan(&buffered, rec);
        }
        self.in_quotes = false;
        if !self.field.is_empty() {
            self.end_field(rec);
        }
        rec.end_record();
    }
}

/// The first position in `s` of `a`, `b` or `c`, eight bytes at a time: fields are short, so
/// this beats both a byte loop and a SIMD search that must first set up (BENCHMARKS.md).
fn find3(s: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` that is zero sets its high bit here; a false mark can only sit above a
    // true one, so the lowest mark is exact.
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let (ma, mb, mc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    let words = s.chunks_exact(8);
    let tail = words.remainder();
    for (k, word) in words.enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let marks = zero(w ^ ma) | zero(w ^ mb) | zero(w ^ mc);
        if marks != 0 {
            return Some(k * 8 + (marks.trailing_zeros() / 8) as usize);
        }
    }
    let at = s.len() - tail.len();
    tail.iter()
        .position(|&x| x == a || x == b || x == c)
        .map(|p| at + p)
}

/// The most frequent of `, ; \t |` outside quotes in the first line; `,` when none occurs.
fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = candidates.iter().position(|&c| c == b) {
                counts[i] += 1;
            }
        }
    }
    let best = (0..4).max_by_key(|&i| (counts[i], 4 - i)).unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `find3` agrees with a byte loop on every position and length, bytes near the searched
    /// ones included (0x80 and above, the bytes before and after each).
    #[test]
    fn the_word_search_finds_what_a_byte_loop_finds() {
        let alphabet = [
            b',', b'\n', b'"', b'+', b'-', b'!', b'#', 0x80, 0xff, 0, b'a', b'\t',
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..200 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let want = s.iter().position(|&x| x == b',' || x == b'\n' || x == b'"');
                assert_eq!(find3(&s, b',', b'\n', b'"'), want, "{s:?}");
            }
        }
    }

    /// One `check()` per module: (rows, records, emails, phones) of `input` fed in `chunk`s.
    fn check(input: &str, chunk: usize, want: (u64, u64, u64, u64)) {
        let mut t = TableReader::new(None);
        let mut rec = Records::table();
        for c in input.as_bytes().chunks(chunk.max(1)) {
            t.feed(c, &mut rec);
        }
        t.finish(&mut rec);
        let s = rec.finish();
        assert_eq!(
            (s.rows, s.records, s.ids[0], s.ids[1]),
            want,
            "{input:?} chunk {chunk}"
        );
    }

    #[test]
    fn tables() {
        for chunk in [1, 3, 7, 4096] {
            check("a,b\nx@y.com,1\n", chunk, (1, 1, 1, 0));
            check("a;b\n\"Doe; Jane\";jane@doe.org\n", chunk, (1, 1, 1, 0));
            check("a\tb\njane@doe.org\t+1 415 555 0101\n", chunk, (1, 1, 1, 1));
            check("\"multi\nline\",x@y.com\n\n\n", chunk, (1, 1, 1, 0));
            check("\"say \"\"hi\"\"\",x@y.com", chunk, (1, 1, 1, 0));
            check(
                "note\n\"write to Ada <ada@example.com> today\"\n",
                chunk,
                (2, 1, 1, 0),
            );
            check("", chunk, (0, 0, 0, 0));
            // CR LF line ends (Windows exports, SuiteCRM, Data Loader), quoted or not.
            check(
                "a,b\r\nx@y.com,+1 415 555 0101\r\n\"z@y.com\",\"2\"\r\n",
                chunk,
                (2, 2, 2, 1),
            );
            // A field past MAX_FIELD is cut, wherever the chunk boundaries fall.
            check(
                &format!("a,b\n{}x@y.com,1\n", "y".repeat(MAX_FIELD)),
                chunk,
                (1, 0, 0, 0),
            );
            // A quote inside an unquoted field is text, and never stalls the reader.
            check(
                "a,b\nsay 5\" now,x@y.com\nmap.insert(\"k\", 1)\n",
                chunk,
                (2, 1, 1, 0),
            );
        }
    }

    #[test]
    fn long_line_is_bounded() {
        let mut t = TableReader::new(Some(b','));
        let mut rec = Records::table();
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            t.feed(&junk, &mut rec);
        }
        t.feed(b",a@b.com\n", &mut rec);
        assert!(t.field.capacity() <= 4 * MAX_FIELD);
        t.finish(&mut rec);
        assert_eq!(rec.finish().records, 1);
    }
}
