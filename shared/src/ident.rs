//! Customer identifiers: their kinds and their validators (is this field an email address,
//! a phone number, an ID or a card number?), below both the classifiers and exact data match.
//!
//! They work on one field's bytes and prefer a miss to a false positive: a price,
//! a date or a version string must never count as a phone number.

/// A customer identifier found in one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Email,
    Phone,
    CnId,
    Card,
}

impl IdKind {
    pub const ALL: [IdKind; 4] = [IdKind::Email, IdKind::Phone, IdKind::CnId, IdKind::Card];

    /// The classifier name used in summaries and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Email => "email",
            IdKind::Phone => "phone",
            IdKind::CnId => "cn_id",
            IdKind::Card => "card",
        }
    }
}

/// Which identifier a field is, if any. Checked most specific first.
pub fn classify_field(f: &[u8]) -> Option<IdKind> {
    identify(f, &mut [0; 40]).map(|(kind, _)| kind)
}

/// Like [`classify_field`], and a phone number's normal form (E.164) written to `phone` on
/// the way, with its length: validating a number and normalising it are the same work.
pub fn identify(f: &[u8], phone: &mut [u8; 40]) -> Option<(IdKind, usize)> {
    if f.len() < 6 {
        return None;
    }
    if let Some(at) = f.iter().position(|&b| b == b'@') {
        return is_email_at(f, at).then_some((IdKind::Email, 0));
    }
    // ID, card and phone numbers all start with a digit or one of these: a name, a company,
    // a city (most fields of a table) is settled here without running their validators.
    if !matches!(f[0], b'0'..=b'9' | b'+' | b'(' | b'-' | b'.' | b' ') {
        return None;
    }
    if is_cn_id(f) {
        Some((IdKind::CnId, 0))
    } else if is_card(f) {
        Some((IdKind::Card, 0))
    } else {
        phone_e164_into(f, phone).map(|n| (IdKind::Phone, n))
    }
}

/// What a field's column says it holds, when a header (or a field name) says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Context {
    /// Nothing known: every validator, strictly (a bare digit run is rarely a phone).
    #[default]
    Unknown,
    /// A phone column: numbers as people and CRMs write them count, with an extension
    /// (`x23`, `ext. 23`, `转 8001`), as bare digits, in a national format without a country
    /// code, or as a 7-digit local number.
    Phone,
    /// A column of order, invoice or record numbers, dates or amounts: nothing in it is a
    /// customer's phone, ID or card, whatever it looks like (an email address still is one).
    NotPersonal,
}

/// Like [`identify`], for a field whose column is known to hold `ctx`.
pub fn identify_in(f: &[u8], ctx: Context, phone: &mut [u8; 40]) -> Option<(IdKind, usize)> {
    match ctx {
        Context::Unknown => identify(f, phone),
        Context::NotPersonal => (f.contains(&b'@') && is_email(f)).then_some((IdKind::Email, 0)),
        Context::Phone => phone_in_column_into(f, phone)
            .map(|n| (IdKind::Phone, n))
            .or_else(|| identify(f, phone)),
    }
}

/// A phone number as written in a phone column, normalised like [`phone_e164`] (national
/// digits when no country can be told): the strict forms, and also an extension after the
/// number (dropped), bare digits, national formats without a country code (`01 42 68 53 00`,
/// `(0171) 555-2282`, `(11) 3456-7890`) and 7-digit local numbers (`555-0100`). Still not a
/// date, a decimal or a run of letters.
pub fn phone_in_column(field: &[u8]) -> Option<String> {
    let mut out = [0u8; 40];
    let n = phone_in_column_into(field, &mut out)?;
    String::from_utf8(out[..n].to_vec()).ok()
}

