//! Exact data match: the company's real customers as keyed, truncated fingerprints.
//!
//! Each identifier is normalised (emails lowercased, phones to E.164, ID numbers uppercased,
//! card numbers to digits) and keyed with HMAC-SHA-256 under a deployment secret, then cut
//! to a few bits. The agent holds only these fingerprints (sorted, with a bucket index), never
//! the identifiers: it counts how many of a file's identifiers belong to real customers.
//!
//! How many bits each kind keeps is a security decision, not only a size one (see the threat
//! model in ARCHITECTURE.md): a departing admin can copy the set and the key. Emails are not
//! enumerable, so they keep 32 bits (false match about 1 in 4,300 per lookup for a million
//! customers). Phone numbers are: every Chinese mobile number can be tried in minutes, so
//! phones keep only [`PHONE_BITS`] bits, and enumerating all 7 × 10⁹ mobiles against a
//! million-customer set returns about a hundred false candidates per real one. A phone hit is
//! therefore weak evidence on its own, and phone-only matches are counted as the excess over
//! what chance would give, never one by one.

use crate::classify::record::IdKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fingerprint bits for emails, ID numbers and card numbers.
pub const STRONG_BITS: u32 = 32;
/// Fingerprint bits for phone numbers (an enumerable space).
pub const PHONE_BITS: u32 = 26;
/// Largest set accepted (entries over all kinds).
pub const MAX_ENTRIES: usize = 50_000_000;

/// HMAC-SHA-256 with the key's pads hashed once, so each identifier costs two compressions.
#[derive(Clone)]
pub struct Keyed {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(..)")
    }
}

impl Keyed {
    pub fn new(key: &[u8]) -> Keyed {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |b: u8| -> [u8; 64] { std::array::from_fn(|i| block[i] ^ b) };
        let mut inner = Sha256::new();
        inner.update(pad(0x36));
        let mut outer = Sha256::new();
        outer.update(pad(0x5c));
        Keyed { inner, outer }
    }

    /// HMAC-SHA-256 of `parts` concatenated.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut i = self.inner.clone();
        for p in parts {
            i.update(p);
        }
        let mut o = self.outer.clone();
        o.update(i.finalize());
        o.finalize().into()
    }

    /// The fingerprint of a normalised identifier of `kind`, cut to the kind's bits.
    pub fn fingerprint(&self, kind: IdKind, normalised: &[u8]) -> u32 {
        let m = self.mac(&[kind.as_str().as_bytes(), b"\0", normalised]);
        let v = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        v >> (32 - bits(kind))
    }
}

/// Bits kept for `kind`.
pub fn bits(kind: IdKind) -> u32 {
    match kind {
        IdKind::Phone => PHONE_BITS,
        _ => STRONG_BITS,
    }
}

/// The normal form an identifier is fingerprinted in; `None` when it is not valid.
pub fn normalise(kind: IdKind, raw: &[u8]) -> Option<Vec<u8>> {
    let t = raw.trim_ascii();
    match kind {
        IdKind::Email => crate::classify::is_email(t).then(|| t.to_ascii_lowercase()),
        IdKind::Phone => crate::classify::phone_e164(t).map(String::into_bytes),
        IdKind::CnId => crate::classify::is_cn_id(t).then(|| t.to_ascii_uppercase()),
        IdKind::Card => crate::classify::is_card(t)
            .then(|| t.iter().copied().filter(u8::is_ascii_digit).collect()),
    }
}

/// One kind's fingerprints: sorted, with the start of each 16-bit bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Column {
    #[serde(with = "serde_bytes")]
    sorted_be: Vec<u8>,
    #[serde(skip)]
    values: Vec<u32>,
    #[serde(skip)]
    index: Vec<u32>,
}

impl Column {
    fn build(mut values: Vec<u32>, bits: u32) -> Column {
        values.sort_unstable();
        values.dedup();
        let mut c = Column {
            sorted_be: values.iter().flat_map(|v| v.to_be_bytes()).collect(),
            values,
            index: Vec::new(),
        };
        c.reindex(bits);
        c
    }

    fn reindex(&mut self, bits: u32) {
        let shift = bits.saturating_sub(16);
        let mut index = vec![0u32; (1 << 16) + 1];
        for &v in &self.values {
            index[(v >> shift) as usize + 1] += 1;
        }
        for i in 1..index.len() {
            index[i] += index[i - 1];
        }
        self.index = index;
    }

    fn contains(&self, v: u32, bits: u32) -> bool {
        let b = (v >> bits.saturating_sub(16)) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        self.values[lo..hi].binary_search(&v).is_ok()
    }
}

