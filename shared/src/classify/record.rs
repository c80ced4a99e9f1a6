//! Records: what every reader (CSV/TSV/text, vCard, JSON, spreadsheets) feeds field by field.
//! It recognises a header row and the role of each column (Chinese and English synonyms),
//! validates each field as an identifier, counts records holding at least one, and decides
//! whether the whole looks like a customer table.

use super::matching::{Lookup, RowMatches};
use super::roles::party_like;
pub use super::roles::{header_key, header_role, Role};
use crate::edm::Matcher;
use crate::ident::{identify_in, is_email, phone_in_column, Context, IdKind};
use std::sync::Arc;

/// Non-empty columns tracked individually; wider tables fold the rest into the last. Empty
/// columns take no slot, so a sheet that starts its customer columns after hundreds of blank
/// ones is read like any other.
const MAX_COLUMNS: usize = 256;
/// Column positions mapped to a slot (a sheet's 16,384 columns); later ones share the last.
const MAX_POSITION: usize = 16_384;
/// Rows of a column-laid-out file tracked one by one (a byte each); later ones share the last.
const MAX_CELL_ROWS: usize = 1 << 22;

/// The reason naming the columns a header recognised, if any.
fn recognised(roles: &[Role]) -> Option<String> {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    (!names.is_empty()).then(|| format!("columns recognised: {}", names.join(", ")))
}

/// Per-column observations.
#[derive(Debug, Clone, Default)]
struct Column {
    role: Option<Role>,
    ids: [u64; 4],
    /// Fields without an identifier that read like a person's or a company's name.
    parties: u64,
}

/// The counts and verdict of a finished set of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Data rows or entries (the header excluded).
    pub rows: u64,
    /// Rows or entries holding at least one identifier.
    pub records: u64,
    /// Identifiers by kind, in [`IdKind::ALL`] order.
    pub ids: [u64; 4],
    /// Whether a header row was recognised.
    pub header: bool,
    /// The roles the header names, in column order.
    pub roles: Vec<Role>,
    /// Whether this looks like a customer table (see [`Records::finish`]).
    pub customer_table: bool,
    /// The header row's names (or entries' field names), as [`header_key`]s: for policies
    /// on the device only, never sent.
    pub headers: Vec<String>,
    /// Why, in words, for `scan --explain`.
    pub reasons: Vec<String>,
    /// Rows holding at least one of the company's real customers (exact data match):
    /// rows with a strong hit, plus phone-only hits in excess of chance.
    pub edm: u64,
}

impl RecordStats {
    /// Adds one sheet's (or part's) statistics to a workbook's: counts add up, roles and
    /// headers are merged, and its reasons are prefixed with `label`.
    pub fn absorb(&mut self, s: RecordStats, label: &str) {
        self.rows += s.rows;
        self.records += s.records;
        self.edm += s.edm;
        for k in 0..4 {
            self.ids[k] += s.ids[k];
        }
        self.header |= s.header;
        for r in s.roles {
            if !self.roles.contains(&r) {
                self.roles.push(r);
            }
        }
        for h in s.headers {
            if self.headers.len() < 64 && !self.headers.contains(&h) {
                self.headers.push(h);
            }
        }
        self.customer_table |= s.customer_table;
        self.reasons
            .extend(s.reasons.into_iter().map(|r| format!("{label}: {r}")));
    }
}

/// For the readers' tests: `input` fed to `reader` `step` bytes at a time (`feed`), then
/// `finish`ed, into `rec`; what the records say.
#[cfg(test)]
pub(super) fn fed_in_steps<R>(
    input: &[u8],
    step: usize,
    (mut reader, mut rec): (R, Records),
    feed: fn(&mut R, &[u8], &mut Records),
    finish: fn(&mut R, &mut Records),
) -> RecordStats {
    for c in input.chunks(step) {
        feed(&mut reader, c, &mut rec);
    }
    finish(&mut reader, &mut rec);
    rec.finish()
}