/// Like [`phone_in_column`], into `out` without allocating; returns the length written.
pub fn phone_in_column_into(field: &[u8], out: &mut [u8; 40]) -> Option<usize> {
    let main = without_extension(field.trim_ascii());
    if let Some(n) = phone_e164_into(main, out) {
        return Some(n);
    }
    if main.len() < 7 || main.len() > 32 {
        return None;
    }
    let mut digits = [0u8; 32];
    let mut n = 0usize;
    let mut groups = 0usize;
    let mut in_group = false;
    let mut has_dot = false;
    for (i, &b) in main.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits[n] = b;
                n += 1;
                if !in_group {
                    groups += 1;
                }
                in_group = true;
                continue;
            }
            b'+' if i == 0 => {}
            b' ' | b'-' | b'(' | b')' | b'/' => {}
            b'.' => has_dot = true,
            _ => return None,
        }
        in_group = false;
    }
    if !(7..=15).contains(&n) || main[0] == b'+' {
        return None;
    }
    // A decimal (`1234567.89`) or a dotted date is not a number anyone dials.
    if has_dot && groups <= 2 {
        return None;
    }
    if is_date_like(main) {
        return None;
    }
    let d = &digits[..n];
    let write = |prefix: &[u8], body: &[u8], out: &mut [u8; 40]| {
        let len = prefix.len() + body.len();
        out[..prefix.len()].copy_from_slice(prefix);
        out[prefix.len()..len].copy_from_slice(body);
        len
    };
    // Ten bare digits in North American form (area and exchange codes start 2–9): how
    // Salesforce and most US CRMs store them.
    if n == 10 && groups == 1 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3]) {
        return Some(write(b"+1", d, out));
    }
    // Everything else a phone column holds: national digits as written.
    Some(write(b"", d, out))
}

/// A phone column's number in a row whose country column names `country`: E.164 made from
/// the digits as written (the country overrides what the shape alone would guess: `020 7946
/// 0958` in the United Kingdom is London's, not Guangzhou's). `None` when the field is no
/// phone, is written internationally already (`+`, `00`), or cannot be made whole; the
/// number's own normal form ([`phone_in_column_into`]) stands then.
pub fn phone_in_country_into(
    field: &[u8],
    country: crate::country::Dialling,
    out: &mut [u8; 40],
) -> Option<usize> {
    let main = without_extension(field.trim_ascii());
    if main.starts_with(b"+") || main.starts_with(b"00") {
        return None;
    }
    // Valid as a phone column's number first (no date, decimal or word).
    phone_in_column_into(field, out)?;
    let mut digits = [0u8; 32];
    let mut n = 0;
    for &b in main.iter().filter(|b| b.is_ascii_digit()) {
        *digits.get_mut(n)? = b;
        n += 1;
    }
    country.e164_into(&digits[..n], out)
}

/// The number before an extension: `555-0100 x23`, `(415) 555-0100 ext. 23`, `010-12345678转8001`,
/// `… #12`, `… extension 4`, `… 分机 12`.
fn without_extension(f: &[u8]) -> &[u8] {
    // Most numbers have no extension: one pass for a byte that can start a marker.
    if !f
        .iter()
        .any(|&b| matches!(b, b'x' | b'X' | b'e' | b'E' | b'#') || b >= 0x80)
    {
        return f;
    }
    const MARKERS: [&[u8]; 7] = [
        b" extension",
        b" ext.",
        b" ext",
        b"ext.",
        "转".as_bytes(),
        "分机".as_bytes(),
        b" x",
    ];
    let lower = |b: u8| b.to_ascii_lowercase();
    for m in MARKERS.iter().chain([&&b"#"[..], &&b"x"[..]]) {
        let Some(at) = (0..f.len().saturating_sub(m.len() - 1)).find(|&i| {
            f[i..i + m.len()]
                .iter()
                .zip(m.iter())
                .all(|(&a, &b)| lower(a) == b)
        }) else {
            continue;
        };
        let (head, tail) = (&f[..at], &f[at + m.len()..]);
        let tail = &tail[tail.iter().take_while(|b| b" .:".contains(b)).count()..];
        let ext_ok = (1..=6).contains(&tail.len()) && tail.iter().all(u8::is_ascii_digit);
        if ext_ok && head.iter().filter(|b| b.is_ascii_digit()).count() >= 7 {
            return head.trim_ascii_end();
        }
    }
    f
}