/// The fingerprint set agents match against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdmSet {
    /// The deployment secret fingerprints are keyed with.
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    /// Columns in [`IdKind::ALL`] order.
    columns: Vec<Column>,
    /// Customers (rows) the set was built from.
    pub customers: u64,
}

/// Why a set could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EDM set: {0}")]
pub struct EdmError(String);

/// Builds a set: add identifiers, then [`EdmBuilder::finish`].
#[derive(Debug)]
pub struct EdmBuilder {
    keyed: Keyed,
    key: Vec<u8>,
    values: [Vec<u32>; 4],
    customers: u64,
}

impl EdmBuilder {
    pub fn new(key: &[u8]) -> EdmBuilder {
        EdmBuilder {
            keyed: Keyed::new(key),
            key: key.to_vec(),
            values: Default::default(),
            customers: 0,
        }
    }

    /// Adds one identifier; `false` when it is not a valid identifier of that kind.
    pub fn add(&mut self, kind: IdKind, raw: &[u8]) -> bool {
        match normalise(kind, raw) {
            Some(n) => {
                self.values[kind as usize].push(self.keyed.fingerprint(kind, &n));
                true
            }
            None => false,
        }
    }

    /// Counts one customer row.
    pub fn customer(&mut self) {
        self.customers += 1;
    }

    pub fn finish(self) -> EdmSet {
        let columns = IdKind::ALL
            .iter()
            .zip(self.values)
            .map(|(&k, v)| Column::build(v, bits(k)))
            .collect();
        EdmSet {
            key: self.key,
            columns,
            customers: self.customers,
        }
    }
}

/// A prepared matcher: the set and its keyed hasher.
#[derive(Debug, Clone)]
pub struct Matcher {
    set: EdmSet,
    keyed: Keyed,
}

impl EdmSet {
    /// Distinct fingerprints per kind.
    pub fn len(&self, kind: IdKind) -> usize {
        self.columns
            .get(kind as usize)
            .map_or(0, |c| c.values.len())
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EdmError> {
        rmp_serde::to_vec_named(self).map_err(|e| EdmError(e.to_string()))
    }

    /// Reads the stored form, checking every column is sorted and within its bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<EdmSet, EdmError> {
        let mut set: EdmSet = rmp_serde::from_slice(bytes).map_err(|e| EdmError(e.to_string()))?;
        if set.columns.len() != IdKind::ALL.len() {
            return Err(EdmError(format!("expected {} columns", IdKind::ALL.len())));
        }
        let mut total = 0usize;
        for (c, &kind) in set.columns.iter_mut().zip(IdKind::ALL.iter()) {
            if c.sorted_be.len() % 4 != 0 {
                return Err(EdmError("column length is not a multiple of 4".into()));
            }
            c.values = c
                .sorted_be
                .chunks_exact(4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            total += c.values.len();
            let max = if bits(kind) == 32 {
                u32::MAX
            } else {
                (1u32 << bits(kind)) - 1
            };
            if c.values.windows(2).any(|w| w[0] >= w[1]) || c.values.iter().any(|&v| v > max) {
                return Err(EdmError(format!(
                    "{} column is not sorted or out of range",
                    kind.as_str()
                )));
            }
            c.reindex(bits(kind));
        }
        if total > MAX_ENTRIES {
            return Err(EdmError(format!("{total} entries exceed the limit")));
        }
        Ok(set)
    }

    /// A matcher for this set.
    pub fn matcher(self) -> Matcher {
        let keyed = Keyed::new(&self.key);
        Matcher { set: self, keyed }
    }
}

impl Matcher {
    /// True when the (validated, not yet normalised) identifier's fingerprint is in the set.
    ///
    /// The hot path of every scan with a set: normalises into a stack buffer, no allocation.
    pub fn matches(&self, kind: IdKind, raw: &[u8]) -> bool {
        let col = &self.set.columns[kind as usize];
        if col.values.is_empty() {
            return false;
        }
        let t = raw.trim_ascii();
        let mut buf = [0u8; 320];
        let n = match kind {
            IdKind::Phone => {
                let mut p = [0u8; 40];
                match crate::classify::phone_e164_into(t, &mut p) {
                    Some(n) => {
                        buf[..n].copy_from_slice(&p[..n]);
                        n
                    }
                    None => return false,
                }
            }
            IdKind::Email | IdKind::CnId => {
                if t.len() > buf.len() || (kind == IdKind::Email && !crate::classify::is_email(t)) {
                    return false;
                }
                for (o, b) in buf.iter_mut().zip(t) {
                    *o = if kind == IdKind::Email {
                        b.to_ascii_lowercase()
                    } else {
                        b.to_ascii_uppercase()
                    };
                }
                t.len()
            }
            IdKind::Card => {
                let mut n = 0;
                for &b in t.iter().filter(|b| b.is_ascii_digit()) {
                    if n == buf.len() {
                        return false;
                    }
                    buf[n] = b;
                    n += 1;
                }
                n
            }
        };
        col.contains(self.keyed.fingerprint(kind, &buf[..n]), bits(kind))
    }

