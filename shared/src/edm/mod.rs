//! Exact data match: the company's real customers as keyed, truncated fingerprints.
//!
//! Each identifier is normalised (emails lowercased, phones to E.164, ID numbers uppercased,
//! card numbers to digits) and keyed with SipHash-2-4 under a key derived from the deployment
//! secret (HMAC-SHA-256), then cut to a few bits. The agent holds only these fingerprints (sorted, with a bucket index), never
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

pub mod manifest;

use crate::ident::IdKind;
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// Fingerprint bits for emails, ID numbers and card numbers.
pub const STRONG_BITS: u32 = 32;
/// Fingerprint bits for phone numbers (an enumerable space).
pub const PHONE_BITS: u32 = 26;
/// Largest set accepted (entries over all kinds).
pub const MAX_ENTRIES: usize = 50_000_000;
/// The fingerprint scheme sets are made with: 2 is SipHash-2-4 under a key derived from the
/// secret (1, HMAC-SHA-256 of each identifier, cost four times as much per lookup).
pub const SCHEME: u8 = 2;

/// HMAC-SHA-256 with the key's pads hashed once: signatures of webhooks and the derivation of
/// the fingerprint keys.
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
}

/// The keyed function identifiers are fingerprinted with: SipHash-2-4, a pseudo-random
/// function made for short inputs, under a 128-bit key derived from the deployment secret.
///
/// Its speed is not what protects the set (the key sits beside it on the device; see the
/// threat model): the truncation is. It is four times cheaper than HMAC-SHA-256 per
/// identifier, which is what lets a scan with a million-customer set keep up with the disk.
#[derive(Clone)]
pub struct Fingerprinter {
    /// A key per kind ([`IdKind::ALL`] order), so kinds never share fingerprints.
    keys: [(u64, u64); 4],
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(..)")
    }
}

impl Fingerprinter {
    pub fn new(secret: &[u8]) -> Fingerprinter {
        let keyed = Keyed::new(secret);
        let keys = IdKind::ALL.map(|kind| {
            let k = keyed.mac(&[b"holdfast edm fingerprint v2\0", kind.as_str().as_bytes()]);
            let half = |i: usize| u64::from_le_bytes(std::array::from_fn(|j| k[i + j]));
            (half(0), half(8))
        });
        Fingerprinter { keys }
    }

    fn hasher(&self, kind: IdKind) -> SipHasher24 {
        let (k0, k1) = self.keys[kind as usize];
        SipHasher24::new_with_keys(k0, k1)
    }

    fn cut(kind: IdKind, h: &SipHasher24) -> u32 {
        ((h.finish() >> 32) as u32) >> (32 - bits(kind))
    }

    /// The fingerprint of a normalised identifier of `kind`, cut to the kind's bits.
    pub fn fingerprint(&self, kind: IdKind, normalised: &[u8]) -> u32 {
        let mut h = self.hasher(kind);
        h.write(normalised);
        Self::cut(kind, &h)
    }

    /// The fingerprint of the bytes `normalised` yields: a normal form made on the fly, a
    /// small block at a time, with nothing to allocate or clear.
    pub fn fingerprint_of(&self, kind: IdKind, normalised: impl Iterator<Item = u8>) -> u32 {
        let mut h = self.hasher(kind);
        let mut block = [0u8; 32];
        let mut n = 0;
        for b in normalised {
            if n == block.len() {
                h.write(&block);
                n = 0;
            }
            block[n] = b;
            n += 1;
        }
        h.write(&block[..n]);
        Self::cut(kind, &h)
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
        IdKind::Email => crate::ident::is_email(t).then(|| t.to_ascii_lowercase()),
        IdKind::Phone => crate::ident::phone_e164(t).map(String::into_bytes),
        IdKind::CnId => crate::ident::is_cn_id(t).then(|| t.to_ascii_uppercase()),
        IdKind::Card => {
            crate::ident::is_card(t).then(|| t.iter().copied().filter(u8::is_ascii_digit).collect())
        }
    }
}

/// One kind's fingerprints: a bucket per value of their top 16 bits (where each bucket
/// starts), and in each bucket the rest of the bits, sorted. Two bytes a fingerprint, so a
/// bucket (about 16 of them for a million customers) is one cache line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Column {
    bits: u32,
    index: Vec<u32>,
    lows: Vec<u16>,
}