/// `2024-01-05`, `05/01/2024`, `2024 01 05 12 30`: digit groups in a date's shape.
fn is_date_like(f: &[u8]) -> bool {
    let mut groups = [0usize; 8];
    let mut k = 0;
    let mut run = 0;
    for &b in f.iter().chain(b" ") {
        if b.is_ascii_digit() {
            run += 1;
        } else if run > 0 {
            if k == groups.len() {
                return false;
            }
            groups[k] = run;
            k += 1;
            run = 0;
        }
    }
    let g = &groups[..k];
    g.len() >= 3 && ((g[0] == 4 && g[1] <= 2 && g[2] <= 2) || (g[0] <= 2 && g[1] <= 2 && g[2] == 4))
}

/// True when `field` (already trimmed) is a plausible email address.
pub fn is_email(field: &[u8]) -> bool {
    field
        .iter()
        .position(|&b| b == b'@')
        .is_some_and(|at| is_email_at(field, at))
}

/// Whether a byte may stand in an address's local part (letters, digits, `._%+-'`), and in a
/// domain label (letters, digits, `-`): one table load a byte, on every `@` field scanned.
const LOCAL_BYTE: [bool; 256] = byte_table(b"._%+-'");
const LABEL_BYTE: [bool; 256] = byte_table(b"-");