    /// Probability that an identifier of `kind` not in the list matches anyway.
    pub fn false_match_rate(&self, kind: IdKind) -> f64 {
        self.set.len(kind) as f64 / (1u64 << bits(kind)) as f64
    }

    pub fn set(&self) -> &EdmSet {
        &self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_reference() {
        // RFC 4231 test case 2.
        let k = Keyed::new(b"Jefe");
        assert_eq!(
            hex::encode(k.mac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 test case 6).
        let k = Keyed::new(&[0xaa; 131]);
        assert_eq!(
            hex::encode(k.mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn set_of(key: &[u8], emails: &[&str], phones: &[&str]) -> Matcher {
        let mut b = EdmBuilder::new(key);
        for e in emails {
            assert!(b.add(IdKind::Email, e.as_bytes()));
        }
        for p in phones {
            assert!(b.add(IdKind::Phone, p.as_bytes()));
        }
        let set = b.finish();
        EdmSet::from_bytes(&set.to_bytes().unwrap())
            .unwrap()
            .matcher()
    }

    #[test]
    fn matches_normalised_forms_only_under_the_same_key() {
        let m = set_of(b"k1", &["Ada.Lee@Example.com"], &["+86 138 0013 8000"]);
        assert!(m.matches(IdKind::Email, b" ada.lee@example.COM "));
        assert!(m.matches(IdKind::Phone, b"138-0013-8000"));
        assert!(m.matches(IdKind::Phone, b"13800138000"));
        assert!(!m.matches(IdKind::Email, b"bob@example.com"));
        assert!(!m.matches(IdKind::Phone, b"139 0013 8000"));
        assert!(!m.matches(IdKind::CnId, b"11010519491231002X"));
        // The allocation-free path agrees with the import's normal forms for every kind.
        let mut b = EdmBuilder::new(b"k3");
        for (k, v) in [
            (IdKind::CnId, "11010519491231002x"),
            (IdKind::Card, "4111-1111-1111-1111"),
            (IdKind::Phone, "(0755) 1234 5678"),
        ] {
            assert!(b.add(k, v.as_bytes()));
        }
        let m3 = b.finish().matcher();
        assert!(m3.matches(IdKind::CnId, b"11010519491231002X"));
        assert!(m3.matches(IdKind::Card, b"4111111111111111"));
        assert!(m3.matches(IdKind::Phone, b"+86 755 1234 5678"));
        let other = set_of(b"k2", &[], &[]);
        assert!(!other.matches(IdKind::Email, b"ada.lee@example.com"));
        assert!(EdmSet::from_bytes(b"\xc1").is_err());
    }

    /// The false-match rate is what the bit counts promise: measured on 200,000 identifiers
    /// that are not in a 1,000,000-entry set.
    #[test]
    fn false_match_rate_is_as_documented() {
        let mut b = EdmBuilder::new(b"deployment secret");
        for i in 0..1_000_000u64 {
            b.add(IdKind::Email, format!("customer{i}@example.com").as_bytes());
            b.add(IdKind::Phone, format!("139{:08}", i).as_bytes());
        }
        let m = b.finish().matcher();
        let trials = 200_000u64;
        let email_false = (0..trials)
            .filter(|i| m.matches(IdKind::Email, format!("stranger{i}@example.org").as_bytes()))
            .count() as f64;
        let phone_false = (0..trials)
            .filter(|i| m.matches(IdKind::Phone, format!("137{:08}", i).as_bytes()))
            .count() as f64;
        let (e_rate, p_rate) = (
            m.false_match_rate(IdKind::Email),
            m.false_match_rate(IdKind::Phone),
        );
        assert!((e_rate - 1e6 / 4294967296.0).abs() < 1e-6);
        // Within five standard deviations of the expected counts.
        let within = |got: f64, rate: f64| {
            (got - trials as f64 * rate).abs() <= 5.0 * (trials as f64 * rate).sqrt() + 1.0
        };
        assert!(
            within(email_false, e_rate),
            "email false matches {email_false}"
        );
        assert!(
            within(phone_false, p_rate),
            "phone false matches {phone_false}, rate {p_rate}"
        );
        // And every member matches.
        assert!((0..1000u64)
            .all(|i| m.matches(IdKind::Email, format!("customer{i}@example.com").as_bytes())));
    }
}
