//! Rows that hold the company's real customers: a table's identifiers queued row by row
//! ([`RowMatches`]), handed over a batch at a time to a [`Tally`] that looks them up in the
//! customer set and counts rows.
//!
//! Batching is what keeps a scan with a million-customer set near the speed of one without:
//! the lookups of a batch are independent, so their cache misses overlap (see
//! [`Matcher::resolve`]), and a row's phone numbers are fingerprinted only when none of its
//! emails, ID or card numbers matched, since such a row counts as a customer either way.
//! The tally is a value the queue hands batches to, so the looking up can run where the
//! caller likes: inline ([`Tallier`]), or on another thread (the agent does for large files).
//! In a file with a country column, a row's national phone numbers are looked up in E.164
//! with the row's country, whichever of the two columns comes first.

use crate::country::{dialling, Dialling};
use crate::edm::{Matcher, Probe};
use crate::ident::{phone_in_country_into, IdKind};
use std::sync::Arc;

/// Identifiers waiting before a batch is handed over (at the end of a row).
const BATCH: usize = 256;
/// Identifiers waiting before a batch is handed over even in the middle of a row (one line
/// of a million addresses must not grow the queue without bound), or twice the tally's batch
/// size if that is more.
const MAX_WAITING: usize = 8 * BATCH;
/// Bytes of identifiers in one batch at most: a batch is handed over when it holds more, so
/// that the batches in flight stay small whatever the fields' lengths.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Longest identifier kept for a lookup: a longer field is no identifier's normal form.
const MAX_BYTES: usize = 512;

/// What is known of a field's identifier before its set lookup.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lookup<'a> {
    /// Fingerprint the field as written (a validated identifier, normalised on the way).
    Field,
    /// Fingerprint these bytes: the identifier's normal form, already made.
    Normal(&'a [u8]),
    /// Already looked up (a spreadsheet's shared string, once for the workbook).
    Known(bool),
}

/// How a queued identifier is to be looked up.
#[derive(Debug, Clone, Copy)]
enum What {
    /// `bytes[at..at + len]` as written.
    Field(u32, u16),
    /// `bytes[at..at + len]` in its normal form.
    Normal(u32, u16),
    /// Already answered.
    Known(bool),
}

/// A queued identifier and its row.
#[derive(Debug, Clone, Copy)]
struct Item {
    row: u64,
    kind: IdKind,
    what: What,
}

/// Identifiers of a run of rows, in row order, with their bytes: what a [`Tally`] takes.
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    /// A row whose tally is to be forgotten before these items are taken: a header row whose
    /// own identifiers went out in an earlier batch.
    forget: Option<u64>,
}

impl Batch {
    fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
        self.forget = None;
    }

    fn text(&self, at: u32, len: u16) -> &[u8] {
        let at = at as usize;
        self.bytes
            .get(at..at + usize::from(len))
            .unwrap_or_default()
    }
}

/// What the rows showed, for [`super::record::Records::finish`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows where an email, ID or card number matched.
    pub strong_rows: u64,
    /// Rows without such a match where a phone number matched.
    pub weak_rows: u64,
    /// Phone lookups made in rows without a strong match: the base for chance matches.
    pub weak_lookups: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.strong_rows += o.strong_rows;
        self.weak_rows += o.weak_rows;
        self.weak_lookups += o.weak_lookups;
    }
}

/// Takes batches in order and counts the rows holding real customers.
pub trait Tally: Send {
    /// Takes the next batch; gives back an empty batch to fill (its room reused).
    fn take(&mut self, batch: Batch) -> Batch;
    /// The counts, once every batch was taken.
    fn counts(self: Box<Self>) -> Counts;
    /// Identifiers worth handing over at once (at a row's end): a tally on another thread
    /// wants larger batches, so that waking it up is rare.
    fn batch_size(&self) -> usize {
        BATCH
    }
}

/// What one row's resolved lookups showed so far.
#[derive(Debug, Default)]
struct RowTally {
    row: Option<u64>,
    strong: bool,
    weak: bool,
    phone_lookups: u64,
}

