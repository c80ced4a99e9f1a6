//! Seeded generators for the export shapes that used to be missed or miscounted (issue 18),
//! each written as CSV, TSV, XLSX, JSON and GBK-encoded CSV, with the exact count a correct
//! reader must give; and the look-alikes that must stay silent.
//!
//! Every shape is a table: a header (or none) and rows of cells. The count of records is the
//! number of rows that hold a customer identifier by construction (an email address, or a
//! phone number in the phone column), never an owner's address or an order number.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write;

/// A table shape, with what a correct reader finds in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Phones as CRMs and spreadsheets hold them, under a phone header: extensions
    /// (`555-0100 x23`, `ext. 23`, `转 8001`), ten bare digits (Salesforce's North American
    /// form), national formats without a `+` (French, UK, German, Nordic, Brazilian) and
    /// 7-digit local numbers.
    PhoneForms,
    /// A customer list whose header row was deleted: names, companies, emails, phones.
    Headerless,
    /// A tiering sheet: 客户名称, 联系人, 手机, 等级, with a mobile on three rows in ten.
    Minority,
    /// 300 empty columns before the customer columns.
    WideBlank,
    /// A company export: the companies' phones on one row in four, the salesperson's own
    /// address (the owner column) on every row.
    Owner,
    /// Look-alike: an order ledger whose order numbers look like mainland mobiles.
    OrderLedger,
    /// Look-alike: a provider directory whose 15-digit ids pass an Amex card's checks.
    ProviderIds,
}

impl Shape {
    pub const ALL: [Shape; 7] = [
        Shape::PhoneForms,
        Shape::Headerless,
        Shape::Minority,
        Shape::WideBlank,
        Shape::Owner,
        Shape::OrderLedger,
        Shape::ProviderIds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::PhoneForms => "phone-forms",
            Shape::Headerless => "headerless",
            Shape::Minority => "minority",
            Shape::WideBlank => "wide-blank",
            Shape::Owner => "owner",
            Shape::OrderLedger => "order-ledger",
            Shape::ProviderIds => "provider-ids",
        }
    }

    /// Whether it is a customer table (the look-alikes are not).
    pub fn customers(self) -> bool {
        !matches!(self, Shape::OrderLedger | Shape::ProviderIds)
    }
}

/// The formats each shape is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Xlsx,
    /// Records-oriented JSON (an array of objects named by the header); a table without a
    /// header as rows of values (`orient="values"`).
    Json,
    /// CSV encoded in GBK, as Chinese Excel saves it.
    Gbk,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Csv,
        Format::Tsv,
        Format::Xlsx,
        Format::Json,
        Format::Gbk,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv | Format::Gbk => "csv",
            Format::Tsv => "tsv",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
        }
    }
}

/// A generated table: its header (none for a headerless list), rows, and the exact count.
#[derive(Debug, Clone)]
pub struct Table {
    pub header: Option<Vec<String>>,
    pub rows: Vec<Vec<String>>,
    /// Rows holding a customer identifier.
    pub records: u64,
}

/// A written file and what a correct reader must report for it.
#[derive(Debug, Clone)]
pub struct Made {
    pub name: String,
    pub bytes: Vec<u8>,
    pub records: u64,
    pub customer_table: bool,
}

const PHONE_FORMS: &[&str] = &[
    "555-0100 x23",
    "(415) 555-0134 ext. 23",
    "4155550199",
    "01 42 68 53 00",
    "(0171) 555-2282",
    "030 12345678",
    "08-123 456 78",
    "(11) 3456-7890",
    "555-0142",
    "010-12345678转8001",
];
const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Mary", "Wei", "Fatima", "Carlos", "Yuki", "Omar", "Chloe",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Smith", "Chen", "Khan", "Garcia", "Sato", "Haddad", "Martin",
];
const ZH_NAME: &[&str] = &[
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇",
];

fn person(rng: &mut StdRng) -> String {
    format!(
        "{} {}",
        FIRST[rng.gen_range(0..FIRST.len())],
        LAST[rng.gen_range(0..LAST.len())]
    )
}