const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// [`is_email`] for a field whose first `@` is at `at`.
fn is_email_at(field: &[u8], at: usize) -> bool {
    let (local, domain) = (&field[..at], &field[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.len() < 4 || domain.len() > 253 {
        return false;
    }
    if !local.iter().all(|&b| LOCAL_BYTE[usize::from(b)])
        || local[0] == b'.'
        || local[local.len() - 1] == b'.'
    {
        return false;
    }
    // One pass over the domain: each label 1 to 63 bytes of letters, digits and inner `-`.
    let label_ok =
        |l: &[u8]| !l.is_empty() && l.len() <= 63 && l[0] != b'-' && l[l.len() - 1] != b'-';
    let mut labels = 1;
    let mut start = 0;
    for (i, &b) in domain.iter().enumerate() {
        if b == b'.' {
            if !label_ok(&domain[start..i]) {
                return false;
            }
            labels += 1;
            start = i + 1;
        } else if !LABEL_BYTE[usize::from(b)] {
            return false;
        }
    }
    let last = &domain[start..];
    label_ok(last) && labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

/// True when `field` (already trimmed) is a plausible phone number: see [`phone_e164`].
/// Allocation-free: it runs on every field of every file.
pub fn is_phone(field: &[u8]) -> bool {
    phone_parts(field).is_some()
}

/// Validates a phone number and normalises it for exact matching: E.164 (`+8613800138000`)
/// when the country is written or unambiguous from the shape, the national digits otherwise.
///
/// Accepts international numbers (`+…`, or `00…` written with separators), mainland China
/// mobiles (`138 0013 8000`, bare `13800138000`) and landlines (`010-12345678`,
/// `(0755) 1234 5678`), Hong Kong (`+852 9123 4567`, `9123 4567`), Taiwan (`0912-345-678`,
/// `02-2345-6789`), North American (`(415) 555-0101`) and other national numbers written with
/// separators. Rejects decimals, dates and times, versions, and bare digit runs other than a
/// Chinese mobile (a bare run is far more often an order number or a timestamp).
pub fn phone_e164(field: &[u8]) -> Option<String> {
    let p = phone_parts(field)?;
    let digits = std::str::from_utf8(&p.digits[p.from..p.len]).ok()?;
    Some(format!("{}{digits}", p.prefix))
}

/// Like [`phone_e164`], into `out` without allocating; returns the length written.
pub fn phone_e164_into(field: &[u8], out: &mut [u8; 40]) -> Option<usize> {
    let p = phone_parts(field)?;
    let prefix = p.prefix.as_bytes();
    let digits = &p.digits[p.from..p.len];
    let n = prefix.len() + digits.len();
    out[..prefix.len()].copy_from_slice(prefix);
    out[prefix.len()..n].copy_from_slice(digits);
    Some(n)
}

/// A validated phone number: `prefix` (`+`, `+86`, …, or empty for national) then
/// `digits[from..len]`.
struct PhoneParts {
    prefix: &'static str,
    digits: [u8; 32],
    from: usize,
    len: usize,
}

fn phone_parts(field: &[u8]) -> Option<PhoneParts> {
    if field.len() < 8 || field.len() > 32 {
        return None;
    }
    let mut digits = [0u8; 32];
    let mut n = 0usize;
    let mut separators = 0usize;
    let mut groups = [0u8; 16];
    let mut ngroups = 0usize;
    let mut run = 0usize;
    let (mut has_dot, mut has_paren) = (false, false);
    for (i, &b) in field.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits[n] = b;
                n += 1;
                run += 1;
                continue;
            }
            b'+' if i == 0 => {}
            b' ' | b'-' => separators += 1,
            b'(' | b')' => {
                has_paren = true;
                separators += 1;
            }
            b'.' => {
                has_dot = true;
                separators += 1;
            }
            _ => return None,
        }
        if run > 0 {
            if ngroups == groups.len() {
                return None;
            }
            groups[ngroups] = run as u8;
            ngroups += 1;
            run = 0;
        }
    }
    if run > 0 && ngroups < groups.len() {
        groups[ngroups] = run as u8;
        ngroups += 1;
    }
    let groups = &groups[..ngroups];
    if !(8..=15).contains(&n) {
        return None;
    }
    let d = &digits[..n];
    let plus = field[0] == b'+';
    let international = plus || (field.starts_with(b"00") && separators > 0);
    if !international
        && groups.len() >= 3
        && ((groups[0] == 4 && groups[1] <= 2 && groups[2] <= 2)
            || (groups[0] <= 2 && groups[1] <= 2 && groups[2] == 4))
    {
        return None; // a date or a date-time
    }
    if has_dot && (groups.len() == 2 || groups.iter().any(|&g| g <= 1)) {
        return None; // a decimal number or a dotted version
    }
    let parts = |prefix, from| {
        Some(PhoneParts {
            prefix,
            digits,
            from,
            len: n,
        })
    };
    let first = |d: &[u8]| d.first().copied().unwrap_or(0);
    if international {
        let from = if plus { 0 } else { 2 };
        let body = &d[from..];
        if !(8..=15).contains(&body.len()) {
            return None;
        }
        let ok = if let Some(nat) = body.strip_prefix(b"86") {
            cn_mobile(nat) || cn_landline_after_zero(nat, None)
        } else if let Some(nat) = body.strip_prefix(b"852") {
            nat.len() == 8 && b"235679".contains(&first(nat))
        } else if let Some(nat) = body.strip_prefix(b"886") {
            (8..=9).contains(&nat.len())
        } else if let Some(nat) = body.strip_prefix(b"1") {
            nat.len() == 10 && (b'2'..=b'9').contains(&first(nat))
        } else {
            true
        };
        return if ok { parts("+", from) } else { None };
    }
    if separators == 0 {
        return if cn_mobile(d) { parts("+86", 0) } else { None };
    }
    if cn_mobile(d) {
        return parts("+86", 0);
    }
    if d.starts_with(b"09") && n == 10 {
        return parts("+886", 1);
    }
    if first(d) == b'0' {
        // Taiwan landline, 0X-XXXX-XXXX (a European 0X XX XX XX XX is national digits).
        if groups.len() == 3 && groups[0] == 2 && (3..=4).contains(&groups[1]) && groups[2] == 4 {
            return parts("+886", 1);
        }
        if cn_landline_after_zero(&d[1..], groups.first().map(|&g| usize::from(g))) {
            return parts("+86", 1);
        }
        return if (9..=11).contains(&n) {
            parts("", 0)
        } else {
            None
        };
    }
    if n == 8 && groups == [4, 4] && b"235679".contains(&first(d)) {
        return parts("+852", 0);
    }
    if n == 10 && (has_paren || groups == [3, 3, 4]) && (b'2'..=b'9').contains(&first(d)) {
        return parts("+1", 0);
    }
    None
}