/// The accumulator readers feed.
#[derive(Debug)]
pub struct Records {
    /// Tables decide about a header; entry formats (vCard, JSON) name their fields.
    tabular: bool,
    /// Entry formats are contact lists by nature (vCard).
    contact_list: bool,
    col: usize,
    row_ids: [bool; 4],
    row_nonempty: bool,
    row_fields: u32,
    row_texty: u32,
    first_row: Option<Vec<Option<Role>>>,
    first_row_keys: Vec<String>,
    first_row_ids: bool,
    header_decided: bool,
    columns: Vec<Column>,
    /// Column position → slot + 1 in `columns` (0: no slot yet).
    slots: Vec<u16>,
    slots_used: usize,
    /// Rows of a column-laid-out file ([`Records::cell`]): bit 0 "has a value", bit 1 "holds
    /// an identifier".
    cells: Vec<u8>,
    stats: RecordStats,
    /// Rows holding real customers, when a customer set is in use.
    matches: Option<RowMatches>,
}

impl Records {
    /// For tables (CSV, TSV, text lines, sheets): the first row may be a header.
    pub fn table() -> Records {
        Records::new(true, false)
    }

    /// For entries that name their fields (JSON objects); call [`Records::named`].
    pub fn entries() -> Records {
        Records::new(false, false)
    }

    /// For contact lists (vCard): every entry with an identifier is a contact.
    pub fn contacts() -> Records {
        Records::new(false, true)
    }

    fn new(tabular: bool, contact_list: bool) -> Records {
        Records {
            tabular,
            contact_list,
            col: 0,
            row_ids: [false; 4],
            row_nonempty: false,
            row_fields: 0,
            row_texty: 0,
            first_row: tabular.then(Vec::new),
            first_row_keys: Vec::new(),
            first_row_ids: false,
            header_decided: !tabular,
            columns: Vec::new(),
            slots: Vec::new(),
            slots_used: 0,
            cells: Vec::new(),
            stats: RecordStats::default(),
            matches: None,
        }
    }

    /// The entries turned out to be rows of values in column order (JSON `orient="values"`:
    /// arrays of arrays without names): from now on [`Records::field`] takes them and the
    /// rows are judged as a table's, whose first row may be a header. Only before any field.
    pub fn become_table(&mut self) {
        if self.tabular || self.row_nonempty || self.stats.rows > 0 {
            return;
        }
        self.tabular = true;
        self.first_row = Some(Vec::new());
        self.header_decided = false;
    }

    /// The customer set in use, if any.
    pub fn edm(&self) -> Option<&Arc<Matcher>> {
        self.matches.as_ref().map(RowMatches::matcher)
    }

    /// Also counts rows holding the company's real customers.
    pub fn with_edm(mut self, edm: Option<Arc<Matcher>>) -> Records {
        self.matches = edm.map(RowMatches::new);
        self.entries_may_name_countries();
        self
    }

    /// Entries name their fields: any entry may name its country after its phone.
    fn entries_may_name_countries(&mut self) {
        if let (false, Some(m)) = (self.tabular, self.matches.as_mut()) {
            m.expect_countries();
        }
    }

    /// Also counts rows holding the company's real customers, looked up by `tally`.
    pub fn with_edm_tally(mut self, edm: Arc<Matcher>, tally: Box<dyn super::Tally>) -> Records {
        self.matches = Some(RowMatches::with_tally(edm, tally));
        self.entries_may_name_countries();
        self
    }

    /// Records for the rest of the same table from a row start on, once its header is
    /// decided: the same header, column roles and slots, nothing counted yet; `tally` looks
    /// up its identifiers when a customer set is in use. [`Records::absorb`] adds its counts
    /// back. `None` before the header is decided, and for entries and column layouts.
    pub fn continuation(&self, tally: Option<Box<dyn super::Tally>>) -> Option<Records> {
        if !self.tabular || !self.header_decided || !self.cells.is_empty() {
            return None;
        }
        let mut rest = Records::new(true, self.contact_list);
        rest.first_row = None;
        rest.header_decided = true;
        rest.columns = self
            .columns
            .iter()
            .map(|c| Column {
                role: c.role,
                ..Column::default()
            })
            .collect();
        rest.slots = self.slots.clone();
        rest.slots_used = self.slots_used;
        rest.stats.header = self.stats.header;
        rest.matches = self.matches.as_ref().map(|m| {
            let tally =
                tally.unwrap_or_else(|| Box::new(super::Tallier::new(Arc::clone(m.matcher()))));
            m.continuation(tally)
        });
        Some(rest)
    }

