//! What a leaver who copied the customer set (and its key) gets by enumerating phone numbers.
//!
//! `cargo bench -p holdfast-shared --bench enumerate [-- TRIES]` builds a 1,000,000-customer
//! set of Chinese mobiles spread over every prefix, then tries TRIES numbers (default 20
//! million) the way an attacker would: normalise, fingerprint, look up. It prints the cost
//! per try on one core, the false-candidate rate measured, and what a full enumeration of
//! the 7 × 10⁹ mobile numbers would take and return (see the threat model in
//! ARCHITECTURE.md).

use holdfast_shared::edm::{EdmBuilder, Probe};
use holdfast_shared::ident::IdKind;
use std::time::Instant;

/// Valid mainland mobiles: 13x–19x, 11 digits (about 7 × 10⁹).
const MOBILES: f64 = 7e9;

/// A mobile number from an index (`1` then a second digit 3–9, then nine more digits).
fn mobile(i: u64) -> String {
    format!("1{}{:09}", 3 + (i / 1_000_000_000) % 7, i % 1_000_000_000)
}

fn main() {
    let tries: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let customers = 1_000_000u64;
    // Customers spread by a multiplicative step over the whole space; tries walk another
    // stretch, so every hit among them is a false candidate.
    let step = 6_999_999_937u64; // prime, so the customers are distinct
    let mut b = EdmBuilder::new(b"deployment secret of the enumeration benchmark");
    for c in 0..customers {
        b.add(IdKind::Phone, mobile((c * step) % 7_000_000_000).as_bytes());
    }
    let m = b.finish().matcher();
    let real: std::collections::HashSet<u64> =
        (0..customers).map(|c| (c * step) % 7_000_000_000).collect();
    // The attacker's fast path: the normal form (+86 and 11 digits) written in place, then
    // fingerprinted and looked up; no parsing, no allocation.
    let start = Instant::now();
    let mut hits = 0u64;
    let mut false_hits = 0u64;
    let mut normal = *b"+8613000000000";
    for t in 0..tries {
        let i = (t * 7919) % 7_000_000_000;
        let mut d = i % 1_000_000_000;
        for k in (5..14).rev() {
            normal[k] = b'0' + (d % 10) as u8;
            d /= 10;
        }
        normal[4] = b'3' + (i / 1_000_000_000) as u8;
        let Some(fp) = m.fingerprint_normal(IdKind::Phone, &normal) else {
            continue;
        };
        let mut probe = [Probe::new(IdKind::Phone, fp)];
        m.resolve(&mut probe);
        if probe[0].hit {
            hits += 1;
            false_hits += u64::from(!real.contains(&i));
        }
    }
    debug_assert!(m.matches(IdKind::Phone, mobile(0).as_bytes()));
    let per_try = start.elapsed().as_secs_f64() / tries as f64;
    let rate = false_hits as f64 / tries as f64;
    let candidates = MOBILES * rate + customers as f64;
    println!(
        "set: {customers} customers' mobiles, {} distinct fingerprints",
        m.set().len(IdKind::Phone)
    );
    println!("tries: {tries}, hits {hits} ({false_hits} false)");
    println!("cost: {:.0} ns per try on one core (normal form written in place, fingerprinted, looked up)", per_try * 1e9);
    println!(
        "false-candidate rate: {:.3} % (the set promises {:.3} %)",
        rate * 100.0,
        m.false_match_rate(IdKind::Phone) * 100.0
    );
    println!(
        "enumerating all {MOBILES:.0} mobiles: {:.1} core-minutes, about {:.0} million candidates for {customers} real: one real per {:.0}",
        MOBILES * per_try / 60.0,
        candidates / 1e6,
        candidates / customers as f64
    );
}