/// Builds a column from fingerprints given in increasing order, one at a time, so a set is
/// read from a stream without its values ever held twice.
struct ColumnBuilder {
    kind: IdKind,
    counts: Vec<u32>,
    lows: Vec<u16>,
    last: Option<u32>,
}

impl ColumnBuilder {
    fn new(kind: IdKind, capacity: usize) -> ColumnBuilder {
        ColumnBuilder {
            kind,
            counts: vec![0u32; (1 << 16) + 1],
            lows: Vec::with_capacity(capacity),
            last: None,
        }
    }

    fn shift(&self) -> u32 {
        bits(self.kind).saturating_sub(16)
    }

    /// Adds the next fingerprint; it must be larger than the last and within the kind's bits.
    fn push(&mut self, v: u32) -> Result<(), EdmError> {
        let max = u32::MAX >> (32 - bits(self.kind));
        if v > max || self.last.is_some_and(|l| l >= v) {
            return Err(EdmError(format!(
                "{} column is not sorted or out of range",
                self.kind.as_str()
            )));
        }
        self.last = Some(v);
        let shift = self.shift();
        if let Some(c) = self.counts.get_mut((v >> shift) as usize + 1) {
            *c += 1;
        }
        self.lows.push((v & ((1u32 << shift) - 1)) as u16);
        Ok(())
    }

    fn finish(mut self) -> Column {
        for i in 1..self.counts.len() {
            self.counts[i] += self.counts[i - 1];
        }
        Column {
            bits: bits(self.kind),
            index: self.counts,
            lows: self.lows,
        }
    }
}

impl Column {
    fn len(&self) -> usize {
        self.lows.len()
    }

    /// The fingerprints, in order.
    fn values(&self) -> impl Iterator<Item = u32> + '_ {
        let shift = self.bits.saturating_sub(16);
        self.index.windows(2).enumerate().flat_map(move |(b, w)| {
            let bucket = self.lows.get(w[0] as usize..w[1] as usize).unwrap_or(&[]);
            bucket
                .iter()
                .map(move |&low| ((b as u32) << shift) | u32::from(low))
        })
    }

    /// The bucket of `v`: a range of `lows`.
    fn bucket(&self, v: u32) -> (u32, u32) {
        let b = (v >> self.bits.saturating_sub(16)) as usize;
        match (self.index.get(b), self.index.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0, 0),
        }
    }

    /// `v`'s low part, as kept in its bucket.
    fn low(&self, v: u32) -> u16 {
        (v & ((1u32 << self.bits.saturating_sub(16)) - 1)) as u16
    }

    /// Whether `v`, whose bucket is `(lo, hi)`, is in the column.
    fn holds(&self, v: u32, (lo, hi): (u32, u32)) -> bool {
        self.lows
            .get(lo as usize..hi as usize)
            .is_some_and(|b| b.binary_search(&self.low(v)).is_ok())
    }

    fn contains(&self, v: u32) -> bool {
        self.holds(v, self.bucket(v))
    }

    /// Reads the first and last entry of a bucket (see [`Matcher::resolve`]).
    fn touch(&self, (lo, hi): (u32, u32)) -> u16 {
        let first = self.lows.get(lo as usize).copied().unwrap_or(0);
        let last = self
            .lows
            .get((hi as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        first ^ last
    }
}

/// One identifier to look up: its kind and fingerprint, and the answer once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub kind: IdKind,
    pub fingerprint: u32,
    /// Whether it is in the set (valid once `resolved`).
    pub hit: bool,
    /// Already answered (a spreadsheet's shared string, looked up once for the workbook).
    pub resolved: bool,
    /// Its bucket in the column, once [`Matcher::resolve`] has read the index.
    bucket: (u32, u32),
}

impl Probe {
    /// A fingerprint to look up.
    pub fn new(kind: IdKind, fingerprint: u32) -> Probe {
        Probe {
            kind,
            fingerprint,
            hit: false,
            resolved: false,
            bucket: (0, 0),
        }
    }