    /// Takes over the counts of a [`Records::continuation`] that read the rest of the
    /// table: rows, records and identifiers add up, column by column position.
    pub fn absorb(&mut self, mut rest: Records) {
        rest.end_record();
        self.stats.rows += rest.stats.rows;
        self.stats.records += rest.stats.records;
        for k in 0..4 {
            self.stats.ids[k] += rest.stats.ids[k];
        }
        // Column positions may share a slot (past the 256th): each of the rest's slots is
        // added once, to the slot of the first position that has it.
        let mut done = vec![false; rest.columns.len()];
        for pos in 0..rest.slots.len() {
            let Some(from) = rest.slots[pos].checked_sub(1).map(usize::from) else {
                continue;
            };
            if from >= done.len() || std::mem::replace(&mut done[from], true) {
                continue;
            }
            let to = self.slot(pos);
            if self.columns.len() <= to {
                self.columns.resize(to + 1, Column::default());
            }
            let (c, r) = (&mut self.columns[to], &rest.columns[from]);
            for k in 0..4 {
                c.ids[k] += r.ids[k];
            }
            c.parties += r.parties;
        }
        if let (Some(m), Some(r)) = (self.matches.as_mut(), rest.matches.take()) {
            m.absorb(r);
        }
    }

    /// One field of the current record, in column order (tables).
    pub fn field(&mut self, text: &[u8]) {
        let f = text.trim_ascii();
        let mut phone = [0u8; 40];
        match identify_in(f, self.context_noting_country(f), &mut phone) {
            Some((IdKind::Phone, n)) => {
                self.field_id(f, Some(IdKind::Phone), Lookup::Normal(&phone[..n]))
            }
            id => self.field_id(f, id.map(|(kind, _)| kind), Lookup::Field),
        }
    }

    /// One field whose identifier kind (and, with a set, customer match) is already known:
    /// a spreadsheet's shared string, classified once. `text` is used for the header decision
    /// only; pass a placeholder when the text itself was not kept.
    pub fn field_with(&mut self, text: &[u8], kind: Option<IdKind>, edm_hit: Option<bool>) {
        let lookup = edm_hit.map_or(Lookup::Field, Lookup::Known);
        match (self.context_noting_country(text.trim_ascii()), kind) {
            // An order number that looks like a mobile is an order number.
            (Context::NotPersonal, Some(k)) if k != IdKind::Email => {
                self.field_id(text, None, Lookup::Field)
            }
            // A phone column's number in a form only a phone column accepts.
            (Context::Phone, None) if phone_in_column(text.trim_ascii()).is_some() => {
                self.field_id(text, Some(IdKind::Phone), Lookup::Field)
            }
            _ => self.field_id(text, kind, lookup),
        }
    }

    /// What the current column holds, once a header named it; a country column's field `f`
    /// is the row's country for its phones' customer-set lookups.
    fn context_noting_country(&mut self, f: &[u8]) -> Context {
        if !self.header_decided || !self.stats.header {
            return Context::Unknown;
        }
        let slot = match self.slots.get(self.col.min(MAX_POSITION - 1)) {
            Some(&s) if s > 0 => usize::from(s - 1),
            _ => return Context::Unknown,
        };
        let role = self.columns.get(slot).and_then(|c| c.role);
        if role == Some(Role::Country) {
            if let Some(m) = self.matches.as_mut() {
                m.country(f);
            }
        }
        role.map_or(Context::Unknown, Role::context)
    }

    /// The slot of column position `pos`, given one if it has none (the first 256 non-empty
    /// columns each get their own; the rest share the last).
    fn slot(&mut self, pos: usize) -> usize {
        let pos = pos.min(MAX_POSITION - 1);
        if self.slots.len() <= pos {
            self.slots.resize(pos + 1, 0);
        }
        if self.slots[pos] == 0 {
            self.slots[pos] = (self.slots_used.min(MAX_COLUMNS - 1) + 1) as u16;
            self.slots_used += 1;
        }
        usize::from(self.slots[pos] - 1)
    }

