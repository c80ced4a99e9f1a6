//! The CLI's one printer for human tables, and the one escape of what goes to a terminal:
//! file names, notes, host names and receipt details come from devices and users, so every
//! control character (C0, DEL, C1) and every bidirectional override is shown escaped
//! (`\x1b`, `\u{202e}`) instead of reaching the terminal, where it could hide or rewrite
//! rows.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control or bidi-override character written as an escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One column of a listing: its header, how it lines up, and what a row shows in it (the header
/// and its cell are declared together, so they cannot drift apart).
pub struct Column<T> {
    pub header: &'static str,
    pub align: Align,
    pub cell: fn(&T) -> String,
}

impl<T> Column<T> {
    /// A column of text, lined up left.
    pub fn left(header: &'static str, cell: fn(&T) -> String) -> Column<T> {
        Column {
            header,
            align: Align::Left,
            cell,
        }
    }

    /// A column of numbers, lined up right.
    pub fn right(header: &'static str, cell: fn(&T) -> String) -> Column<T> {
        Column {
            header,
            align: Align::Right,
            cell,
        }
    }
}

/// A table: named columns, each at least as wide as its widest cell (the last one free).
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// A table of `items` in `columns`.
    pub fn of<T>(items: &[T], columns: &[Column<T>]) -> Table {
        let heads: Vec<(&'static str, Align)> =
            columns.iter().map(|c| (c.header, c.align)).collect();
        let mut t = Table::new(&heads);
        for item in items {
            t.row(columns.iter().map(|c| (c.cell)(item)).collect());
        }
        t
    }

    /// Adds a row; each cell is escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| escape(c).into_owned()).collect());
    }

    /// The table as text, header first, one line per row.
    pub fn render(&self) -> String {
        let n = self.columns.len();
        let mut width: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(n) {
                let pad = width[i].saturating_sub(c.chars().count());
                let last = i + 1 == n;
                match self.columns[i].1 {
                    Align::Right => {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(c);
                    }
                    Align::Left => {
                        s.push_str(c);
                        if !last {
                            s.push_str(&" ".repeat(pad));
                        }
                    }
                }
                if !last {
                    s.push_str("  ");
                }
            }
            s
        };
        let mut out = line(self.columns.iter().map(|(h, _)| *h).collect());
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }

    /// Prints the table to standard output.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &str) {
        assert_eq!(escape(input), want);
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        check("plain.csv", "plain.csv");
        check("客户.xlsx", "客户.xlsx");
        check("a\x1b[2K\x1b[1Ab.csv", "a\\x1b[2K\\x1b[1Ab.csv");
        check("line\nbreak\r\t", "line\\x0abreak\\x0d\\x09");
        check("x\u{7f}\u{9b}y", "x\\x7f\\x9by");
        check("gpj.\u{202e}exe", "gpj.\\u{202e}exe");
    }

    #[test]
    fn tables_line_up_and_escape_every_cell() {
        let mut t = Table::new(&[("ID", Align::Right), ("PATH", Align::Left)]);
        t.row(vec!["7".into(), "/a.csv".into()]);
        t.row(vec!["1234".into(), "evil\x1b[Ahidden".into()]);
        assert_eq!(
            t.render(),
            "  ID  PATH\n   7  /a.csv\n1234  evil\\x1b[Ahidden\n"
        );
    }
}
