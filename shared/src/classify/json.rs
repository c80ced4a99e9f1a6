//! JSON and NDJSON exports: a streaming lexer (no tree is built) that feeds every string or
//! number value to [`Records`] under its key. An entry is an object whose parent is an array
//! or nothing (top level, or one NDJSON line); objects nested inside an entry belong to it.
//! The other shapes pandas and CRMs write are read as rows too:
//! - `orient="index"` (`{"0": {"email": …}, "1": {…}}`): each object in the top-level object
//!   is an entry;
//! - `orient="columns"` (`{"email": {"0": …, "1": …}}`): objects keyed by row numbers are
//!   columns, and each value goes to its row;
//! - `orient="split"` and `"values"` (`{"columns": [...], "data": [[…], …]}`, `[[…], …]`):
//!   each array inside an array is a row, its values named by `columns` when given; rows
//!   without names are a table's rows, in column order, judged like a CSV file's.
//!
//! Memory is bounded: strings are cut at [`MAX_FIELD`] bytes, nesting is tracked to
//! [`MAX_DEPTH`] levels (deeper brackets are only counted), and at most [`MAX_NAMES`] column
//! names are kept.

use super::record::Records;
use super::table::MAX_FIELD;

/// Nesting tracked exactly.
const MAX_DEPTH: usize = 256;
/// Longest key kept.
const MAX_KEY: usize = 64;
/// Column names kept for `split` rows.
const MAX_NAMES: usize = 256;

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

/// One open bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    frame: Frame,
    /// Closing it ends a record (an entry object, or a row array).
    entry: bool,
    /// Values taken so far (a row array's position).
    items: usize,
    /// A column of a column-oriented file: its values go to the rows their keys name.
    column: bool,
    /// Values were read directly in it (a top-level object with its own fields is one entry,
    /// not a container of entries).
    scalars: bool,
}

/// How the top-level object's objects are laid out, once the first of them says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Undecided,
    /// Entries keyed by row (`orient="index"`) or plain nested objects.
    Index,
    /// Columns keyed by row number (`orient="columns"`).
    Columns,
}

/// Streaming JSON/NDJSON reader.
#[derive(Debug)]
pub struct JsonReader {
    stack: Vec<Level>,
    /// Depth beyond [`MAX_DEPTH`] that is only counted.
    overflow: usize,
    lex: Lex,
    buf: Vec<u8>,
    key: Vec<u8>,
    /// In an object, the next string is a key.
    expect_key: bool,
    shape: Shape,
    /// The key of the column being read (column-oriented files).
    column_name: String,
    /// `columns` of a split file, for its rows' values.
    names: Vec<String>,
    /// Reading the top-level `columns` array of names.
    in_names: bool,
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
            shape: Shape::Undecided,
            column_name: String::new(),
            names: Vec::new(),
            in_names: false,
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
            b',' => self.expect_key = self.top() == Some(Frame::Object),
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

    fn top(&self) -> Option<Frame> {
        self.stack.last().map(|l| l.frame)
    }

    fn open(&mut self, f: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        let parent = self.top();
        // An object in the top-level object: an entry of an index-shaped file (decided at
        // its first key), or a column of a column-shaped one.
        let in_top_object =
            self.stack.len() == 1 && parent == Some(Frame::Object) && !self.stack[0].scalars;
        let entry = match (f, parent) {
            (Frame::Object, Some(Frame::Object)) => in_top_object && self.shape != Shape::Columns,
            (Frame::Object, _) => true,
            (Frame::Array, Some(Frame::Array)) => true,
            (Frame::Array, _) => false,
        };
        if in_top_object && f == Frame::Object {
            self.column_name = String::from_utf8_lossy(&self.key).into_owned();
        }
        self.in_names =
            f == Frame::Array && in_top_object && self.key == b"columns" && self.names.is_empty();
        if let Some(p) = self.stack.last_mut() {
            p.items += 1;
        }
        self.stack.push(Level {
            frame: f,
            entry,
            items: 0,
            column: in_top_object && f == Frame::Object && self.shape == Shape::Columns,
            scalars: false,
        });
        self.expect_key = f == Frame::Object;
    }

    fn close(&mut self, rec: &mut Records) {
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        if let Some(closed) = self.stack.pop() {
            if closed.entry {
                rec.end_record();
            }
        }
        if self.stack.is_empty() {
            // The next top-level value (an NDJSON line) decides its own shape.
            self.shape = Shape::Undecided;
        }
        self.in_names = false;
        self.expect_key = false;
    }

    /// A key was read: in the first object inside the top-level object, it decides the shape.
    fn key_read(&mut self) {
        if self.shape == Shape::Undecided && self.stack.len() == 2 {
            let numeric = !self.key.is_empty() && self.key.iter().all(u8::is_ascii_digit);
            self.shape = if numeric {
                Shape::Columns
            } else {
                Shape::Index
            };
            if let Some(l) = self.stack.last_mut() {
                l.column = numeric;
                l.entry = !numeric;
            }
        }
    }

