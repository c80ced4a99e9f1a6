//! Records: what every reader (CSV/TSV/text, vCard, JSON, spreadsheets) feeds field by field.
//! It recognises a header row and the role of each column (Chinese and English synonyms),
//! validates each field as an identifier, counts records holding at least one, and decides
//! whether the whole looks like a customer table.

use super::matching::{Lookup, RowMatches};
use crate::edm::Matcher;
use crate::ident::{classify_field, identify, is_email, IdKind};
use std::sync::Arc;

/// Columns tracked individually; wider tables fold the rest into the last.
const MAX_COLUMNS: usize = 256;

/// What a column header says the column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Name,
    Company,
    Contact,
    Email,
    Phone,
    Address,
    Wechat,
    Title,
    Account,
    IdNumber,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Name => "name",
            Role::Company => "company",
            Role::Contact => "contact",
            Role::Email => "email",
            Role::Phone => "phone",
            Role::Address => "address",
            Role::Wechat => "wechat",
            Role::Title => "title",
            Role::Account => "account",
            Role::IdNumber => "id_number",
        }
    }

    /// Roles that say "these rows are people or customers".
    fn is_party(self) -> bool {
        matches!(
            self,
            Role::Name | Role::Company | Role::Contact | Role::Account
        )
    }
}

/// Header synonyms, matched on the lowercased header with spaces, `_`, `-` and `.` removed.
/// Longer (more specific) entries are listed first within each language.
const SYNONYMS: &[(&str, Role)] = &[
    ("客户名称", Role::Account),
    ("客户", Role::Account),
    ("公司名称", Role::Company),
    ("公司", Role::Company),
    ("单位", Role::Company),
    ("企业名称", Role::Company),
    ("联系人", Role::Contact),
    ("姓名", Role::Name),
    ("名字", Role::Name),
    ("手机号码", Role::Phone),
    ("手机号", Role::Phone),
    ("手机", Role::Phone),
    ("电话", Role::Phone),
    ("联系电话", Role::Phone),
    ("座机", Role::Phone),
    ("邮箱", Role::Email),
    ("电子邮件", Role::Email),
    ("地址", Role::Address),
    ("微信", Role::Wechat),
    ("职位", Role::Title),
    ("身份证", Role::IdNumber),
    ("accountname", Role::Account),
    ("account", Role::Account),
    ("customername", Role::Account),
    ("customer", Role::Account),
    ("client", Role::Account),
    ("companyname", Role::Company),
    ("company", Role::Company),
    ("organization", Role::Company),
    ("organisation", Role::Company),
    ("contactname", Role::Contact),
    ("contact", Role::Contact),
    ("firstname", Role::Name),
    ("lastname", Role::Name),
    ("fullname", Role::Name),
    ("name", Role::Name),
    ("emailaddress", Role::Email),
    ("email", Role::Email),
    ("mail", Role::Email),
    ("mobilephone", Role::Phone),
    ("mobile", Role::Phone),
    ("phone", Role::Phone),
    ("telephone", Role::Phone),
    ("tel", Role::Phone),
    ("cell", Role::Phone),
    ("mailingstreet", Role::Address),
    ("address", Role::Address),
    ("street", Role::Address),
    ("wechat", Role::Wechat),
    ("jobtitle", Role::Title),
    ("title", Role::Title),
];

/// A header normalised for comparison: lowercased, without spaces, `_`, `-`, `.` or quotes.
/// Policies' `headers_any` / `headers_all` are compared in this form.
pub fn header_key(header: &str) -> String {
    header
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '"' | '\u{3000}'))
        .flat_map(char::to_lowercase)
        .take(64)
        .collect()
}

/// The role a header names, if it is one we know.
pub fn header_role(header: &str) -> Option<Role> {
    let key = header_key(header);
    if key.is_empty() || key.chars().count() > 40 {
        return None;
    }
    SYNONYMS
        .iter()
        .find(|(s, _)| key == *s)
        .or_else(|| {
            SYNONYMS
                .iter()
                .find(|(s, _)| s.chars().count() >= 5 && key.contains(s))
        })
        .or_else(|| {
            // Short Chinese words inside longer headers: 客户手机, 公司地址.
            SYNONYMS
                .iter()
                .find(|(s, _)| !s.is_ascii() && key.contains(s))
        })
        .map(|&(_, r)| r)
}

