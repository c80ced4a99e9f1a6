//! Seeded generators for test files: CRM contact exports and look-alike negatives.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write;

const FIRST: &[&str] = &[
    "James", "Mary", "Wei", "Li", "Fatima", "Carlos", "Yuki", "Anna", "Omar", "Chloe", "Hiroshi",
    "Priya",
];
const LAST: &[&str] = &[
    "Smith", "Wang", "Garcia", "Chen", "Müller", "Nakamura", "Patel", "O'Brien", "Kowalski",
    "Zhang",
];
const COMPANY: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Ltd",
    "Stark Industries",
    "Wayne Enterprises",
    "华为技术",
    "Hooli",
];
const CITY: &[&str] = &[
    "San Francisco",
    "London",
    "Shanghai",
    "Berlin",
    "Tokyo",
    "Shenzhen",
    "Toronto",
];

/// A Salesforce-style "Contacts" report export: `rows` contacts, each with an email and a
/// phone (a few with only one of them). Returns the CSV bytes.
pub fn salesforce_contacts(seed: u64, rows: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from(
        "\"Contact ID\",\"First Name\",\"Last Name\",\"Title\",\"Account Name\",\"Email\",\"Phone\",\"Mobile\",\"Mailing City\",\"Lead Source\",\"Created Date\"\n",
    );
    for i in 0..rows {
        let f = FIRST[rng.gen_range(0..FIRST.len())];
        let l = LAST[rng.gen_range(0..LAST.len())];
        let c = COMPANY[rng.gen_range(0..COMPANY.len())];
        let email = format!(
            "{}.{}{}@{}.com",
            f.to_lowercase(),
            l.to_lowercase().replace(['\'', 'ü'], ""),
            i,
            c.split(' ')
                .next()
                .unwrap_or("x")
                .to_lowercase()
                .replace(|ch: char| !ch.is_ascii_alphanumeric(), "co")
        );
        let phone = format!(
            "({}) 555-{:04}",
            rng.gen_range(201..989),
            rng.gen_range(0..10000)
        );
        let mobile = format!(
            "+1 {} {} {:04}",
            rng.gen_range(201..989),
            rng.gen_range(200..999),
            rng.gen_range(0..10000)
        );
        let _ = writeln!(
            out,
            "\"003{:012}\",\"{f}\",\"{l}\",\"Buyer\",\"{c}\",\"{email}\",\"{phone}\",\"{mobile}\",\"{}\",\"Web\",\"2024-{:02}-{:02}\"",
            i,
            CITY[rng.gen_range(0..CITY.len())],
            rng.gen_range(1..13),
            rng.gen_range(1..29)
        );
    }
    out.into_bytes()
}

/// A team roster of `n` colleagues (with emails and phones): not a customer export.
pub fn colleagues(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from("Name,Team,Email,Desk phone\n");
    for i in 0..n {
        let f = FIRST[rng.gen_range(0..FIRST.len())];
        let _ = writeln!(
            out,
            "{f},Sales,{}{i}@ourcompany.com,+1 415 555 01{i:02}",
            f.to_lowercase()
        );
    }
    out.into_bytes()
}

/// A product price list: SKUs, prices, dates, no identifiers.
pub fn price_list(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from("SKU,Product,Unit Price,Currency,Valid From,Stock\n");
    for i in 0..n {
        let _ = writeln!(
            out,
            "SKU-{:05},Widget model {},{}.{:02},USD,2024-{:02}-01,{}",
            10_000 + i,
            i,
            rng.gen_range(1..5000),
            rng.gen_range(0..100),
            rng.gen_range(1..13),
            rng.gen_range(10_000_000..99_999_999)
        );
    }
    out.into_bytes()
}
