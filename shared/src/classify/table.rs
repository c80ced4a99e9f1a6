//! The streaming table classifier: splits CSV/TSV/text into rows and fields (quote-aware,
//! delimiter sniffed from the first line) and counts rows that carry identifiers.

use super::identifiers::{is_email, is_phone};

/// Longest field kept for validation; longer fields are cut (identifiers are short).
const MAX_FIELD: usize = 512;
/// Bytes of the first line used to sniff the delimiter.
const SNIFF: usize = 64 * 1024;

/// Counts from a table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableCounts {
    pub rows: u64,
    pub records: u64,
    pub emails: u64,
    pub phones: u64,
}

/// Incremental CSV/TSV classifier with bounded memory.
#[derive(Debug)]
pub struct TableClassifier {
    delimiter: Option<u8>,
    sniff: Vec<u8>,
    field: Vec<u8>,
    in_quotes: bool,
    quote_pending: bool,
    row_has_id: bool,
    row_nonempty: bool,
    counts: TableCounts,
}

impl TableClassifier {
    /// A classifier with a fixed delimiter, or `None` to sniff it from the first line.
    pub fn new(delimiter: Option<u8>) -> TableClassifier {
        TableClassifier {
            delimiter,
            sniff: Vec::new(),
            field: Vec::with_capacity(MAX_FIELD),
            in_quotes: false,
            quote_pending: false,
            row_has_id: false,
            row_nonempty: false,
            counts: TableCounts::default(),
        }
    }

    /// Feeds the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.delimiter.is_some() {
            self.scan(chunk);
            return;
        }
        self.sniff.extend_from_slice(chunk);
        let line_end = self.sniff.iter().position(|&b| b == b'\n');
        if line_end.is_some() || self.sniff.len() >= SNIFF {
            let first = &self.sniff[..line_end.unwrap_or(self.sniff.len())];
            self.delimiter = Some(sniff_delimiter(first));
            let buffered = std::mem::take(&mut self.sniff);
            self.scan(&buffered);
        }
    }

    fn scan(&mut self, chunk: &[u8]) {
        let delim = self.delimiter.unwrap_or(b',');
        for &b in chunk {
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
                    self.push(b);
                    continue;
                }
            }
            if b == delim {
                self.end_field();
            } else if b == b'\n' {
                self.end_field();
                self.end_row();
            } else if b == b'"' && self.field.iter().all(|c| c.is_ascii_whitespace()) {
                self.field.clear();
                self.in_quotes = true;
            } else if b != b'\r' {
                self.push(b);
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.field.len() < MAX_FIELD {
            self.field.push(b);
        }
    }

    fn end_field(&mut self) {
        let f = self.field.trim_ascii();
        if !f.is_empty() {
            self.row_nonempty = true;
            if is_email(f) {
                self.counts.emails += 1;
                self.row_has_id = true;
            } else if is_phone(f) {
                self.counts.phones += 1;
                self.row_has_id = true;
            } else if f.len() > 6 && f.contains(&b'@') {
                // Free text: look for addresses among its words.
                for word in f.split(|b| b.is_ascii_whitespace() || b"<>;,()".contains(b)) {
                    if is_email(word.trim_ascii_end().strip_suffix(b".").unwrap_or(word)) {
                        self.counts.emails += 1;
                        self.row_has_id = true;
                    }
                }
            }
        }
        self.field.clear();
    }

    fn end_row(&mut self) {
        if self.row_nonempty {
            self.counts.rows += 1;
        }
        if self.row_has_id {
            self.counts.records += 1;
        }
        self.row_has_id = false;
        self.row_nonempty = false;
    }

    /// Flushes the last row and returns the counts.
    pub fn finish(mut self) -> TableCounts {
        if self.delimiter.is_none() {
            let buffered = std::mem::take(&mut self.sniff);
            self.delimiter = Some(sniff_delimiter(&buffered));
            self.scan(&buffered);
        }
        self.in_quotes = false;
        self.end_field();
        self.end_row();
        self.counts
    }
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

    fn check(input: &str, chunk: usize, want: (u64, u64, u64, u64)) {
        let mut t = TableClassifier::new(None);
        for c in input.as_bytes().chunks(chunk.max(1)) {
            t.feed(c);
        }
        let c = t.finish();
        assert_eq!(
            (c.rows, c.records, c.emails, c.phones),
            want,
            "{input:?} chunk {chunk}"
        );
    }

    #[test]
    fn tables() {
        for chunk in [1, 3, 7, 4096] {
            check("a,b\nx@y.com,1\n", chunk, (2, 1, 1, 0));
            check("a;b\n\"Doe; Jane\";jane@doe.org\n", chunk, (2, 1, 1, 0));
            check("a\tb\njane@doe.org\t+1 415 555 0101\n", chunk, (2, 1, 1, 1));
            check("\"multi\nline\",x@y.com\n\n\n", chunk, (1, 1, 1, 0));
            check("\"say \"\"hi\"\"\",x@y.com", chunk, (1, 1, 1, 0));
            check(
                "note\n\"write to Ada <ada@example.com> today\"\n",
                chunk,
                (2, 1, 1, 0),
            );
            check("", chunk, (0, 0, 0, 0));
        }
    }

    #[test]
    fn long_line_is_bounded() {
        let mut t = TableClassifier::new(Some(b','));
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            t.feed(&junk);
        }
        t.feed(b",a@b.com\n");
        assert!(t.field.capacity() <= 4 * MAX_FIELD);
        assert_eq!(t.finish().records, 1);
    }
}
