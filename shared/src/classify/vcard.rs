//! vCard (`.vcf`, what phones export contacts as): each `BEGIN:VCARD … END:VCARD` is one
//! entry; its EMAIL, TEL, FN/N, ORG, ADR and TITLE values are fed to [`Records`] by role.

use super::record::Records;
use super::table::MAX_FIELD;

/// Streaming vCard reader with a bounded line buffer.
#[derive(Debug, Default)]
pub struct VcardReader {
    line: Vec<u8>,
    in_card: bool,
}

impl VcardReader {
    pub fn new() -> VcardReader {
        VcardReader::default()
    }

    /// Feeds UTF-8 text.
    pub fn feed(&mut self, chunk: &[u8], rec: &mut Records) {
        for &b in chunk {
            if b == b'\n' {
                self.end_line(rec);
            } else if b != b'\r' && self.line.len() < MAX_FIELD {
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self, rec: &mut Records) {
        let line = std::mem::take(&mut self.line);
        let line = line.trim_ascii();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let (prop, value) = (&line[..colon], &line[colon + 1..]);
        let name = prop
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        // Grouped properties: `item1.EMAIL`.
        let name = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
        match (name, value.to_ascii_uppercase().as_slice()) {
            (b"BEGIN", b"VCARD") => self.in_card = true,
            (b"END", b"VCARD") => {
                if self.in_card {
                    rec.end_record();
                }
                self.in_card = false;
            }
            _ if self.in_card => {
                let role = match name {
                    b"EMAIL" => "email",
                    b"TEL" => "phone",
                    b"FN" | b"N" => "name",
                    b"ORG" => "company",
                    b"ADR" => "address",
                    b"TITLE" => "title",
                    _ => return,
                };
                let value = value
                    .strip_prefix(b"tel:")
                    .or_else(|| value.strip_prefix(b"mailto:"))
                    .unwrap_or(value);
                rec.named(role, value);
            }
            _ => {}
        }
    }

    /// Flushes the last line.
    pub fn finish(&mut self, rec: &mut Records) {
        self.end_line(rec);
        if self.in_card {
            rec.end_record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: (entries, entries with identifiers, emails, phones).
    fn check(input: &str, want: (u64, u64, u64, u64)) {
        for step in [1, 5, 4096] {
            let s = super::super::record::fed_in_steps(
                input.as_bytes(),
                step,
                (VcardReader::new(), Records::contacts()),
                VcardReader::feed,
                VcardReader::finish,
            );
            assert_eq!((s.rows, s.records, s.ids[0], s.ids[1]), want, "{input}");
            assert_eq!(s.customer_table, s.records > 0);
        }
    }

    #[test]
    fn contacts() {
        check(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:张伟\r\nORG:深圳某某科技\r\nTEL;TYPE=CELL:138 0013 8000\r\nEMAIL;TYPE=INTERNET:zhang.wei@example.cn\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ada Lee\r\nitem1.TEL;VALUE=uri:tel:+1-415-555-0101\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nFN:No Number\r\nEND:VCARD\r\n",
            (3, 2, 1, 2),
        );
        check("not a vcard at all\n", (0, 0, 0, 0));
        check("BEGIN:VCARD\nEMAIL:a@example.com\n", (1, 1, 1, 0));
    }
}