    /// An identifier already looked up.
    pub fn answered(kind: IdKind, hit: bool) -> Probe {
        Probe {
            kind,
            fingerprint: 0,
            hit,
            resolved: true,
            bucket: (0, 0),
        }
    }
}

/// The fingerprint set agents match against.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EdmSet {
    /// The deployment secret fingerprints are keyed with.
    key: Vec<u8>,
    /// Columns in [`IdKind::ALL`] order.
    columns: Vec<Column>,
    /// Customers (rows) the set was built from.
    pub customers: u64,
}

impl std::fmt::Debug for EdmSet {
    /// Counts only: a set is millions of fingerprints, and its key is the deployment secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<usize> = self.columns.iter().map(Column::len).collect();
        f.debug_struct("EdmSet")
            .field("customers", &self.customers)
            .field("fingerprints", &lens)
            .finish_non_exhaustive()
    }
}

/// The first bytes of a set's stored form (format 3: flat, streamable).
pub const MAGIC: &[u8; 8] = b"HFEDMSET";
/// Longest deployment secret a set carries.
const MAX_KEY: usize = 1024;

/// Fills `buf` from `r`; a short read names the part that was cut off.
fn read(r: &mut impl std::io::Read, buf: &mut [u8], part: &str) -> Result<(), EdmError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => EdmError(format!("cut off in the {part}")),
        _ => EdmError(format!("reading the {part}: {e}")),
    })
}

/// Why a set could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EDM set: {0}")]
pub struct EdmError(String);

/// Builds a set: add identifiers, then [`EdmBuilder::finish`].
#[derive(Debug)]
pub struct EdmBuilder {
    keyed: Fingerprinter,
    key: Vec<u8>,
    values: [Vec<u32>; 4],
    customers: u64,
}