/// Per-column observations.
#[derive(Debug, Clone, Default)]
struct Column {
    role: Option<Role>,
    ids: [u64; 4],
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
            stats: RecordStats::default(),
            matches: None,
        }
    }

    /// The customer set in use, if any.
    pub fn edm(&self) -> Option<&Arc<Matcher>> {
        self.matches.as_ref().map(RowMatches::matcher)
    }

    /// Also counts rows holding the company's real customers.
    pub fn with_edm(mut self, edm: Option<Arc<Matcher>>) -> Records {
        self.matches = edm.map(RowMatches::new);
        self
    }

    /// One field of the current record, in column order (tables).
    pub fn field(&mut self, text: &[u8]) {
        let f = text.trim_ascii();
        let mut phone = [0u8; 40];
        match identify(f, &mut phone) {
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
        self.field_id(text, kind, edm_hit.map_or(Lookup::Field, Lookup::Known));
    }

    fn field_id(&mut self, text: &[u8], kind: Option<IdKind>, lookup: Lookup<'_>) {
        let col = self.col.min(MAX_COLUMNS - 1);
        self.col += 1;
        let f = text.trim_ascii();
        if f.is_empty() {
            return;
        }
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
        self.count(MAX_COLUMNS - 1, classify_field(f), f, Lookup::Field);
    }

    fn count(&mut self, col: usize, kind: Option<IdKind>, f: &[u8], lookup: Lookup<'_>) {
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
        if self.columns.len() <= col {
            self.columns.resize(col + 1, Column::default());
        }
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
        s.reasons.push(format!(
            "{} of {} rows hold an identifier ({:.0} %)",
            s.records,
            s.rows,
            share * 100.0
        ));
        if !s.roles.is_empty() {
            let names: Vec<&str> = s.roles.iter().map(|r| r.as_str()).collect();
            s.reasons
                .push(format!("columns recognised: {}", names.join(", ")));
        }
        s.customer_table = if self.contact_list {
            s.reasons.push("a contact list (vCard)".into());
            true
        } else if share >= 0.5 && party {
            s.reasons
                .push("the header names people or companies".into());
            true
        } else if self.tabular && !s.header && share >= 0.8 && dominant && id_columns >= 2 {
            s.reasons
                .push("no header, but identifier columns fill most rows".into());
            true
        } else {
            s.reasons.push("not a customer table".into());
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

    #[test]
    fn header_synonyms() {
        for (h, want) in [
            ("Account Name", Some(Role::Account)),
            ("E-mail", Some(Role::Email)),
            ("Mobile Phone", Some(Role::Phone)),
            ("客户手机", Some(Role::Account)),
            ("联系人手机", Some(Role::Contact)),
            ("微信号", Some(Role::Wechat)),
            ("Mailing Street", Some(Role::Address)),
            ("Mailing City", None),
            ("Product Name", None),
            ("Price", None),
            ("", None),
        ] {
            assert_eq!(header_role(h), want, "{h}");
        }
        assert_eq!(classify_field(b"ada@example.com"), Some(IdKind::Email));
        assert_eq!(classify_field(b"11010519491231002X"), Some(IdKind::CnId));
        assert_eq!(classify_field(b"4111 1111 1111 1111"), Some(IdKind::Card));
        assert_eq!(classify_field(b"13800138000"), Some(IdKind::Phone));
        assert_eq!(classify_field(b"12.99"), None);
    }

    /// Phone-only matches count only beyond chance: unrelated numbers report no customers,
    /// real ones are counted.
    #[test]
    fn phone_only_matches_count_beyond_chance() {
        let mut b = crate::edm::EdmBuilder::new(b"secret");
        for i in 0..100_000u32 {
            b.add(IdKind::Phone, format!("139{i:08}").as_bytes());
        }
        let m = Arc::new(b.finish().matcher());
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