    fn field_id(&mut self, text: &[u8], kind: Option<IdKind>, lookup: Lookup<'_>) {
        let pos = self.col;
        self.col += 1;
        let f = text.trim_ascii();
        if f.is_empty() {
            return;
        }
        let col = self.slot(pos);
        self.row_nonempty = true;
        self.row_fields += 1;
        if !self.header_decided {
            if let Some(first) = self.first_row.as_mut() {
                while first.len() <= col {
                    first.push(None);
                }
                let text = String::from_utf8_lossy(f);
                first[col] = header_role(&text);
                if self.first_row_keys.len() < 64 {
                    self.first_row_keys.push(header_key(&text));
                }
            }
            if kind.is_some() {
                self.first_row_ids = true;
            }
            if !f
                .iter()
                .all(|b| b.is_ascii_digit() || b"-.,/: ".contains(b))
            {
                self.row_texty += 1;
            }
        }
        self.count(col, kind, f, lookup);
    }

    /// A field of row `row` in a file laid out column by column (JSON `orient="columns"`),
    /// under its column's `name`. Its rows are counted when the records finish.
    pub fn cell(&mut self, row: usize, name: &str, text: &[u8]) {
        if text.trim_ascii().is_empty() {
            return;
        }
        let row = row.min(MAX_CELL_ROWS - 1);
        if self.cells.len() <= row {
            self.cells.resize(row + 1, 0);
        }
        let before = self.row_ids;
        self.row_ids = [false; 4];
        self.named(name, text);
        let id = self.row_ids.iter().any(|&b| b);
        self.row_ids = before;
        self.row_nonempty = false;
        self.cells[row] |= 1 | (u8::from(id) << 1);
        // Each value is matched against the customer set on its own.
        if let Some(m) = self.matches.as_mut() {
            m.end_row();
        }
    }

    /// A named field of the current entry (JSON key, vCard property).
    pub fn named(&mut self, name: &str, text: &[u8]) {
        let f = text.trim_ascii();
        if f.is_empty() {
            return;
        }
        self.row_nonempty = true;
        if self.stats.headers.len() < 64 {
            let key = header_key(name);
            if !key.is_empty() && !self.stats.headers.contains(&key) {
                self.stats.headers.push(key);
            }
        }
        let role = header_role(name);
        if let Some(r) = role {
            if !self.stats.roles.contains(&r) && self.stats.roles.len() < 32 {
                self.stats.roles.push(r);
            }
        }
        // The owner's fields are staff's; an order number is no phone.
        if role == Some(Role::Owner) {
            return;
        }
        if role == Some(Role::Country) {
            if let Some(m) = self.matches.as_mut() {
                m.country(f);
            }
        }
        let ctx = role.map_or(Context::Unknown, Role::context);
        let kind = identify_in(f, ctx, &mut [0; 40]).map(|(k, _)| k);
        self.count(MAX_COLUMNS - 1, kind, f, Lookup::Field);
    }

    fn count(&mut self, col: usize, kind: Option<IdKind>, f: &[u8], lookup: Lookup<'_>) {
        if self.columns.len() <= col {
            self.columns.resize(col + 1, Column::default());
        }
        // The owner's address on every row is the salesperson's, not a customer's.
        if self.columns[col].role == Some(Role::Owner) {
            return;
        }
        if kind.is_none() && self.header_decided && !self.stats.header && party_like(f) {
            self.columns[col].parties += 1;
        }
        let (kind, f) = match kind {
            Some(kind) => (kind, f),
            // Free text: an address inside "Ada Lee <ada@example.com>".
            None if f.len() > 6 && f.contains(&b'@') => {
                let found = f
                    .split(|b| b.is_ascii_whitespace() || b"<>;,()\"'".contains(b))
                    .map(|w| w.strip_suffix(b".").unwrap_or(w))
                    .find(|w| is_email(w));
                match found {
                    Some(w) => (IdKind::Email, w),
                    None => return,
                }
            }
            None => return,
        };
        if let Some(m) = self.matches.as_mut() {
            m.add(kind, f, lookup);
        }
        let k = kind as usize;
        self.row_ids[k] = true;
        self.columns[col].ids[k] += 1;
        self.stats.ids[k] += 1;
    }

    /// Moves to column `col` of the current record (spreadsheets skip empty cells).
    pub fn seek_column(&mut self, col: usize) {
        self.col = col;
    }

