//! Identifier validators: is this field an email address, a phone number?
//!
//! They work on one field's bytes and prefer a miss to a false positive: a price,
//! a date or a version string must never count as a phone number.

/// True when `field` (already trimmed) is a plausible email address.
pub fn is_email(field: &[u8]) -> bool {
    let Some(at) = field.iter().position(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&field[..at], &field[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.len() < 4 || domain.len() > 253 {
        return false;
    }
    let local_ok = local
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"._%+-'".contains(&b));
    if !local_ok || local[0] == b'.' || local[local.len() - 1] == b'.' {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label[0] != b'-'
            && label[label.len() - 1] != b'-';
        if !ok {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(|b| b.is_ascii_alphabetic())
}

/// True when `field` (already trimmed) is a plausible phone number.
///
/// Accepts international numbers with `+` or `00`, numbers written with separators
/// (`(415) 555-0101`, `020-7946 0958`, `138 0013 8000`), and bare 11-digit Chinese mobiles.
/// Rejects decimals, dates and bare digit runs of other lengths (order numbers, timestamps).
pub fn is_phone(field: &[u8]) -> bool {
    if field.is_empty() || field.len() > 32 {
        return false;
    }
    let mut digits = 0usize;
    let mut separators = 0usize;
    let mut groups: Vec<usize> = Vec::with_capacity(6);
    let mut run = 0usize;
    let mut has_dot = false;
    let mut has_slash = false;
    for (i, &b) in field.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                run += 1;
                continue;
            }
            b'+' if i == 0 => {}
            b' ' | b'-' | b'(' | b')' => separators += 1,
            b'.' => {
                has_dot = true;
                separators += 1;
            }
            b'/' => {
                has_slash = true;
                separators += 1;
            }
            _ => return false,
        }
        if run > 0 {
            groups.push(run);
            run = 0;
        }
    }
    if run > 0 {
        groups.push(run);
    }
    if !(8..=15).contains(&digits) || has_slash {
        return false;
    }
    let international = field[0] == b'+' || field.starts_with(b"00");
    // A date or time: 4-2-2, 2-2-4, with or without a time after it.
    if !international
        && groups.len() >= 3
        && ((groups[0] == 4 && groups[1] <= 2 && groups[2] <= 2)
            || (groups[0] <= 2 && groups[1] <= 2 && groups[2] == 4))
    {
        return false;
    }
    // A decimal number (price, measurement) or a dotted version string.
    if has_dot && (groups.len() == 2 || groups.iter().any(|&g| g <= 1)) {
        return false;
    }
    if separators == 0 && field[0] != b'+' {
        // Bare digits: only an 11-digit mainland China mobile (1[3-9]x) is unambiguous;
        // a bare `00…` run is far more often a record id than a dialled number.
        return digits == 11 && field[0] == b'1' && (b'3'..=b'9').contains(&field[1]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&[u8]) -> bool, cases: &[(&str, bool)]) {
        for (input, want) in cases {
            assert_eq!(f(input.as_bytes()), *want, "{input:?}");
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
            ],
        );
    }
}
