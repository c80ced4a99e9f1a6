//! JSON and NDJSON exports: a streaming lexer (no tree is built) that feeds every string or
//! number value to [`Records`] under its key. An entry is an object whose parent is an array
//! or nothing (top level, or one NDJSON line); objects nested inside an entry belong to it.
//! Memory is bounded: strings are cut at [`MAX_FIELD`] bytes and nesting is tracked to
//! [`MAX_DEPTH`] levels (deeper brackets are only counted).

use super::record::Records;
use super::table::MAX_FIELD;

/// Nesting tracked exactly.
const MAX_DEPTH: usize = 256;
/// Longest key kept.
const MAX_KEY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    Str,
    Escape,
    Unicode(u8, u32),
    Scalar,
}

/// Streaming JSON/NDJSON reader.
#[derive(Debug)]
pub struct JsonReader {
    stack: Vec<Frame>,
    /// Depth beyond [`MAX_DEPTH`] that is only counted.
    overflow: usize,
    lex: Lex,
    buf: Vec<u8>,
    key: Vec<u8>,
    /// In an object, the next string is a key.
    expect_key: bool,
}

impl Default for JsonReader {
    fn default() -> Self {
        JsonReader::new()
    }
}

impl JsonReader {
    pub fn new() -> JsonReader {
        JsonReader {
            stack: Vec::new(),
            overflow: 0,
            lex: Lex::Between,
            buf: Vec::with_capacity(MAX_FIELD),
            key: Vec::new(),
            expect_key: false,
        }
    }

    fn push_byte(&mut self, b: u8) {
        if self.buf.len() < MAX_FIELD {
            self.buf.push(b);
        }
    }

    fn push_char(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        for &b in c.encode_utf8(&mut tmp).as_bytes() {
            self.push_byte(b);
        }
    }

    /// Feeds UTF-8 text.
    pub fn feed(&mut self, chunk: &[u8], rec: &mut Records) {
        for &b in chunk {
            self.byte(b, rec);
        }
    }

    fn byte(&mut self, b: u8, rec: &mut Records) {
        match self.lex {
            Lex::Str => match b {
                b'"' => {
                    self.lex = Lex::Between;
                    self.end_string(rec);
                }
                b'\\' => self.lex = Lex::Escape,
                _ => self.push_byte(b),
            },
            Lex::Escape => {
                self.lex = Lex::Str;
                match b {
                    b'u' => self.lex = Lex::Unicode(0, 0),
                    b'n' | b'r' | b't' | b'b' | b'f' => self.push_byte(b' '),
                    other => self.push_byte(other),
                }
            }
            Lex::Unicode(n, v) => {
                let digit = (b as char).to_digit(16).unwrap_or(0);
                let v = v * 16 + digit;
                if n == 3 {
                    self.lex = Lex::Str;
                    self.push_char(char::from_u32(v).unwrap_or('?'));
                } else {
                    self.lex = Lex::Unicode(n + 1, v);
                }
            }
            Lex::Scalar => {
                if b.is_ascii_alphanumeric() || b"+-.".contains(&b) {
                    self.push_byte(b);
                } else {
                    self.end_scalar(rec);
                    self.lex = Lex::Between;
                    self.structural(b, rec);
                }
            }
            Lex::Between => self.structural(b, rec),
        }
    }

    fn structural(&mut self, b: u8, rec: &mut Records) {
        match b {
            b'"' => {
                self.lex = Lex::Str;
                self.buf.clear();
            }
            b'{' => self.open(Frame::Object),
            b'[' => self.open(Frame::Array),
            b'}' | b']' => self.close(rec),
            b',' => self.expect_key = self.stack.last() == Some(&Frame::Object),
            b':' => self.expect_key = false,
            b'\n' if self.stack.is_empty() => rec.end_record(),
            _ if b.is_ascii_alphanumeric() || b == b'-' || b == b'+' => {
                self.lex = Lex::Scalar;
                self.buf.clear();
                self.buf.push(b);
            }
            _ => {}
        }
    }

    fn open(&mut self, f: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        self.stack.push(f);
        self.expect_key = f == Frame::Object;
    }

    fn close(&mut self, rec: &mut Records) {
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        let closed = self.stack.pop();
        let parent = self.stack.last().copied();
        if closed == Some(Frame::Object) && parent != Some(Frame::Object) {
            rec.end_record();
        }
        self.expect_key = false;
    }

    fn end_string(&mut self, rec: &mut Records) {
        if self.expect_key && self.stack.last() == Some(&Frame::Object) {
            self.key.clear();
            self.key
                .extend_from_slice(&self.buf[..self.buf.len().min(MAX_KEY)]);
            self.expect_key = false;
        } else {
            let key = String::from_utf8_lossy(&self.key).into_owned();
            rec.named(&key, &self.buf);
        }
    }

    fn end_scalar(&mut self, rec: &mut Records) {
        if matches!(self.buf.as_slice(), b"true" | b"false" | b"null") {
            return;
        }
        let key = String::from_utf8_lossy(&self.key).into_owned();
        rec.named(&key, &self.buf);
    }

    /// Ends the input.
    pub fn finish(&mut self, rec: &mut Records) {
        if self.lex == Lex::Scalar {
            self.end_scalar(rec);
        }
        rec.end_record();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: (entries, entries with identifiers, customer table).
    fn check(input: &str, want: (u64, u64, bool)) {
        for step in [1, 3, 4096] {
            let mut r = JsonReader::new();
            let mut rec = Records::entries();
            for c in input.as_bytes().chunks(step) {
                r.feed(c, &mut rec);
            }
            r.finish(&mut rec);
            let s = rec.finish();
            assert_eq!((s.rows, s.records, s.customer_table), want, "{input}");
        }
    }

    #[test]
    fn exports() {
        // A HubSpot-style API dump: entries inside a wrapper, nested properties.
        check(
            r#"{"status":"ok","results":[
                {"id":"1","properties":{"firstname":"Ada","email":"ada@example.com","phone":"(415) 555-0101"}},
                {"id":"2","properties":{"firstname":"Bob","email":"bob@example.org"}},
                {"id":"3","properties":{"firstname":"Cy"}}]}"#,
            (3, 2, true),
        );
        // NDJSON with escaped Chinese keys and a number-typed mobile.
        check(
            "{\"\\u5ba2\\u6237\":\"\\u6df1\\u5733\",\"\\u624b\\u673a\":13800138000}\n{\"客户\":\"上海\",\"手机\":13912345678}\n",
            (2, 2, true),
        );
        // Config files and metrics are not customer data.
        check(
            r#"{"port": 8080, "debug": true, "admin": "ops@example.com"}"#,
            (1, 1, false),
        );
        check("[1.5, 2.25, 3.0]", (1, 0, false));
        // Deep nesting stays bounded.
        check(&("[".repeat(10_000) + &"]".repeat(10_000)), (0, 0, false));
    }
}