/// The tally that looks batches up where it is called.
#[derive(Debug)]
pub struct Tallier {
    matcher: Arc<Matcher>,
    /// Probes of a batch, and their rows (kept to reuse their room).
    strong: Vec<Probe>,
    strong_rows: Vec<u64>,
    phones: Vec<Probe>,
    phone_rows: Vec<u64>,
    hit_rows: Vec<u64>,
    tally: RowTally,
    counts: Counts,
}

impl Tallier {
    pub fn new(matcher: Arc<Matcher>) -> Tallier {
        Tallier {
            matcher,
            strong: Vec::new(),
            strong_rows: Vec::new(),
            phones: Vec::new(),
            phone_rows: Vec::new(),
            hit_rows: Vec::new(),
            tally: RowTally::default(),
            counts: Counts::default(),
        }
    }

    /// The fingerprint probe of a queued identifier; `None` when it cannot match.
    fn probe(m: &Matcher, b: &Batch, item: &Item) -> Option<Probe> {
        let fp = match (item.what, item.kind) {
            (What::Known(hit), kind) => return Some(Probe::answered(kind, hit)),
            (What::Normal(at, len), kind) => m.fingerprint_normal(kind, b.text(at, len))?,
            (What::Field(at, len), kind) => m.fingerprint(kind, b.text(at, len))?,
        };
        Some(Probe::new(item.kind, fp))
    }

    fn run(&mut self, b: &Batch) {
        if let Some(row) = b.forget {
            if self.tally.row == Some(row) {
                self.tally = RowTally::default();
            }
        }
        let m = Arc::clone(&self.matcher);
        self.strong.clear();
        self.strong_rows.clear();
        for item in b.items.iter().filter(|i| i.kind != IdKind::Phone) {
            if let Some(p) = Self::probe(&m, b, item) {
                self.strong.push(p);
                self.strong_rows.push(item.row);
            }
        }
        m.resolve(&mut self.strong);
        // Phones count only in rows without a strong match: look up the others alone.
        // Rows in order: the row still being tallied from the last batch, then this batch's.
        self.hit_rows.clear();
        self.hit_rows
            .extend(self.tally.row.filter(|_| self.tally.strong));
        self.hit_rows.extend(
            self.strong
                .iter()
                .zip(&self.strong_rows)
                .filter(|(p, _)| p.hit)
                .map(|(_, &r)| r),
        );
        self.phones.clear();
        self.phone_rows.clear();
        for item in b.items.iter().filter(|i| i.kind == IdKind::Phone) {
            if self.hit_rows.binary_search(&item.row).is_ok() {
                continue;
            }
            if let Some(p) = Self::probe(&m, b, item) {
                self.phones.push(p);
                self.phone_rows.push(item.row);
            }
        }
        m.resolve(&mut self.phones);
        // Tally both lists in row order (each is already in row order).
        let (mut i, mut j) = (0, 0);
        while i < self.strong.len() || j < self.phones.len() {
            let take_strong = j == self.phones.len()
                || (i < self.strong.len() && self.strong_rows.get(i) <= self.phone_rows.get(j));
            let (p, row) = if take_strong {
                i += 1;
                (self.strong[i - 1], self.strong_rows[i - 1])
            } else {
                j += 1;
                (self.phones[j - 1], self.phone_rows[j - 1])
            };
            self.count(row, p);
        }
    }

    fn count(&mut self, row: u64, p: Probe) {
        if self.tally.row != Some(row) {
            self.close_tally();
            self.tally.row = Some(row);
        }
        if p.kind == IdKind::Phone {
            self.tally.phone_lookups += 1;
            self.tally.weak |= p.hit;
        } else {
            self.tally.strong |= p.hit;
        }
    }

    fn close_tally(&mut self) {
        let t = std::mem::take(&mut self.tally);
        if t.row.is_none() {
            return;
        }
        if t.strong {
            self.counts.strong_rows += 1;
        } else {
            self.counts.weak_lookups += t.phone_lookups;
            self.counts.weak_rows += u64::from(t.weak);
        }
    }
}

