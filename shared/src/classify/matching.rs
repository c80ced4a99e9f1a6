//! Rows that hold the company's real customers: a table's identifiers queued row by row,
//! looked up in the customer set a batch at a time, and tallied per row.
//!
//! Batching is what keeps a scan with a million-customer set near the speed of one without:
//! the lookups of a batch are independent, so their cache misses overlap (see
//! [`Matcher::resolve`]), and a row's phone numbers are fingerprinted only when none of its
//! emails, ID or card numbers matched, since such a row counts as a customer either way.

use crate::edm::{Matcher, Probe};
use crate::ident::IdKind;
use std::sync::Arc;

/// Identifiers waiting before a batch is looked up (at the end of a row).
const BATCH: usize = 256;
/// Identifiers waiting before a batch is looked up even in the middle of a row (one line
/// of a million addresses must not grow the queue without bound).
const MAX_WAITING: usize = 8 * BATCH;
/// Longest phone normal form kept (`+886` and 15 digits fit).
const PHONE_MAX: usize = 24;

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

/// A phone number waiting: its normal form, or its answer when already known.
#[derive(Debug, Clone, Copy)]
enum Phone {
    Normal([u8; PHONE_MAX], u8),
    Known(bool),
}

/// What one row's resolved lookups showed so far.
#[derive(Debug, Default)]
struct Tally {
    row: Option<u64>,
    strong: bool,
    weak: bool,
    phone_lookups: u64,
}

/// What the rows showed, for [`super::record::Records::finish`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    /// Rows where an email, ID or card number matched.
    pub strong_rows: u64,
    /// Rows without such a match where a phone number matched.
    pub weak_rows: u64,
    /// Phone lookups made in rows without a strong match: the base for chance matches.
    pub weak_lookups: u64,
}

/// The queue and the tally.
#[derive(Debug)]
pub(super) struct RowMatches {
    matcher: Arc<Matcher>,
    row: u64,
    strong: Vec<Probe>,
    strong_rows: Vec<u64>,
    phones: Vec<(u64, Phone)>,
    /// Phone probes of a batch, and their rows (kept to reuse their room).
    scratch: Vec<Probe>,
    scratch_rows: Vec<u64>,
    tally: Tally,
    counts: Counts,
}

impl RowMatches {
    pub fn new(matcher: Arc<Matcher>) -> RowMatches {
        RowMatches {
            matcher,
            row: 0,
            strong: Vec::new(),
            strong_rows: Vec::new(),
            phones: Vec::new(),
            scratch: Vec::new(),
            scratch_rows: Vec::new(),
            tally: Tally::default(),
            counts: Counts::default(),
        }
    }

    pub fn matcher(&self) -> &Arc<Matcher> {
        &self.matcher
    }

    /// One identifier of the current row: `f` as written (validated for `kind`).
    pub fn add(&mut self, kind: IdKind, f: &[u8], lookup: Lookup<'_>) {
        let m = &self.matcher;
        if kind == IdKind::Phone {
            let phone = match lookup {
                Lookup::Known(hit) => Some(Phone::Known(hit)),
                Lookup::Normal(n) => normal_phone(n),
                Lookup::Field => {
                    let mut p = [0u8; 40];
                    crate::ident::phone_e164_into(f, &mut p).and_then(|n| normal_phone(p.get(..n)?))
                }
            };
            // A set without phones answers nothing; an unparsable number cannot match.
            if let Some(p) = phone.filter(|_| m.set().len(IdKind::Phone) > 0) {
                self.phones.push((self.row, p));
            }
        } else {
            let probe = match lookup {
                Lookup::Known(hit) => Some(Probe::answered(kind, hit)),
                Lookup::Field => m.fingerprint(kind, f).map(|fp| Probe::new(kind, fp)),
                Lookup::Normal(n) => m.fingerprint_normal(kind, n).map(|fp| Probe::new(kind, fp)),
            };
            if let Some(p) = probe {
                self.strong.push(p);
                self.strong_rows.push(self.row);
            }
        }
        if self.waiting() >= MAX_WAITING {
            self.flush();
        }
    }

    fn waiting(&self) -> usize {
        self.strong.len() + self.phones.len()
    }

    /// The current row is complete.
    pub fn end_row(&mut self) {
        self.row += 1;
        if self.waiting() >= BATCH {
            self.flush();
        }
    }

    /// Forgets the current row (it was a header) and starts the next.
    pub fn drop_row(&mut self) {
        let row = self.row;
        while self.strong_rows.last() == Some(&row) {
            self.strong_rows.pop();
            self.strong.pop();
        }
        while self.phones.last().is_some_and(|(r, _)| *r == row) {
            self.phones.pop();
        }
        if self.tally.row == Some(row) {
            self.tally = Tally::default();
        }
        self.row += 1;
    }

    /// Looks up everything waiting and tallies it.
    pub fn finish(mut self) -> Counts {
        self.flush();
        self.close_tally();
        self.counts
    }

    fn flush(&mut self) {
        let m = Arc::clone(&self.matcher);
        m.resolve(&mut self.strong);
        // Phones count only in rows without a strong match: look up the others alone.
        // Rows in order: the row still being tallied from the last batch, then this batch's.
        let mut hit_rows: Vec<u64> = self
            .tally
            .row
            .filter(|_| self.tally.strong)
            .into_iter()
            .collect();
        hit_rows.extend(
            self.strong
                .iter()
                .zip(&self.strong_rows)
                .filter(|(p, _)| p.hit)
                .map(|(_, &r)| r),
        );
        self.scratch.clear();
        self.scratch_rows.clear();
        for &(row, phone) in &self.phones {
            if hit_rows.binary_search(&row).is_ok() {
                continue;
            }
            let probe = match phone {
                Phone::Known(hit) => Probe::answered(IdKind::Phone, hit),
                Phone::Normal(buf, n) => {
                    let Some(fp) = buf
                        .get(..usize::from(n))
                        .and_then(|n| m.fingerprint_normal(IdKind::Phone, n))
                    else {
                        continue;
                    };
                    Probe::new(IdKind::Phone, fp)
                }
            };
            self.scratch.push(probe);
            self.scratch_rows.push(row);
        }
        m.resolve(&mut self.scratch);
        // Tally both lists in row order (each is already in row order).
        let strong = std::mem::take(&mut self.strong);
        let strong_rows = std::mem::take(&mut self.strong_rows);
        let scratch = std::mem::take(&mut self.scratch);
        let scratch_rows = std::mem::take(&mut self.scratch_rows);
        let (mut i, mut j) = (0, 0);
        while i < strong.len() || j < scratch.len() {
            let take_strong = j == scratch.len()
                || (i < strong.len() && strong_rows.get(i) <= scratch_rows.get(j));
            let (p, row) = if take_strong {
                i += 1;
                (strong[i - 1], strong_rows[i - 1])
            } else {
                j += 1;
                (scratch[j - 1], scratch_rows[j - 1])
            };
            self.count(row, p);
        }
        (self.strong, self.strong_rows) = (strong, strong_rows);
        (self.scratch, self.scratch_rows) = (scratch, scratch_rows);
        self.strong.clear();
        self.strong_rows.clear();
        self.phones.clear();
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

fn normal_phone(n: &[u8]) -> Option<Phone> {
    let mut buf = [0u8; PHONE_MAX];
    buf.get_mut(..n.len())?.copy_from_slice(n);
    Some(Phone::Normal(buf, u8::try_from(n.len()).ok()?))
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
}