impl EdmBuilder {
    pub fn new(key: &[u8]) -> EdmBuilder {
        EdmBuilder {
            keyed: Fingerprinter::new(key),
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

    /// Adds a field of a column known to hold `ctx` (a phone column's `555-0100 x23` is
    /// fingerprinted as the agent reads it there): the kind it is, if it is one.
    pub fn add_in(&mut self, ctx: crate::ident::Context, raw: &[u8]) -> Option<IdKind> {
        self.add_in_country(ctx, raw, None)
    }

    /// Like [`EdmBuilder::add_in`], for a field of a row whose country column names
    /// `country`: its national phone numbers are fingerprinted in E.164 with that country,
    /// as agents look them up in a row of the same country.
    pub fn add_in_country(
        &mut self,
        ctx: crate::ident::Context,
        raw: &[u8],
        country: Option<crate::country::Dialling>,
    ) -> Option<IdKind> {
        let mut phone = [0u8; 40];
        let (kind, mut n) = crate::ident::identify_in(raw.trim_ascii(), ctx, &mut phone)?;
        if kind == IdKind::Phone {
            if let Some(d) = country {
                let mut e164 = [0u8; 40];
                if let Some(m) = crate::ident::phone_in_country_into(raw, d, &mut e164) {
                    phone = e164;
                    n = m;
                }
            }
            let normal = phone.get(..n)?;
            self.values[kind as usize].push(self.keyed.fingerprint(kind, normal));
            Some(kind)
        } else {
            self.add(kind, raw).then_some(kind)
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
            .map(|(&k, mut v)| {
                v.sort_unstable();
                v.dedup();
                let mut c = ColumnBuilder::new(k, v.len());
                for x in v {
                    // Sorted, distinct and cut to the kind's bits: cannot fail.
                    let _ = c.push(x);
                }
                c.finish()
            })
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
    keyed: Fingerprinter,
}

impl EdmSet {
    /// Distinct fingerprints per kind.
    pub fn len(&self, kind: IdKind) -> usize {
        self.columns.get(kind as usize).map_or(0, Column::len)
    }

    /// The stored form: [`MAGIC`], the scheme, the key, the customer count and each
    /// column's length, then every column's fingerprints in increasing order (big-endian
    /// `u32`). A flat layout, so [`EdmSet::from_reader`] reads it as a stream.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EdmError> {
        let key_len = u16::try_from(self.key.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_KEY)
            .ok_or_else(|| EdmError("the deployment secret is too long".into()))?;
        let entries: usize = self.columns.iter().map(Column::len).sum();
        let mut out = Vec::with_capacity(64 + self.key.len() + 4 * entries);
        out.extend_from_slice(MAGIC);
        out.push(SCHEME);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.customers.to_be_bytes());
        for c in &self.columns {
            out.extend_from_slice(&(c.len() as u64).to_be_bytes());
        }
        for c in &self.columns {
            for v in c.values() {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Reads the stored form, checking every column is sorted and within its bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<EdmSet, EdmError> {
        let mut r = bytes;
        let set = EdmSet::from_reader(&mut r)?;
        if !r.is_empty() {
            return Err(EdmError(format!("{} bytes after the last column", r.len())));
        }
        Ok(set)
    }

    /// Reads the stored form from a stream, building the columns as it goes: what it holds
    /// at the end is the set itself (two bytes a fingerprint) plus a 64 KiB buffer. It reads
    /// exactly the set's bytes, in blocks; wrap a file in a `BufReader`.
    pub fn from_reader(r: &mut impl std::io::Read) -> Result<EdmSet, EdmError> {
        let mut magic = [0u8; MAGIC.len()];
        read(r, &mut magic, "header")?;
        if magic != *MAGIC {
            return Err(EdmError(
                "not a customer set of this version (an older set is imported again with `holdfast-collector edm import`)".into(),
            ));
        }
        let mut scheme = [0u8; 1];
        read(r, &mut scheme, "header")?;
        if scheme[0] != SCHEME {
            return Err(EdmError(format!(
                "made with fingerprint scheme {} but this version uses {SCHEME}: import the customer list again (`holdfast-collector edm import`)",
                scheme[0]
            )));
        }
        let mut len = [0u8; 2];
        read(r, &mut len, "header")?;
        let key_len = usize::from(u16::from_be_bytes(len));
        if key_len > MAX_KEY {
            return Err(EdmError(format!("a {key_len}-byte key is too long")));
        }
        let mut key = vec![0u8; key_len];
        read(r, &mut key, "key")?;
        let mut word = [0u8; 8];
        read(r, &mut word, "header")?;
        let customers = u64::from_be_bytes(word);
        let mut lens = [0u64; 4];
        for l in &mut lens {
            read(r, &mut word, "header")?;
            *l = u64::from_be_bytes(word);
        }
        let total = lens.iter().fold(0u64, |a, &l| a.saturating_add(l));
        if total > MAX_ENTRIES as u64 {
            return Err(EdmError(format!("{total} entries exceed the limit")));
        }
        let mut columns = Vec::with_capacity(IdKind::ALL.len());
        let mut block = vec![0u8; 64 * 1024];
        for (&kind, &n) in IdKind::ALL.iter().zip(lens.iter()) {
            let mut c = ColumnBuilder::new(kind, n as usize);
            let mut left = n as usize * 4;
            while left > 0 {
                let take = left.min(block.len());
                let buf = block.get_mut(..take).unwrap_or_default();
                read(r, buf, kind.as_str())?;
                for b in buf.chunks_exact(4) {
                    c.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
                }
                left -= take;
            }
            columns.push(c.finish());
        }
        Ok(EdmSet {
            key,
            columns,
            customers,
        })
    }

    /// A matcher for this set.
    pub fn matcher(self) -> Matcher {
        let keyed = Fingerprinter::new(&self.key);
        Matcher { set: self, keyed }
    }
}

impl Matcher {
    /// True when the (validated, not yet normalised) identifier's fingerprint is in the set.
    pub fn matches(&self, kind: IdKind, raw: &[u8]) -> bool {
        self.fingerprint(kind, raw)
            .is_some_and(|fp| self.column(kind).contains(fp))
    }

    fn column(&self, kind: IdKind) -> &Column {
        static EMPTY: Column = Column {
            bits: STRONG_BITS,
            index: Vec::new(),
            lows: Vec::new(),
        };
        self.set.columns.get(kind as usize).unwrap_or(&EMPTY)
    }

    /// The fingerprint of an identifier already in its normal form ([`normalise`]); `None`
    /// when the set holds no identifier of that kind.
    pub fn fingerprint_normal(&self, kind: IdKind, normal: &[u8]) -> Option<u32> {
        (self.column(kind).len() > 0).then(|| self.keyed.fingerprint(kind, normal))
    }

    /// The fingerprint of an identifier that passed its kind's validator, normalised on the
    /// way; `None` when the set holds no identifier of that kind or it does not normalise.
    /// (An email is not validated again: the caller did, and a string that is not an address
    /// has the same small chance of a false match as an address that is not a customer.)
    ///
    /// The hot path of every scan with a set: normalises into a stack buffer, no allocation.
    pub fn fingerprint(&self, kind: IdKind, raw: &[u8]) -> Option<u32> {
        if self.column(kind).len() == 0 {
            return None;
        }
        let t = raw.trim_ascii();
        let k = &self.keyed;
        Some(match kind {
            IdKind::Phone => {
                let mut p = [0u8; 40];
                let n = crate::ident::phone_e164_into(t, &mut p)?;
                k.fingerprint(kind, p.get(..n)?)
            }
            IdKind::Email => k.fingerprint_of(kind, t.iter().map(u8::to_ascii_lowercase)),
            IdKind::CnId => k.fingerprint_of(kind, t.iter().map(u8::to_ascii_uppercase)),
            IdKind::Card => k.fingerprint_of(kind, t.iter().copied().filter(u8::is_ascii_digit)),
        })
    }

    /// Answers every unresolved probe, in three passes over them: read each one's bucket
    /// bounds in the index, then touch each bucket, then search it. The loads of one pass do
    /// not depend on one another, so the processor has many cache misses in flight at once
    /// instead of waiting for each in turn: a scan streams far more data through the cache
    /// than the set, so the set is seldom all cached.
    pub fn resolve(&self, probes: &mut [Probe]) {
        for p in probes.iter_mut().filter(|p| !p.resolved) {
            p.bucket = self.column(p.kind).bucket(p.fingerprint);
        }
        let mut warm = 0u16;
        for p in probes.iter().filter(|p| !p.resolved) {
            warm ^= self.column(p.kind).touch(p.bucket);
        }
        std::hint::black_box(warm);
        for p in probes.iter_mut().filter(|p| !p.resolved) {
            p.hit = self.column(p.kind).holds(p.fingerprint, p.bucket);
            p.resolved = true;
        }
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

    /// The stored form reads back as the same set, from bytes or a stream, and every way it
    /// can be wrong is named.
    #[test]
    fn the_stored_form_round_trips_and_its_faults_are_named() {
        let m = set_of(b"k", &["a@x.cn", "b@x.cn", "c@x.cn"], &["13800138000"]);
        let bytes = m.set().to_bytes().unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let back = EdmSet::from_reader(&mut &bytes[..]).unwrap();
        assert_eq!(&back, m.set());
        assert_eq!((back.len(IdKind::Email), back.len(IdKind::Phone)), (3, 1));
        let err = |b: &[u8]| EdmSet::from_bytes(b).unwrap_err().to_string();
        // The email column starts after magic, scheme, key length, key, customers, lengths.
        let emails = 8 + 1 + 2 + 1 + 8 + 32;
        let mut unsorted = bytes.clone();
        unsorted.copy_within(emails..emails + 4, emails + 4);
        assert_eq!(
            err(&unsorted),
            "EDM set: email column is not sorted or out of range"
        );
        let mut phone_too_wide = bytes.clone();
        let phones = emails + 12;
        phone_too_wide[phones] = 0xff;
        assert_eq!(
            err(&phone_too_wide),
            "EDM set: phone column is not sorted or out of range"
        );
        assert_eq!(
            err(&bytes[..bytes.len() - 1]),
            "EDM set: cut off in the phone"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(err(&longer), "EDM set: 1 bytes after the last column");
        let mut scheme_one = bytes.clone();
        scheme_one[8] = 1;
        assert!(err(&scheme_one).contains("fingerprint scheme 1"));
        // A set in the MessagePack form of earlier versions.
        assert!(
            err(b"\x84\xa6scheme\x02").starts_with("EDM set: not a customer set of this version")
        );
        let mut huge = bytes.clone();
        huge[emails - 32..emails - 24].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(err(&huge).ends_with("entries exceed the limit"));
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