    /// A value was read (text in `buf`): to its entry under its key, to its row in a column,
    /// or to its position in a row.
    fn value(&mut self, rec: &mut Records) {
        let Some(level) = self.stack.last().copied() else {
            rec.named("", &self.buf);
            return;
        };
        if self.in_names {
            if self.names.len() < MAX_NAMES {
                self.names
                    .push(String::from_utf8_lossy(&self.buf).into_owned());
            }
            return;
        }
        if level.column {
            let row = std::str::from_utf8(&self.key)
                .ok()
                .and_then(|k| k.parse::<usize>().ok());
            if let Some(row) = row {
                rec.cell(row, &self.column_name, &self.buf);
                return;
            }
        }
        if self.stack.len() == 1 {
            self.stack[0].scalars = true;
        }
        if level.frame == Frame::Array && level.entry {
            if let Some(l) = self.stack.last_mut() {
                l.items += 1;
            }
            if self.names.is_empty() {
                // Rows without names: values in column order, judged as a table's.
                rec.become_table();
                rec.field(&self.buf);
                return;
            }
            let name = self.names.get(level.items).cloned().unwrap_or_default();
            rec.named(&name, &self.buf);
            return;
        }
        let key = String::from_utf8_lossy(&self.key).into_owned();
        rec.named(&key, &self.buf);
    }

    fn end_string(&mut self, rec: &mut Records) {
        if self.expect_key && self.top() == Some(Frame::Object) {
            self.key.clear();
            self.key
                .extend_from_slice(&self.buf[..self.buf.len().min(MAX_KEY)]);
            self.expect_key = false;
            self.key_read();
        } else {
            self.value(rec);
        }
    }

    fn end_scalar(&mut self, rec: &mut Records) {
        if matches!(self.buf.as_slice(), b"true" | b"false" | b"null") {
            if let Some(l) = self.stack.last_mut() {
                l.items += 1;
            }
            return;
        }
        self.value(rec);
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
            let s = super::super::record::fed_in_steps(
                input.as_bytes(),
                step,
                (JsonReader::new(), Records::entries()),
                JsonReader::feed,
                JsonReader::finish,
            );
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
        // A top-level object with its own fields and a nested one is one entry.
        check(
            r#"{"id": 7, "properties": {"firstname": "Ada", "email": "ada@example.com"}}"#,
            (1, 1, true),
        );
    }

    /// The shapes pandas `to_json` writes, and CRMs' list exports: each gives its rows.
    #[test]
    fn every_orientation_gives_its_rows() {
        let people = |i: usize| {
            (
                format!("Customer {i}"),
                format!("c{i}@example.com"),
                format!("(415) 555-01{i:02}"),
            )
        };
        let n = 60;
        // orient="records", and NDJSON
        let records: Vec<String> = (0..n)
            .map(|i| {
                let (a, b, c) = people(i);
                format!(r#"{{"name":"{a}","email":"{b}","phone":"{c}"}}"#)
            })
            .collect();
        check(&format!("[{}]", records.join(",")), (60, 60, true));
        check(&records.join("\n"), (60, 60, true));
        // orient="index"
        let index: Vec<String> = (0..n).map(|i| format!(r#""{i}":{}"#, records[i])).collect();
        check(&format!("{{{}}}", index.join(",")), (60, 60, true));
        // orient="columns"
        let column = |f: &dyn Fn(usize) -> String| {
            (0..n)
                .map(|i| format!(r#""{i}":"{}""#, f(i)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let columns = format!(
            r#"{{"name":{{{}}},"email":{{{}}},"phone":{{{}}}}}"#,
            column(&|i| people(i).0),
            column(&|i| people(i).1),
            column(&|i| people(i).2)
        );
        check(&columns, (60, 60, true));
        // orient="split"
        let rows: Vec<String> = (0..n)
            .map(|i| {
                let (a, b, c) = people(i);
                format!(r#"["{a}","{b}","{c}"]"#)
            })
            .collect();
        check(
            &format!(
                r#"{{"columns":["name","email","phone"],"index":[{}],"data":[{}]}}"#,
                (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
                rows.join(",")
            ),
            (60, 60, true),
        );
        // orient="values": rows without names, judged by their columns as a headerless
        // table is; with a header row first, by the header.
        check(&format!("[{}]", rows.join(",")), (60, 60, true));
        check(
            &format!(r#"[["name","email","phone"],{}]"#, rows.join(",")),
            (60, 60, true),
        );
        // Rows of numbers (a matrix) are no customer table.
        let matrix: Vec<String> = (0..n)
            .map(|i| format!("[{i},{},{}]", i * 2, i * 3))
            .collect();
        check(&format!("[{}]", matrix.join(",")), (60, 0, false));
    }

    #[test]
    fn deep_nesting_stays_bounded() {
        check(&("[".repeat(10_000) + &"]".repeat(10_000)), (0, 0, false));
    }
}