    /// Ends the current record.
    pub fn end_record(&mut self) {
        if !self.header_decided && self.row_nonempty {
            self.header_decided = true;
            let first = self.first_row.take().unwrap_or_default();
            let roles = first.iter().filter(|r| r.is_some()).count();
            // A header: no identifiers in it, and it names known columns or is all words.
            let is_header = !self.first_row_ids
                && (roles > 0 || (self.row_fields >= 2 && self.row_texty == self.row_fields));
            if is_header {
                self.stats.header = true;
                if self.columns.len() < first.len() {
                    self.columns.resize(first.len(), Column::default());
                }
                for (c, r) in first.iter().enumerate() {
                    self.columns[c].role = *r;
                    self.columns[c].ids = [0; 4];
                }
                if first.contains(&Some(Role::Country)) {
                    if let Some(m) = self.matches.as_mut() {
                        m.expect_countries();
                    }
                }
                self.stats.ids = [0; 4];
                self.stats.roles = Vec::new();
                for r in first.iter().flatten() {
                    if !self.stats.roles.contains(r) {
                        self.stats.roles.push(*r);
                    }
                }
                self.stats.headers = std::mem::take(&mut self.first_row_keys);
                // The header's own lookups (an address written in a column name) do not count.
                if let Some(m) = self.matches.as_mut() {
                    m.drop_row();
                }
                self.reset_row();
                return;
            }
        }
        if self.row_nonempty {
            self.stats.rows += 1;
        }
        if self.row_ids.iter().any(|&b| b) {
            self.stats.records += 1;
        }
        if let Some(m) = self.matches.as_mut() {
            m.end_row();
        }
        self.reset_row();
    }

    fn reset_row(&mut self) {
        self.col = 0;
        self.row_ids = [false; 4];
        self.row_nonempty = false;
        self.row_fields = 0;
        self.row_texty = 0;
    }

