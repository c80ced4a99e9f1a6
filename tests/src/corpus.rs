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

// --- The labelled corpus for precision and recall -------------------------------------------

const ZH_SURNAME: &[&str] = &[
    "张", "王", "李", "赵", "陈", "刘", "杨", "黄", "周", "吴", "徐", "孙",
];
const ZH_GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "军", "秀英",
];
const PINYIN: &[&str] = &[
    "zhang", "wang", "li", "zhao", "chen", "liu", "yang", "huang", "zhou", "wu", "xu", "sun",
];
const ZH_CITY: &[&str] = &[
    "深圳市",
    "上海市",
    "北京市",
    "广州市",
    "杭州市",
    "成都市",
    "苏州市",
];
const ZH_TRADE: &[&str] = &["科技", "贸易", "实业", "电子", "网络", "物流", "医疗器械"];
const ZH_ROAD: &[&str] = &["科技园路", "人民路", "中山路", "建设路", "解放路", "南京路"];
const EN_STREET: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Market St",
    "Elm Rd",
    "King St",
    "Harbour Rd",
];

/// The file formats the corpus writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    CsvBom,
    CsvGbk,
    Tsv,
    Xlsx,
    /// Legacy Excel 97–2003 (BIFF8), as Chinese ERP and CRM modules still export.
    Xls,
    Vcf,
    Json,
    Zip,
}

/// One labelled file.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Ground truth: a customer export of 50 or more records.
    pub positive: bool,
    /// Rows that hold at least one valid identifier (for exports).
    pub records: u64,
    pub what: String,
}

struct Person {
    name: String,
    company: String,
    address: String,
    email: Option<String>,
    phone: Option<String>,
}

fn person(rng: &mut StdRng, chinese: bool, i: usize) -> Person {
    let (name, company, address, local) = if chinese {
        let s = rng.gen_range(0..ZH_SURNAME.len());
        let city = ZH_CITY[rng.gen_range(0..ZH_CITY.len())];
        (
            format!(
                "{}{}",
                ZH_SURNAME[s],
                ZH_GIVEN[rng.gen_range(0..ZH_GIVEN.len())]
            ),
            format!(
                "{city}{}{}有限公司",
                ["恒", "华", "信", "达", "盛", "隆"][rng.gen_range(0..6)],
                ZH_TRADE[rng.gen_range(0..ZH_TRADE.len())]
            ),
            format!(
                "{city}{}{}号",
                ZH_ROAD[rng.gen_range(0..ZH_ROAD.len())],
                rng.gen_range(1..999)
            ),
            format!("{}{}", PINYIN[s], i),
        )
    } else {
        let f = FIRST[rng.gen_range(0..FIRST.len())];
        let l = LAST[rng.gen_range(0..LAST.len())];
        (
            format!("{f} {l}"),
            COMPANY[rng.gen_range(0..COMPANY.len())].to_string(),
            format!(
                "{} {}, {}",
                rng.gen_range(1..999),
                EN_STREET[rng.gen_range(0..EN_STREET.len())],
                CITY[rng.gen_range(0..CITY.len())]
            ),
            format!(
                "{}.{}{i}",
                f.to_lowercase(),
                l.to_lowercase().replace(['\'', 'ü'], "")
            ),
        )
    };
    let domain = [
        "gmail.com",
        "163.com",
        "qq.com",
        "outlook.com",
        "customer-corp.cn",
        "example.co.uk",
    ][rng.gen_range(0..6)];
    let phone = match rng.gen_range(0..8) {
        0 => format!(
            "+86 1{}{} {:04} {:04}",
            rng.gen_range(3..10),
            rng.gen_range(0..10),
            rng.gen_range(0..10000),
            rng.gen_range(0..10000)
        ),
        1 => format!(
            "1{}{}{:08}",
            rng.gen_range(3..10),
            rng.gen_range(0..10),
            rng.gen_range(0..100_000_000)
        ),
        2 => format!(
            "0{}-{:08}",
            [10, 21, 755, 571][rng.gen_range(0..4)],
            rng.gen_range(20_000_000..99_999_999)
        ),
        // Hong Kong mobiles start with 5, 6 or 9.
        3 => format!(
            "+852 {} {:03} {:04}",
            [5, 6, 9][rng.gen_range(0..3)],
            rng.gen_range(100..1000),
            rng.gen_range(0..10000)
        ),
        4 => format!(
            "09{:02}-{:03}-{:03}",
            rng.gen_range(0..100),
            rng.gen_range(0..1000),
            rng.gen_range(0..1000)
        ),
        5 => format!(
            "({}) {}-{:04}",
            rng.gen_range(201..989),
            rng.gen_range(200..999),
            rng.gen_range(0..10000)
        ),
        6 => format!(
            "+44 20 {:04} {:04}",
            rng.gen_range(0..10000),
            rng.gen_range(0..10000)
        ),
        _ => format!(
            "+1-{}-{}-{:04}",
            rng.gen_range(201..989),
            rng.gen_range(200..999),
            rng.gen_range(0..10000)
        ),
    };
    // Most rows carry both; some only one; a few neither.
    let roll = rng.gen_range(0..100);
    Person {
        name,
        company,
        address,
        email: (roll >= 12).then(|| format!("{local}@{domain}")),
        phone: (!(6..16).contains(&roll)).then_some(phone),
    }
}