/// The table of `shape` with `n` rows.
pub fn table(shape: Shape, seed: u64, n: usize) -> Table {
    let mut rng = StdRng::seed_from_u64(seed ^ shape as u64);
    let s = |v: &str| v.to_string();
    let mut records = 0u64;
    let (header, rows): (Option<Vec<String>>, Vec<Vec<String>>) = match shape {
        Shape::PhoneForms => {
            let rows = (0..n)
                .map(|i| {
                    records += 1;
                    // A Chinese company's international list: some names in Chinese (which
                    // also lets its GBK form tell itself apart from UTF-8).
                    let company = if i % 4 == 0 {
                        format!("深圳{i}号科技有限公司")
                    } else {
                        format!("Company {i} Ltd")
                    };
                    vec![
                        person(&mut rng),
                        company,
                        s(PHONE_FORMS[i % PHONE_FORMS.len()]),
                    ]
                })
                .collect();
            (Some(vec![s("Full Name"), s("Company"), s("Phone")]), rows)
        }
        Shape::Headerless => {
            let rows = (0..n)
                .map(|i| {
                    let email = if i % 5 == 4 {
                        String::new()
                    } else {
                        format!("c{i}@example.com")
                    };
                    let phone = if i % 3 == 0 {
                        format!("(415) 555-{:04}", 100 + i % 9000)
                    } else {
                        String::new()
                    };
                    if !email.is_empty() || !phone.is_empty() {
                        records += 1;
                    }
                    vec![person(&mut rng), format!("Company {i} Inc"), email, phone]
                })
                .collect();
            (None, rows)
        }
        Shape::Minority => {
            let rows = (0..n)
                .map(|i| {
                    let mobile = if i % 10 < 3 {
                        records += 1;
                        format!("139{:08}", rng.gen_range(0..100_000_000u32))
                    } else {
                        String::new()
                    };
                    vec![
                        format!("客户{i}科技有限公司"),
                        s(ZH_NAME[i % ZH_NAME.len()]),
                        mobile,
                        s(["A", "B", "C"][i % 3]),
                    ]
                })
                .collect();
            (
                Some(vec![s("客户名称"), s("联系人"), s("手机"), s("等级")]),
                rows,
            )
        }
        Shape::WideBlank => {
            let blank = vec![String::new(); 300];
            let mut header = blank.clone();
            header.extend([s("Name"), s("Email"), s("Phone")]);
            let rows = (0..n)
                .map(|i| {
                    records += 1;
                    let mut r = blank.clone();
                    r.extend([
                        person(&mut rng),
                        format!("c{i}@example.org"),
                        format!("(212) 555-{:04}", i % 10_000),
                    ]);
                    r
                })
                .collect();
            (Some(header), rows)
        }
        Shape::Owner => {
            let rows = (0..n)
                .map(|i| {
                    let phone = if i % 4 == 0 {
                        records += 1;
                        format!("+1 (646) 555-{:04}", i % 10_000)
                    } else {
                        String::new()
                    };
                    vec![
                        format!("Company {i} LLC"),
                        phone,
                        s("rep@ourcompany.example.com"),
                    ]
                })
                .collect();
            (
                Some(vec![
                    s("Company name"),
                    s("Phone Number"),
                    s("Company owner"),
                ]),
                rows,
            )
        }
        Shape::OrderLedger => {
            let rows = (0..n)
                .map(|i| {
                    vec![
                        format!("13{}{:08}", 5 + i % 5, rng.gen_range(0..100_000_000u32)),
                        format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                        format!("{}.{:02}", rng.gen_range(1..9999), rng.gen_range(0..100)),
                        format!("商品{}", i % 50),
                    ]
                })
                .collect();
            (
                Some(vec![s("订单号"), s("下单时间"), s("金额"), s("商品")]),
                rows,
            )
        }
        Shape::ProviderIds => {
            // Amex-shaped: 34 or 37, 15 digits, a valid Luhn check digit.
            let rows = (0..n)
                .map(|i| {
                    let mut d: Vec<u8> = vec![3, if i % 2 == 0 { 4 } else { 7 }];
                    d.extend((0..12).map(|_| rng.gen_range(0..10u8)));
                    let stem: String = d.iter().map(|x| char::from(b'0' + x)).collect();
                    // The check digit that makes it a valid Amex number.
                    let id = (0..10)
                        .map(|c| format!("{stem}{c}"))
                        .find(|id| holdfast_shared::ident::is_card(id.as_bytes()))
                        .unwrap_or_default();
                    vec![
                        id,
                        format!("Clinic {i}"),
                        s(["cardiology", "dermatology", "oncology"][i % 3]),
                        s("Springfield"),
                    ]
                })
                .collect();
            (
                Some(vec![
                    s("Provider ID"),
                    s("Provider Name"),
                    s("Specialty"),
                    s("City"),
                ]),
                rows,
            )
        }
    };
    Table {
        header,
        rows,
        records,
    }
}