    /// Ends the last record and decides.
    ///
    /// A customer table is a set of records where most rows carry an identifier and either
    /// the header (or the entries' field names) names parties — name, company, contact,
    /// account — or, without a header, one column holds identifiers in most rows and another
    /// kind of identifier or several columns back it up. vCard entries are contacts.
    pub fn finish(mut self) -> RecordStats {
        self.end_record();
        let mut s = std::mem::take(&mut self.stats);
        s.rows += self.cells.iter().filter(|&&c| c & 1 != 0).count() as u64;
        s.records += self.cells.iter().filter(|&&c| c & 2 != 0).count() as u64;
        if let Some(rm) = self.matches.take() {
            let m = Arc::clone(rm.matcher());
            let c = rm.finish();
            // Phone-only hits count only beyond what chance gives (4 standard deviations).
            let expected = c.weak_lookups as f64 * m.false_match_rate(IdKind::Phone);
            let excess = c.weak_rows as f64 - expected;
            let weak = if excess > 4.0 * expected.sqrt() + 2.0 {
                excess.round() as u64
            } else {
                0
            };
            s.edm = c.strong_rows + weak;
            s.reasons.push(format!(
                "exact data match: {} rows hold real customers ({} by email/ID/card, {} by phone beyond the {:.1} expected by chance)",
                s.edm, c.strong_rows, weak, expected
            ));
        }
        if s.records == 0 {
            if s.rows > 0 {
                s.reasons.push(format!(
                    "none of {} rows holds a customer identifier",
                    s.rows
                ));
            }
            s.reasons.extend(recognised(&s.roles));
            return s;
        }
        let share = s.records as f64 / s.rows.max(1) as f64;
        let party = s.roles.iter().any(|r| r.is_party());
        let id_columns = self
            .columns
            .iter()
            .filter(|c| c.ids.iter().sum::<u64>() * 2 >= s.rows)
            .count();
        let dominant = self
            .columns
            .iter()
            .any(|c| c.ids.iter().sum::<u64>() * 10 >= s.rows * 8);
        let names_identifiers = s.roles.iter().any(|r| r.is_identifier());
        let party_columns = self
            .columns
            .iter()
            .filter(|c| c.parties * 2 >= s.rows)
            .count();
        s.reasons.push(format!(
            "{} of {} rows hold an identifier ({:.0} %)",
            s.records,
            s.rows,
            share * 100.0
        ));
        s.reasons.extend(recognised(&s.roles));
        s.customer_table = if self.contact_list {
            s.reasons.push("a contact list (vCard)".into());
            true
        } else if share >= 0.5 && party {
            s.reasons
                .push("the header names people or companies".into());
            true
        } else if party && names_identifiers {
            s.reasons.push(
                "the header names customers and how to reach them (only some rows hold an identifier)"
                    .into(),
            );
            true
        } else if self.tabular && !s.header && share >= 0.8 && dominant && id_columns >= 2 {
            s.reasons
                .push("no header, but identifier columns fill most rows".into());
            true
        } else if self.tabular && !s.header && share >= 0.5 && id_columns >= 1 && party_columns >= 1
        {
            s.reasons.push(
                "no header, but a column of people's or companies' names beside identifiers".into(),
            );
            true
        } else {
            s.reasons.push(if party || !s.header {
                format!(
                    "not a customer table: {:.0} % of rows hold an identifier (50 % needed with a header naming people or companies, 80 % without one)",
                    share * 100.0
                )
            } else {
                "not a customer table: the header names no people or companies".into()
            });
            false
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: feed rows of fields, compare (rows, records, customer table).
    fn check(rows: &[&[&str]], want: (u64, u64, bool)) -> RecordStats {
        let mut r = Records::table();
        for row in rows {
            for f in *row {
                r.field(f.as_bytes());
            }
            r.end_record();
        }
        let s = r.finish();
        assert_eq!(
            (s.rows, s.records, s.customer_table),
            want,
            "{rows:?}: {s:?}"
        );
        s
    }

    #[test]
    fn headers_roles_and_verdicts() {
        let s = check(
            &[
                &["客户名称", "联系人", "手机", "邮箱"],
                &[
                    "深圳某某科技",
                    "张伟",
                    "13800138000",
                    "zhang.wei@example.cn",
                ],
                &["上海某某贸易", "李娜", "139 1234 5678", ""],
                &["北京某某", "王芳", "", ""],
            ],
            (3, 2, true),
        );
        assert_eq!(
            s.roles,
            vec![Role::Account, Role::Contact, Role::Phone, Role::Email]
        );
        assert_eq!(s.ids, [1, 2, 0, 0]);
        // No header but two identifier columns in every row: a customer table.
        check(
            &[
                &["ada@example.com", "(415) 555-0101"],
                &["bob@example.org", "(415) 555-0102"],
            ],
            (2, 2, true),
        );
        // A log with an address in some lines: identifiers, but not a customer table.
        check(
            &[
                &["2024-01-05 10:00:01 login ok"],
                &["2024-01-05 10:00:02 mail sent to ada@example.com"],
                &["2024-01-05 10:00:03 logout"],
            ],
            (3, 1, false),
        );
        // A price list: a header, no identifiers.
        check(
            &[&["SKU", "Product", "Price"], &["A-1", "Widget", "12.99"]],
            (1, 0, false),
        );
        // A header that names only emails (a mailing list) without parties: identifiers
        // counted, no customer table verdict.
        check(
            &[&["Email"], &["a@example.com"], &["b@example.com"]],
            (2, 2, false),
        );
    }

    /// Rows of `n` records built by `row(i)`, after `header`.
    fn table(header: &[&str], n: usize, row: impl Fn(usize) -> Vec<String>) -> Vec<Vec<String>> {
        let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        rows.extend((0..n).map(row));
        rows
    }

    fn stats(rows: &[Vec<String>]) -> RecordStats {
        let mut r = Records::table();
        for row in rows {
            for f in row {
                r.field(f.as_bytes());
            }
            r.end_record();
        }
        r.finish()
    }

    /// Phones as CRMs hold them, in a column the header calls phones: with extensions, bare
    /// North American digits, national formats, local numbers.
    #[test]
    fn phones_in_a_phone_column_are_counted() {
        let forms = [
            "555-0100 x23",
            "4155550123",
            "01 42 68 53 00",
            "(0171) 555-2282",
            "555-0199",
        ];
        let rows = table(&["Name", "Phone"], 100, |i| {
            vec![format!("Customer {i}"), forms[i % forms.len()].to_string()]
        });
        let s = stats(&rows);
        assert_eq!(
            (s.rows, s.records, s.ids[1], s.customer_table),
            (100, 100, 100, true)
        );
    }

    /// A customer list whose header row was deleted: names, companies and emails.
    #[test]
    fn a_customer_list_without_a_header_is_judged_by_its_columns() {
        let rows = table(
            &["Ada Lovelace", "Analytical Ltd", "ada@example.com"],
            59,
            |i| {
                vec![
                    format!("Grace Hopper{}", if i % 2 == 0 { "" } else { " Jr" }),
                    format!("Company {i} Inc"),
                    if i % 3 == 0 {
                        String::new()
                    } else {
                        format!("c{i}@example.org")
                    },
                ]
            },
        );
        let s = stats(&rows);
        assert!(!s.header);
        assert_eq!(s.rows, 60);
        assert!(s.customer_table, "{:?}", s.reasons);
        // The same columns of numbers and codes stay a log.
        let rows = table(&["2024-01-05", "GET /a", "ok@example.com"], 59, |i| {
            vec![
                format!("2024-01-{:02}", i % 28 + 1),
                format!("GET /p{i}"),
                "ops@example.com".into(),
            ]
        });
        assert!(!stats(&rows).customer_table);
    }

    /// A tiering sheet of 300 customers with a phone on 90 of them.
    #[test]
    fn customer_headers_carry_the_verdict_when_few_rows_hold_identifiers() {
        let rows = table(
            &["客户名称", "联系人", "手机", "等级"],
            300,
            |i| {
                vec![
                    format!("客户{i}有限公司"),
                    "张伟".into(),
                    if i % 10 < 3 {
                        format!("139{i:08}")
                    } else {
                        String::new()
                    },
                    "A".into(),
                ]
            },
        );
        let s = stats(&rows);
        assert_eq!((s.rows, s.records, s.customer_table), (300, 90, true));
    }

    /// 300 empty columns before the customer columns.
    #[test]
    fn empty_columns_before_the_customer_columns_take_no_room() {
        let blank = vec![String::new(); 300];
        let rows = table(&[], 0, |_| vec![]);
        let mut rows: Vec<Vec<String>> = rows.into_iter().filter(|r| !r.is_empty()).collect();
        let mut header = blank.clone();
        header.extend(["Name", "Email", "Phone"].map(String::from));
        rows.push(header);
        for i in 0..80 {
            let mut r = blank.clone();
            r.extend([
                format!("Customer {i}"),
                format!("c{i}@example.com"),
                "(415) 555-0101".into(),
            ]);
            rows.push(r);
        }
        let s = stats(&rows);
        assert_eq!(s.roles, vec![Role::Name, Role::Email, Role::Phone]);
        assert_eq!((s.rows, s.records, s.customer_table), (80, 80, true));
    }

    /// A company export: the salesperson's own address on every row, the companies' phones on
    /// 49 of 200. Only the customers' identifiers count.
    #[test]
    fn the_owner_column_is_staff_not_customers() {
        let rows = table(&["Company Name", "Phone", "Company owner"], 200, |i| {
            vec![
                format!("Company {i}"),
                if i % 4 == 0 && i < 196 {
                    "(415) 555-0101".into()
                } else {
                    String::new()
                },
                "rep@ourcompany.com".into(),
            ]
        });
        let s = stats(&rows);
        assert_eq!((s.records, s.ids[0], s.ids[1]), (49, 0, 49));
        assert!(s.roles.contains(&Role::Owner));
    }

    /// Order numbers shaped like mobiles, provider ids shaped like cards: references.
    #[test]
    fn reference_columns_hold_no_phones_or_cards() {
        let rows = table(&["订单号", "Provider ID", "金额"], 600, |i| {
            vec![
                format!("139{i:08}"),
                "378282246310005".into(),
                "1299.00".into(),
            ]
        });
        let s = stats(&rows);
        assert_eq!((s.records, s.ids), (0, [0; 4]));
        // Without the header the same numbers are read as what they look like.
        let s = stats(&rows[1..]);
        assert_eq!(s.ids[1], 600);
    }

    /// A customer list imported with its phone column read as the agent reads one: the same
    /// numbers found in an export in other phone-column forms are its customers.
    #[test]
    fn phone_column_forms_match_the_customer_set() {
        let mut b = crate::edm::EdmBuilder::new(b"secret");
        for i in 0..50u32 {
            let kind = b.add_in(
                Context::Phone,
                format!("(415) 555-{:04} ext. 9", 100 + i).as_bytes(),
            );
            assert_eq!(kind, Some(IdKind::Phone));
        }
        assert_eq!(b.add_in(Context::Phone, b"n/a"), None);
        let m = Arc::new(b.finish().matcher());
        let mut r = Records::table().with_edm(Some(m));
        for f in ["Name", "Phone"] {
            r.field(f.as_bytes());
        }
        r.end_record();
        for i in 0..50u32 {
            r.field(b"x");
            r.field(format!("415555{:04}", 100 + i).as_bytes());
            r.end_record();
        }
        assert_eq!(r.finish().edm, 50);
    }

    /// A customer set of these phone numbers.
    fn phone_set(phones: impl Iterator<Item = String>) -> Arc<Matcher> {
        let mut b = crate::edm::EdmBuilder::new(b"secret");
        for p in phones {
            assert!(b.add(IdKind::Phone, p.as_bytes()), "{p}");
        }
        Arc::new(b.finish().matcher())
    }

    /// National numbers with their row's country match the customers the set holds in
    /// E.164, whichever column comes first, in a table and in JSON entries; without the
    /// country they do not.
    #[test]
    fn a_rows_country_makes_its_national_phones_international() {
        let m = phone_set((0..40u32).flat_map(|i| {
            [
                format!("+33 1 42 68 {:02} {:02}", i / 10, i % 10),
                format!("+44 20 7946 {i:04}"),
            ]
        }));
        let table = |header: [&str; 3], rows: &dyn Fn(u32) -> [String; 3]| {
            let mut r = Records::table().with_edm(Some(m.clone()));
            for f in header {
                r.field(f.as_bytes());
            }
            r.end_record();
            for i in 0..40u32 {
                for f in rows(i) {
                    r.field(f.as_bytes());
                }
                r.end_record();
            }
            r.finish().edm
        };
        let fr = |i: u32| format!("01 42 68 {:02} {:02}", i / 10, i % 10);
        let uk = |i: u32| format!("020 7946 {:04}", i);
        // The country after the phone, and before it; French and British rows mixed.
        let after = table(["Name", "Phone", "Country"], &|i| {
            if i % 2 == 0 {
                [format!("n{i}"), fr(i), "France".into()]
            } else {
                [format!("n{i}"), uk(i), "United Kingdom".into()]
            }
        });
        assert_eq!(after, 40);
        let before = table(["Name", "Mailing Country", "Mobile"], &|i| {
            [format!("n{i}"), "FR".into(), fr(i)]
        });
        assert_eq!(before, 40);
        // No country column: the national digits match nothing held in E.164.
        let none = table(["Name", "Phone", "City"], &|i| {
            [format!("n{i}"), fr(i), "Paris".into()]
        });
        assert_eq!(none, 0);
        // A country the row does not name leaves the number as written.
        let wrong = table(["Name", "Phone", "Country"], &|i| {
            [format!("n{i}"), fr(i), "Narnia".into()]
        });
        assert_eq!(wrong, 0);
        // JSON entries name their fields.
        let mut r = Records::entries().with_edm(Some(m.clone()));
        for i in 0..40u32 {
            r.named("phone", uk(i).as_bytes());
            r.named("country", b"GB");
            r.end_record();
        }
        assert_eq!(r.finish().edm, 40);
    }

    /// Phone-only matches count only beyond chance: unrelated numbers report no customers,
    /// real ones are counted.
    #[test]
    fn phone_only_matches_count_beyond_chance() {
        let m = phone_set((0..100_000u32).map(|i| format!("139{i:08}")));
        let run = |real: u32, strangers: u32| {
            let mut r = Records::table().with_edm(Some(m.clone()));
            for f in ["Name", "Mobile"] {
                r.field(f.as_bytes());
            }
            r.end_record();
            for i in 0..real {
                r.field(b"x");
                r.field(format!("139 {:04} {:04}", i / 10_000, i % 10_000).as_bytes());
                r.end_record();
            }
            for i in 0..strangers {
                r.field(b"y");
                r.field(format!("137{i:08}").as_bytes());
                r.end_record();
            }
            r.finish().edm
        };
        assert_eq!(run(0, 10_000), 0);
        let got = run(1_000, 1_000);
        assert!((985..=1_010).contains(&got), "{got}");
    }
}