fn csv_cell(s: &str, delim: char) -> String {
    if s.contains(delim) || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A customer export of `rows` people, in `format`. Returns (bytes, rows with an identifier).
pub fn export(seed: u64, format: Format, chinese: bool, rows: usize) -> (Vec<u8>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let people: Vec<Person> = (0..rows).map(|i| person(&mut rng, chinese, i)).collect();
    let truth = people
        .iter()
        .filter(|p| p.email.is_some() || p.phone.is_some())
        .count() as u64;
    let header: [&str; 5] = if chinese {
        ["客户名称", "联系人", "手机", "邮箱", "地址"]
    } else {
        [
            "Account Name",
            "Contact Name",
            "Phone",
            "Email",
            "Mailing Street",
        ]
    };
    let row = |p: &Person| -> [String; 5] {
        [
            p.company.clone(),
            p.name.clone(),
            p.phone.clone().unwrap_or_default(),
            p.email.clone().unwrap_or_default(),
            p.address.clone(),
        ]
    };
    let table = |delim: char| -> String {
        let mut out = header.join(&delim.to_string());
        out.push('\n');
        for p in &people {
            let cells: Vec<String> = row(p).iter().map(|c| csv_cell(c, delim)).collect();
            out.push_str(&cells.join(&delim.to_string()));
            out.push_str(if rng_crlf(p) { "\r\n" } else { "\n" });
        }
        out
    };
    let bytes = match format {
        Format::Csv => table(',').into_bytes(),
        Format::CsvBom => {
            let mut b = vec![0xEF, 0xBB, 0xBF];
            b.extend_from_slice(table(',').as_bytes());
            b
        }
        Format::CsvGbk => encoding_rs::GBK.encode(&table(',')).0.into_owned(),
        Format::Tsv => table('\t').into_bytes(),
        Format::Xlsx => {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            for (c, h) in header.iter().enumerate() {
                let _ = ws.write_string(0, c as u16, *h);
            }
            for (r, p) in people.iter().enumerate() {
                for (c, v) in row(p).iter().enumerate() {
                    if !v.is_empty() {
                        let _ = ws.write_string(r as u32 + 1, c as u16, v);
                    }
                }
            }
            wb.save_to_buffer().unwrap_or_default()
        }
        Format::Xls => {
            use holdfast_shared::classify::xls::write::{xls, Cell};
            let mut rows = vec![header.iter().map(|h| Cell::Text(h.to_string())).collect()];
            for p in &people {
                rows.push(
                    row(p)
                        .into_iter()
                        .enumerate()
                        .map(|(c, v)| match c {
                            _ if v.is_empty() => Cell::Empty,
                            // Excel keeps a mobile typed as digits as a number.
                            2 if v.bytes().all(|b| b.is_ascii_digit()) => {
                                Cell::Number(v.parse().unwrap_or_default())
                            }
                            1 => Cell::Inline(v),
                            _ => Cell::Text(v),
                        })
                        .collect(),
                );
            }
            xls(&[rows])
        }
        Format::Vcf => {
            let mut out = String::new();
            for p in &people {
                let _ = write!(
                    out,
                    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{}\r\nORG:{}\r\n",
                    p.name, p.company
                );
                if let Some(t) = &p.phone {
                    let _ = write!(out, "TEL;TYPE=CELL:{t}\r\n");
                }
                if let Some(e) = &p.email {
                    let _ = write!(out, "EMAIL;TYPE=INTERNET:{e}\r\n");
                }
                out.push_str("END:VCARD\r\n");
            }
            out.into_bytes()
        }
        Format::Json => {
            let items: Vec<serde_json::Value> = people
                .iter()
                .map(|p| serde_json::json!({"properties": {"company": p.company, "firstname": p.name, "phone": p.phone, "email": p.email, "address": p.address}}))
                .collect();
            serde_json::json!({"results": items, "paging": {"next": null}})
                .to_string()
                .into_bytes()
        }
        Format::Zip => zip_of(
            &[
                ("export/customers.csv", table(',').as_bytes()),
                ("export/README.txt", b"Exported from the CRM"),
            ],
            zip::CompressionMethod::Deflated,
        ),
    };
    (bytes, truth)
}

/// A zip archive holding `files` (name, content), each stored with `method`.
pub fn zip_of(files: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in files {
        w.start_file(*name, o).expect("a zip entry in memory");
        std::io::Write::write_all(&mut w, data).expect("a write to memory");
    }
    w.finish().expect("a zip in memory").into_inner()
}

/// A deflated zip of one file, `name`, holding `data`.
pub fn zipped(name: &str, data: &[u8]) -> Vec<u8> {
    zip_of(&[(name, data)], zip::CompressionMethod::Deflated)
}

fn rng_crlf(p: &Person) -> bool {
    p.name.chars().count() % 3 == 1
}

/// An application log: timestamps, levels, ids, and now and then an address in free text.
pub fn log(seed: u64, lines: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::new();
    for i in 0..lines {
        let _ = match rng.gen_range(0..10) {
            0 => writeln!(out, "2024-03-{:02}T10:{:02}:{:02}.{:03}Z INFO mailer: sent invoice to {}@example.com", rng.gen_range(1..29), rng.gen_range(0..60), rng.gen_range(0..60), rng.gen_range(0..1000), PINYIN[i % PINYIN.len()]),
            1 => writeln!(out, "2024-03-{:02}T10:{:02}:{:02}Z WARN retry request_id={:016x} after 1700000000123 ms", rng.gen_range(1..29), rng.gen_range(0..60), rng.gen_range(0..60), rng.gen::<u64>()),
            _ => writeln!(out, "2024-03-{:02}T10:{:02}:{:02}Z INFO GET /api/v2/items/{} 200 {}ms user_id={}", rng.gen_range(1..29), rng.gen_range(0..60), rng.gen_range(0..60), rng.gen_range(1000..99999), rng.gen_range(1..900), rng.gen_range(10_000_000..99_999_999)),
        };
    }
    out.into_bytes()
}

/// Source code with a few addresses in comments and version strings.
pub fn source_code(seed: u64, lines: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from("// Copyright 2024 Example Corp. Maintainer: dev-team@example.com\nuse std::collections::HashMap;\n\n");
    for i in 0..lines {
        let _ = match rng.gen_range(0..6) {
            0 => writeln!(
                out,
                "    let v{i} = compute({}, {}.{});",
                rng.gen_range(0..100000),
                rng.gen_range(0..100),
                rng.gen_range(0..100)
            ),
            1 => writeln!(
                out,
                "    // TODO({}): see issue #{} (version 1.{}.{})",
                PINYIN[i % PINYIN.len()],
                rng.gen_range(100..9999),
                rng.gen_range(0..40),
                rng.gen_range(0..10)
            ),
            2 => writeln!(
                out,
                "    map.insert(\"key{i}\", {});",
                rng.gen_range(0..1_000_000)
            ),
            3 => writeln!(
                out,
                "fn handler_{i}(req: Request) -> Result<Response, Error> {{"
            ),
            4 => writeln!(
                out,
                "    assert_eq!(timeout_ms, {});",
                rng.gen_range(1000..60_000)
            ),
            _ => writeln!(out, "}}"),
        };
    }
    out.into_bytes()
}

/// A daily price series: dates, prices with decimals, volumes.
pub fn financial_series(seed: u64, days: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from("Date,Open,High,Low,Close,Volume,Timestamp\n");
    for d in 0..days {
        let o = rng.gen_range(1000.0..20000.0_f64);
        let _ = writeln!(
            out,
            "2023-{:02}-{:02},{o:.2},{:.2},{:.2},{:.2},{},{}",
            d % 12 + 1,
            d % 28 + 1,
            o * 1.02,
            o * 0.98,
            o * 1.01,
            rng.gen_range(100_000..999_999_999),
            1_690_000_000_000u64 + d as u64 * 86_400_000
        );
    }
    out.into_bytes()
}

/// The labelled corpus: exports in every format and language (positive when 50+ records),
/// small customer lists, rosters, logs, price lists, source code and financial series.
pub fn labelled(seed: u64) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let formats = [
        (Format::Csv, "csv"),
        (Format::CsvBom, "csv"),
        (Format::CsvGbk, "csv"),
        (Format::Tsv, "tsv"),
        (Format::Xlsx, "xlsx"),
        (Format::Xls, "xls"),
        (Format::Vcf, "vcf"),
        (Format::Json, "json"),
        (Format::Zip, "zip"),
    ];
    let mut n = 0u64;
    for round in 0..12 {
        for (format, ext) in formats {
            for chinese in [false, true] {
                if format == Format::CsvGbk && !chinese {
                    continue;
                }
                n += 1;
                // Mostly big exports; one in four a small list under the threshold.
                let rows = if round % 4 == 3 {
                    rng.gen_range(5..40)
                } else {
                    rng.gen_range(60..1500)
                };
                let (bytes, records) = export(seed ^ n, format, chinese, rows);
                out.push(Sample {
                    name: format!("export-{n}.{ext}"),
                    positive: records >= 50,
                    records,
                    bytes,
                    what: format!(
                        "{format:?} {} rows={rows}",
                        if chinese { "zh" } else { "en" }
                    ),
                });
            }
        }
    }
    // Look-alikes: (file name, what it is, its generator, how many lines or rows).
    let lines_or = |rng: &mut StdRng, r: &std::ops::Range<usize>| {
        if r.is_empty() {
            r.start
        } else {
            rng.gen_range(r.clone())
        }
    };
    type Generator = fn(u64, usize) -> Vec<u8>;
    let negatives: [(&str, &str, Generator, std::ops::Range<usize>); 5] = [
        ("app-{}.log", "log", log, 200..3000),
        ("prices-{}.csv", "price list", price_list, 50..2000),
        ("main-{}.rs", "source code", source_code, 100..2000),
        (
            "series-{}.csv",
            "financial series",
            financial_series,
            100..2000,
        ),
        ("team-{}.csv", "roster of 5", colleagues, 5..5),
    ];
    for i in 0..20u64 {
        for (name, what, make, lines) in &negatives {
            out.push(Sample {
                name: name.replace("{}", &i.to_string()),
                // A fixed size (an empty range) draws nothing from the generator.
                bytes: make(seed + i, lines_or(&mut rng, lines)),
                positive: false,
                records: 0,
                what: what.to_string(),
            });
        }
    }
    out
}