impl Tally for Tallier {
    fn take(&mut self, mut batch: Batch) -> Batch {
        self.run(&batch);
        batch.clear();
        batch
    }

    fn counts(mut self: Box<Self>) -> Counts {
        self.close_tally();
        self.counts
    }
}

/// The queue of one file's identifiers, row by row, and the tally it feeds.
pub(super) struct RowMatches {
    matcher: Arc<Matcher>,
    /// Which kinds the set holds (a kind it lacks is never queued).
    kinds: [bool; 4],
    row: u64,
    batch: Batch,
    /// The row of the last item handed over, if any.
    sent: Option<u64>,
    /// Identifiers handed over at a row's end, and even mid-row (the tally's batch size).
    batch_size: usize,
    max_waiting: usize,
    tally: Box<dyn Tally>,
    /// The file has a country column: phones wait for their row's country.
    countries: bool,
    /// The current row's country, once its country column was read.
    country: Option<Dialling>,
    /// Phones of the current row read before its country: (item index, the field as written
    /// at `bytes[at..at + len]`).
    pending: Vec<(usize, u32, u16)>,
    /// Counts of the rest of the file, read by a continuation ([`RowMatches::absorb`]).
    absorbed: Counts,
}

impl std::fmt::Debug for RowMatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowMatches")
            .field("row", &self.row)
            .field("waiting", &self.batch.items.len())
            .finish_non_exhaustive()
    }
}

impl RowMatches {
    /// Looks up inline.
    pub fn new(matcher: Arc<Matcher>) -> RowMatches {
        let tally = Box::new(Tallier::new(Arc::clone(&matcher)));
        RowMatches::with_tally(matcher, tally)
    }

    /// Hands batches to `tally` (made for the same `matcher`).
    pub fn with_tally(matcher: Arc<Matcher>, tally: Box<dyn Tally>) -> RowMatches {
        let set = matcher.set();
        let kinds = IdKind::ALL.map(|k| set.len(k) > 0);
        let batch_size = tally.batch_size().clamp(1, 64 * BATCH);
        RowMatches {
            matcher,
            kinds,
            row: 0,
            batch: Batch::default(),
            sent: None,
            batch_size,
            max_waiting: MAX_WAITING.max(2 * batch_size),
            tally,
            countries: false,
            country: None,
            pending: Vec::new(),
            absorbed: Counts::default(),
        }
    }

    /// Matches for the rest of the same file from a row start on, looked up by `tally` (made
    /// for the same matcher): the same set and country handling, nothing counted yet.
    pub fn continuation(&self, tally: Box<dyn Tally>) -> RowMatches {
        let mut rest = RowMatches::with_tally(Arc::clone(&self.matcher), tally);
        rest.countries = self.countries;
        rest
    }

    /// Takes over the counts of a continuation that read the rest of the file.
    pub fn absorb(&mut self, rest: RowMatches) {
        self.absorbed += rest.finish();
    }

    /// The file has a country column: from now on a row's national phone numbers are made
    /// E.164 with the row's country (see [`RowMatches::country`]).
    pub fn expect_countries(&mut self) {
        self.countries = true;
    }

    /// A field of the current row's country column: its national phones, read before or
    /// after, are looked up in E.164 with its calling code (`01 42 68 53 00` in a row of
    /// `France` as `+33142685300`). A field naming no known country changes nothing.
    pub fn country(&mut self, field: &[u8]) {
        self.countries = true;
        if let Some(d) = dialling(field) {
            self.country = Some(d);
            let pending = std::mem::take(&mut self.pending);
            let mut raw = [0u8; MAX_BYTES];
            for &(i, at, len) in &pending {
                let text = self.batch.text(at, len);
                let n = text.len().min(MAX_BYTES);
                raw[..n].copy_from_slice(&text[..n]);
                self.in_country(i, &raw[..n]);
            }
            // The list's room is kept for the next rows.
            self.pending = pending;
            self.pending.clear();
        }
    }