fn cell(v: &str, delim: char) -> String {
    if v.contains(delim) || v.contains('"') || v.contains('\n') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn delimited(t: &Table, delim: char) -> String {
    let mut out = String::new();
    for row in t.header.iter().chain(&t.rows) {
        let cells: Vec<String> = row.iter().map(|v| cell(v, delim)).collect();
        let _ = writeln!(out, "{}", cells.join(&delim.to_string()));
    }
    out
}

/// `t` written as `format`.
pub fn write(t: &Table, format: Format) -> Vec<u8> {
    match format {
        Format::Csv => delimited(t, ',').into_bytes(),
        Format::Tsv => delimited(t, '\t').into_bytes(),
        Format::Gbk => encoding_rs::GBK.encode(&delimited(t, ',')).0.into_owned(),
        Format::Xlsx => {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            for (r, row) in t.header.iter().chain(&t.rows).enumerate() {
                for (c, v) in row.iter().enumerate() {
                    if !v.is_empty() {
                        let _ = ws.write_string(r as u32, c as u16, v);
                    }
                }
            }
            wb.save_to_buffer().unwrap_or_default()
        }
        // A list without a header as pandas writes it with `orient="values"`: rows of values.
        Format::Json if t.header.is_none() => serde_json::Value::from(t.rows.clone())
            .to_string()
            .into_bytes(),
        Format::Json => {
            let names = t.header.clone().unwrap_or_default();
            let items: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|row| {
                    let mut o = serde_json::Map::new();
                    for (name, v) in names.iter().zip(row) {
                        if !name.is_empty() && !v.is_empty() {
                            o.insert(name.clone(), serde_json::Value::String(v.clone()));
                        }
                    }
                    serde_json::Value::Object(o)
                })
                .collect();
            serde_json::Value::Array(items).to_string().into_bytes()
        }
    }
}

/// Every shape in every format (a headerless list in JSON is rows of values), `n` rows each.
pub fn all(seed: u64, n: usize) -> Vec<Made> {
    let mut out = Vec::new();
    for shape in Shape::ALL {
        let t = table(shape, seed, n);
        for format in Format::ALL {
            let gbk = if format == Format::Gbk { "-gbk" } else { "" };
            out.push(Made {
                name: format!("{}{gbk}.{}", shape.name(), format.extension()),
                bytes: write(&t, format),
                records: t.records,
                customer_table: shape.customers(),
            });
        }
    }
    out.extend(json_orientations(seed, n));
    out
}

/// A customer table as pandas writes it with `to_json(orient=…)`: columns, index, split,
/// values.
pub fn json_orientations(seed: u64, n: usize) -> Vec<Made> {
    let mut rng = StdRng::seed_from_u64(seed);
    let people: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            (
                person(&mut rng),
                format!("p{i}@example.net"),
                format!("(312) 555-{:04}", i % 10_000),
            )
        })
        .collect();
    let names = ["name", "email", "phone"];
    let value = |p: &(String, String, String), k: usize| match k {
        0 => p.0.clone(),
        1 => p.1.clone(),
        _ => p.2.clone(),
    };
    let mut columns = serde_json::Map::new();
    for (k, name) in names.iter().enumerate() {
        let col: serde_json::Map<String, serde_json::Value> = people
            .iter()
            .enumerate()
            .map(|(i, p)| (i.to_string(), value(p, k).into()))
            .collect();
        columns.insert(name.to_string(), col.into());
    }
    let index: serde_json::Map<String, serde_json::Value> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                i.to_string(),
                serde_json::json!({"name": p.0, "email": p.1, "phone": p.2}),
            )
        })
        .collect();
    let rows: Vec<Vec<String>> = people
        .iter()
        .map(|p| vec![p.0.clone(), p.1.clone(), p.2.clone()])
        .collect();
    let split = serde_json::json!({
        "columns": names,
        "index": (0..n).collect::<Vec<_>>(),
        "data": rows,
    });
    [
        ("columns", serde_json::Value::Object(columns)),
        ("index", index.into()),
        ("split", split),
        ("values", rows.into()),
    ]
    .into_iter()
    .map(|(orient, v)| Made {
        name: format!("orient-{orient}.json"),
        bytes: v.to_string().into_bytes(),
        records: n as u64,
        customer_table: true,
    })
    .collect()
}