/// An 11-digit mainland China mobile number (`1[3-9]…`).
fn cn_mobile(d: &[u8]) -> bool {
    d.len() == 11 && d[0] == b'1' && (b'3'..=b'9').contains(&d[1])
}

/// A mainland China landline without its leading `0`: a 2-digit (`10`, `2X`) or 3-digit
/// area code, then a 7- or 8-digit local number. `written_area` is the first group as
/// written (with its `0`), if known.
fn cn_landline_after_zero(d: &[u8], written_area: Option<usize>) -> bool {
    if !(9..=11).contains(&d.len()) || d[0] == b'0' {
        return false;
    }
    // 010 (Beijing) and 02X are the only 3-digit area codes; the rest have 4 digits.
    let area = match d[0] {
        b'1' if d[1] == b'0' => 3,
        b'1' => return false,
        b'2' => 3,
        _ => 4,
    };
    written_area.is_none_or(|w| w == area) && (7..=8).contains(&(d.len() + 1 - area))
}

/// True when `field` is a mainland China resident identity number (GB 11643-1999): 18
/// characters, a plausible region and birth date, and a valid check character.
pub fn is_cn_id(field: &[u8]) -> bool {
    if field.len() != 18 || !field[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let check = field[17].to_ascii_uppercase();
    if !(check.is_ascii_digit() || check == b'X') {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        field[r]
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let province = num(0..2);
    if !matches!(province, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83)
    {
        return false;
    }
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = field[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] == check
}

/// True when `field` is a payment card number: 13–19 digits (spaces or dashes allowed
/// between groups), a known issuer range (Visa, Mastercard, Amex, Discover, JCB, Diners,
/// UnionPay) with that issuer's length, and a valid Luhn check digit.
pub fn is_card(field: &[u8]) -> bool {
    if field.len() > 23 {
        return false;
    }
    let mut buf = [0u8; 23];
    let mut len = 0;
    for (i, &b) in field.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                buf[len] = b - b'0';
                len += 1;
            }
            b' ' | b'-' if i > 0 && field[i - 1].is_ascii_digit() => {}
            _ => return false,
        }
    }
    let d = &buf[..len];
    if !(13..=19).contains(&len) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let prefix = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let issuer_ok = match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && len == 16,
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        3 => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
                || ((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38)) && len == 14
        }
        6 => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&len)
                || prefix(2) == 62 && (16..=19).contains(&len)
        }
        _ => false,
    };
    issuer_ok && luhn(d)
}