    /// Looks item `i` (a phone written as `raw`) up in E.164 with the row's country, when
    /// that makes it whole.
    fn in_country(&mut self, i: usize, raw: &[u8]) {
        let Some(d) = self.country else { return };
        let mut out = [0u8; 40];
        let Some(n) = phone_in_country_into(raw, d, &mut out) else {
            return;
        };
        let Ok(at) = u32::try_from(self.batch.bytes.len()) else {
            return;
        };
        self.batch.bytes.extend_from_slice(&out[..n]);
        if let Some(item) = self.batch.items.get_mut(i) {
            item.what = What::Normal(at, n as u16);
        }
    }

    pub fn matcher(&self) -> &Arc<Matcher> {
        &self.matcher
    }

    /// One identifier of the current row: `f` as written (validated for `kind`).
    pub fn add(&mut self, kind: IdKind, f: &[u8], lookup: Lookup<'_>) {
        // A set without this kind answers nothing.
        if !self.kinds[kind as usize] {
            return;
        }
        let keep = |b: &mut Batch, bytes: &[u8]| -> Option<(u32, u16)> {
            if bytes.len() > MAX_BYTES {
                return None;
            }
            let at = u32::try_from(b.bytes.len()).ok()?;
            b.bytes.extend_from_slice(bytes);
            Some((at, bytes.len() as u16))
        };
        let what = match lookup {
            Lookup::Known(hit) => What::Known(hit),
            Lookup::Normal(n) => match keep(&mut self.batch, n) {
                Some((at, len)) => What::Normal(at, len),
                None => return,
            },
            Lookup::Field => match keep(&mut self.batch, f) {
                Some((at, len)) => What::Field(at, len),
                None => return,
            },
        };
        self.batch.items.push(Item {
            row: self.row,
            kind,
            what,
        });
        if kind == IdKind::Phone && self.countries && f.len() <= MAX_BYTES {
            let i = self.batch.items.len() - 1;
            if self.country.is_some() {
                self.in_country(i, f);
            } else if let Ok(at) = u32::try_from(self.batch.bytes.len()) {
                self.batch.bytes.extend_from_slice(f);
                self.pending.push((i, at, f.len() as u16));
            }
        }
        if self.batch.items.len() >= self.max_waiting || self.batch.bytes.len() >= MAX_BATCH_BYTES {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        // Phones handed over before their row's country was read stay as written.
        self.pending.clear();
        if let Some(last) = self.batch.items.last() {
            self.sent = Some(last.row);
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch = self.tally.take(batch);
    }

    /// The current row is complete.
    pub fn end_row(&mut self) {
        self.country = None;
        self.pending.clear();
        self.row += 1;
        if self.batch.items.len() >= self.batch_size {
            self.hand_over();
        }
    }

    /// Forgets the current row (it was a header) and starts the next.
    pub fn drop_row(&mut self) {
        self.country = None;
        self.pending.clear();
        let row = self.row;
        while self.batch.items.last().is_some_and(|i| i.row == row) {
            self.batch.items.pop();
        }
        if self.sent == Some(row) {
            self.batch.forget = Some(row);
        }
        self.row += 1;
    }

    /// Looks up everything waiting and returns the counts.
    pub fn finish(mut self) -> Counts {
        if !self.batch.items.is_empty() || self.batch.forget.is_some() {
            self.hand_over();
        }
        let mut counts = self.tally.counts();
        counts += self.absorbed;
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edm::EdmBuilder;

    fn matcher() -> Arc<Matcher> {
        let mut b = EdmBuilder::new(b"k");
        for i in 0..100 {
            b.add(IdKind::Email, format!("c{i}@example.com").as_bytes());
            b.add(IdKind::Phone, format!("139{i:08}").as_bytes());
        }
        Arc::new(b.finish().matcher())
    }

    /// Feeds rows of (kind, text) and returns the counts.
    fn check(rows: &[&[(IdKind, &str)]], header: bool) -> Counts {
        let mut r = RowMatches::new(matcher());
        for (i, row) in rows.iter().enumerate() {
            for (kind, text) in row.iter() {
                r.add(*kind, text.as_bytes(), Lookup::Field);
            }
            if header && i == 0 {
                r.drop_row();
            } else {
                r.end_row();
            }
        }
        r.finish()
    }

    #[test]
    fn rows_are_tallied_by_their_strongest_match() {
        use IdKind::{Email, Phone};
        let e = |s| (Email, s);
        let p = |s| (Phone, s);
        // Email hit (phone not counted), phone-only hit, a miss with two phones, no ids.
        let counts = check(
            &[
                &[e("c1@example.com"), p("13900000002")],
                &[e("x@example.org"), p("139 0000 0003")],
                &[p("13700000000"), p("13600000000")],
                &[],
            ],
            false,
        );
        assert_eq!(
            counts,
            Counts {
                strong_rows: 1,
                weak_rows: 1,
                weak_lookups: 3
            }
        );
        // A header's own identifiers do not count.
        let counts = check(&[&[e("c1@example.com")], &[e("c2@example.com")]], true);
        assert_eq!(counts.strong_rows, 1);
        // Answers given by a workbook's shared strings are tallied like lookups.
        let mut r = RowMatches::new(matcher());
        r.add(Phone, b"", Lookup::Known(true));
        r.end_row();
        r.add(Email, b"", Lookup::Known(true));
        r.add(Phone, b"", Lookup::Known(true));
        assert_eq!(
            r.finish(),
            Counts {
                strong_rows: 1,
                weak_rows: 1,
                weak_lookups: 1
            }
        );
    }

    #[test]
    fn a_row_spanning_batches_is_counted_once_by_its_strongest_match() {
        // 5,000 phones that are not customers, then one customer email, in a single row.
        let mut row: Vec<(IdKind, String)> = (0..5000)
            .map(|i| (IdKind::Phone, format!("137{i:08}")))
            .collect();
        row.push((IdKind::Email, "c5@example.com".into()));
        let row: Vec<(IdKind, &str)> = row.iter().map(|(k, s)| (*k, s.as_str())).collect();
        let counts = check(&[&row, &[(IdKind::Phone, "13900000009")]], false);
        assert_eq!(
            counts,
            Counts {
                strong_rows: 1,
                weak_rows: 1,
                weak_lookups: 1
            }
        );
        // Many rows: every customer row once, batch boundaries anywhere.
        let rows: Vec<Vec<(IdKind, String)>> = (0..1000)
            .map(|i| vec![(IdKind::Email, format!("c{}@example.com", i % 200))])
            .collect();
        let rows: Vec<Vec<(IdKind, &str)>> = rows
            .iter()
            .map(|r| r.iter().map(|(k, s)| (*k, s.as_str())).collect())
            .collect();
        let refs: Vec<&[(IdKind, &str)]> = rows.iter().map(|r| r.as_slice()).collect();
        assert_eq!(check(&refs, false).strong_rows, 500);
    }

    /// A tally that records the largest batch it was handed.
    struct Widest(Tallier, std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Tally for Widest {
        fn take(&mut self, batch: Batch) -> Batch {
            self.1
                .fetch_max(batch.bytes.len(), std::sync::atomic::Ordering::Relaxed);
            self.0.take(batch)
        }
        fn counts(self: Box<Self>) -> Counts {
            Box::new(self.0).counts()
        }
    }

    #[test]
    fn batches_stay_small_whatever_the_fields_length() {
        let m = matcher();
        let widest = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tally = Box::new(Widest(Tallier::new(Arc::clone(&m)), Arc::clone(&widest)));
        let mut r = RowMatches::with_tally(m, tally);
        // One row of 3,000 long addresses that are not customers, then a customer.
        let long = format!("{}@example.org", "x".repeat(400));
        for _ in 0..3000 {
            r.add(IdKind::Email, long.as_bytes(), Lookup::Field);
        }
        r.add(IdKind::Email, b"c7@example.com", Lookup::Field);
        r.end_row();
        assert_eq!(r.finish().strong_rows, 1);
        let w = widest.load(std::sync::atomic::Ordering::Relaxed);
        assert!(w > 0 && w < MAX_BATCH_BYTES + 1024, "{w}");
    }
}