/// Files that look like data but hold no customers: stock prices, sensor logs, order ledgers,
/// airport lists, lock files, changelogs and a 9-person roster. No rule may match them.
pub fn look_alikes(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stocks = String::from("Date,Open,High,Low,Close,Adj Close,Volume\n");
    for d in 0..500 {
        let p: f64 = rng.gen_range(100.0..200.0);
        let _ = writeln!(
            stocks,
            "2023-{:02}-{:02},{p:.2},{:.2},{:.2},{:.2},{:.6},{}",
            1 + d % 12,
            1 + d % 28,
            p + 1.5,
            p - 1.5,
            p + 0.25,
            p + 0.25,
            rng.gen_range(10_000_000..99_999_999u64)
        );
    }
    let mut sensors = String::from("timestamp_ms,sensor_id,temperature_c,humidity,battery_mv\n");
    for i in 0..2000u64 {
        let _ = writeln!(
            sensors,
            "{},{:011},{:.1},{},{}",
            1_700_000_000_000 + i * 1000,
            13_800_000_000u64 + i % 7,
            rng.gen_range(15.0..30.0),
            rng.gen_range(20..90),
            rng.gen_range(2900..3300)
        );
    }
    let ledger = delimited(&table(Shape::OrderLedger, seed, 600), ',');
    let mut airports = String::from("iata,name,city,country,latitude,longitude,elevation_ft\n");
    for (code, name, city, country) in [
        (
            "SFO",
            "San Francisco International Airport",
            "San Francisco",
            "US",
        ),
        ("LHR", "London Heathrow Airport", "London", "GB"),
        (
            "PVG",
            "Shanghai Pudong International Airport",
            "Shanghai",
            "CN",
        ),
        ("CDG", "Paris Charles de Gaulle Airport", "Paris", "FR"),
        ("NRT", "Narita International Airport", "Tokyo", "JP"),
    ]
    .iter()
    .cycle()
    .take(300)
    {
        let _ = writeln!(
            airports,
            "{code},{name},{city},{country},{:.4},{:.4},{}",
            rng.gen_range(-60.0..60.0),
            rng.gen_range(-180.0..180.0),
            rng.gen_range(0..2000)
        );
    }
    let mut lock =
        String::from("# This file is automatically @generated by Cargo.\nversion = 4\n\n");
    for i in 0..300 {
        let _ = writeln!(
            lock,
            "[[package]]\nname = \"crate-{i}\"\nversion = \"1.{}.{}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{:064x}\"\n",
            i % 20,
            i % 7,
            rng.gen::<u128>()
        );
    }
    let mut changelog = String::from("# Changelog\n\n");
    for v in (1..120).rev() {
        let _ = writeln!(
            changelog,
            "## 2.{v}.0 (2024-{:02}-{:02})\n\n- Fix the parser on empty input (#{}).\n- Thanks to {} for the report.\n",
            1 + v % 12,
            1 + v % 28,
            1000 + v,
            person(&mut rng)
        );
    }
    let mut roster = String::from("Name,Email,Phone,Team\n");
    for (i, first) in FIRST.iter().take(9).enumerate() {
        let _ = writeln!(
            roster,
            "{},{first}@ourcompany.example.com,(415) 555-{:04},Sales",
            person(&mut rng),
            200 + i
        );
    }
    vec![
        ("stock-prices.csv".into(), stocks.into_bytes()),
        ("sensor-log.csv".into(), sensors.into_bytes()),
        ("order-ledger.csv".into(), ledger.into_bytes()),
        ("airports.csv".into(), airports.into_bytes()),
        ("Cargo.lock".into(), lock.into_bytes()),
        ("CHANGELOG.md".into(), changelog.into_bytes()),
        ("team-roster.csv".into(), roster.into_bytes()),
    ]
}