#[allow(clippy::manual_is_multiple_of)] // keeps the 1.85 MSRV
fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&[u8]) -> bool, cases: &[(&str, bool)]) {
        for (input, want) in cases {
            assert_eq!(f(input.as_bytes()), *want, "{input:?}");
        }
    }

    /// `check` for a normaliser: what `f` makes of each input, `None` for a refusal.
    fn check_normal(f: fn(&[u8]) -> Option<String>, cases: &[(&str, Option<&str>)]) {
        for (input, want) in cases {
            assert_eq!(f(input.as_bytes()).as_deref(), *want, "{input:?}");
        }
    }

    #[test]
    fn emails() {
        check(
            is_email,
            &[
                ("ada@example.com", true),
                ("first.last+tag@sub.example.co.uk", true),
                ("o'neil@example.ie", true),
                ("user@localhost", false),
                ("@example.com", false),
                ("ada@", false),
                ("ada@example", false),
                ("ada@@example.com", false),
                ("ada@exa_mple.com", false),
                ("ada@example.c0m", false),
                (".ada@example.com", false),
                ("git@github.com:org/repo", false),
                ("v1.2.3", false),
                // Labels: none empty, none at a hyphen's edge, at most 63 bytes.
                ("ada@mail.example-corp.com", true),
                ("ada@example..com", false),
                ("ada@.example.com", false),
                ("ada@example.com.", false),
                ("ada@-example.com", false),
                ("ada@example-.com", false),
                ("ada@example.-com", false),
                ("ada@example.co-", false),
                (&format!("ada@{}.com", "a".repeat(63)), true),
                (&format!("ada@{}.com", "a".repeat(64)), false),
            ],
        );
    }

    #[test]
    fn phones() {
        check(
            is_phone,
            &[
                ("(415) 555-0101", true),
                ("+1 415 555 0101", true),
                ("+8613800138000", true),
                ("13800138000", true),
                ("138 0013 8000", true),
                ("010-12345678", true),
                ("+44 20 7946 0958", true),
                ("0086 21 1234 5678", true),
                ("003000000000123", false),
                ("008613800138000", false),
                ("+852 2345 6789", true),
                ("12345678901", false),
                ("20240105123000", false),
                ("2024-01-05", false),
                ("2024-01-05 12:30", false),
                ("05/01/2024", false),
                ("1299.00", false),
                ("12345678.99", false),
                ("1.2.3.4", false),
                ("555-0101", false),
                ("1234567", false),
                ("10.0.0.1", false),
                ("ORD-2024-000123", false),
                ("", false),
                // Mainland China, Hong Kong, Taiwan, E.164.
                ("+86 138-0013-8000", true),
                ("86 138 0013 8000", false),
                ("(0755) 1234 5678", true),
                ("0755-1234567", true),
                ("021 6123 4567", true),
                ("+86 10 1234 5678", true),
                ("+86 1234 5678 9012", false),
                ("9123 4567", true),
                ("+852 9123 4567", true),
                ("+852 1123 4567", false),
                ("0912-345-678", true),
                ("02-2345-6789", true),
                ("+886 912 345 678", true),
                ("+49 30 901820", true),
                ("+1 (212) 555 0199", true),
                ("+1 012 555 0199", false),
                // Timestamps, versions, amounts, ids.
                ("1700000000000", false),
                ("1700000000", false),
                ("2024 01 05", false),
                ("3.14159265", false),
                ("12:30:45", false),
                ("v2.3.4-rc1", false),
                ("4111 1111 1111 1111", false),
            ],
        );
    }

    /// Phones as CRMs and spreadsheets hold them count in a column headed as phones, and are
    /// normalised as the strict forms are (the extension dropped); the same text outside such
    /// a column stays strict, and an order column holds no phones at all.
    #[test]
    fn phones_in_a_phone_column() {
        check_normal(
            phone_in_column,
            &[
                ("555-0100 x23", Some("5550100")),
                ("(415) 555-0100 ext. 23", Some("+14155550100")),
                ("(415) 555-0100 Ext 23", Some("+14155550100")),
                ("+1 415 555 0100 #12", Some("+14155550100")),
                ("010-12345678转8001", Some("+861012345678")),
                ("010-12345678 分机 12", Some("+861012345678")),
                ("4155550100", Some("+14155550100")),
                ("01 42 68 53 00", Some("0142685300")),
                ("(0171) 555-2282", Some("01715552282")),
                ("030 1234567", Some("0301234567")),
                ("08-123 456 78", Some("0812345678")),
                ("(11) 3456-7890", Some("1134567890")),
                ("55 1234 5678", Some("5512345678")),
                ("555-0100", Some("5550100")),
                ("5550100", Some("5550100")),
                ("13800138000", Some("+8613800138000")),
                // Still not phones: dates, decimals, words, too short or too long.
                ("2024-01-05", None),
                ("05/01/2024", None),
                ("1234567.89", None),
                ("n/a", None),
                ("123456", None),
                ("1234567890123456", None),
                ("555-0100 x", None),
            ],
        );
        let mut p = [0u8; 40];
        let kind =
            |f: &str, ctx, p: &mut [u8; 40]| identify_in(f.as_bytes(), ctx, p).map(|(k, _)| k);
        assert_eq!(
            kind("555-0100 x23", Context::Phone, &mut p),
            Some(IdKind::Phone)
        );
        assert_eq!(kind("555-0100 x23", Context::Unknown, &mut p), None);
        assert_eq!(kind("4155550100", Context::Unknown, &mut p), None);
        // An order number shaped like a mobile, a provider id shaped like a card.
        assert_eq!(kind("13912345678", Context::NotPersonal, &mut p), None);
        assert_eq!(
            kind("13912345678", Context::Unknown, &mut p),
            Some(IdKind::Phone)
        );
        assert_eq!(kind("378282246310005", Context::NotPersonal, &mut p), None);
        assert_eq!(
            kind("378282246310005", Context::Unknown, &mut p),
            Some(IdKind::Card)
        );
        assert_eq!(
            kind("ada@example.com", Context::NotPersonal, &mut p),
            Some(IdKind::Email)
        );
        // A European national number is not read as Taiwanese any more.
        assert_eq!(phone_e164(b"01 42 68 53 00").as_deref(), Some("0142685300"));
        assert_eq!(
            phone_e164(b"02-2345-6789").as_deref(),
            Some("+886223456789")
        );
    }

    #[test]
    fn phone_normalisation() {
        check_normal(
            phone_e164,
            &[
                ("138 0013 8000", Some("+8613800138000")),
                ("+86 138-0013-8000", Some("+8613800138000")),
                ("13800138000", Some("+8613800138000")),
                ("0086 138 0013 8000", Some("+8613800138000")),
                ("010-12345678", Some("+861012345678")),
                ("9123 4567", Some("+85291234567")),
                ("0912-345-678", Some("+886912345678")),
                ("(415) 555-0101", Some("+14155550101")),
                ("+1 415 555 0101", Some("+14155550101")),
                // 020 is Guangzhou as well as London: a Chinese deployment reads it as Guangzhou.
                ("020 7946 0958", Some("+862079460958")),
                ("0121 496 0000", Some("01214960000")),
                ("2024-01-05", None),
            ],
        );
    }

    #[test]
    fn cn_ids() {
        check(
            is_cn_id,
            &[
                ("11010519491231002X", true),
                ("11010519491231002x", true),
                ("440308199901011234", true),
                ("320106198507154215", true),
                ("110105194912310021", false), // wrong check digit
                ("110105194913310025", false), // month 13
                ("110105194902300022", false), // 30 February
                ("990105194912310021", false), // no such province
                ("11010519491231002", false),
                ("1101051949123100211", false),
                ("2024010512300000XX", false),
                ("123456789012345678", false),
            ],
        );
    }

    #[test]
    fn cards() {
        check(
            is_card,
            &[
                ("4111 1111 1111 1111", true),
                ("4111-1111-1111-1111", true),
                ("5500005555555559", true),
                ("2223000048400011", true),
                ("378282246310005", true),
                ("6011111111111117", true),
                ("3530111333300000", true),
                ("30569309025904", true),
                ("6212345678901232", true),
                ("4111111111111112", false), // Luhn
                ("1234567812345670", false), // no issuer
                ("5600005555555558", false), // 56 is not Mastercard
                ("37828224631000", false),   // Amex is 15 digits
                ("0000000000000000", false),
                ("4444444444444444", false),
                (" 4111111111111111", false),
                ("4111 1111 1111 1111 1111 11", false),
                ("20240105123000123", false),
            ],
        );
    }
}
