//! Seeded exports laid out as eleven CRMs write them (issue 18, item 2): each CRM's column
//! names, identifier and phone formats, file name and file format, with the exact record
//! count a correct reader gives and the one rule that must name the CRM.
//!
//! Where each layout comes from is cited on its [`Crm`]: the vendor's page on exporting, and
//! for Salesforce's Data Loader and SuiteCRM the field names and the export code. The data
//! is made up: people from a short list of names, companies numbered, phones in the format
//! of each CRM's home market, and on some rows no email or no phone, so the count is not
//! simply the row count.

use crate::shapes::{write, Format, Table};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One generated export, with what a correct scan reports for it.
#[derive(Debug, Clone)]
pub struct Export {
    /// The CRM's name.
    pub crm: &'static str,
    /// The one rule the export must raise.
    pub rule: &'static str,
    /// The file name: the CRM's own, or a neutral one for a renamed copy.
    pub name: String,
    pub bytes: Vec<u8>,
    /// Rows holding a customer's email or phone.
    pub records: u64,
}

/// How a CRM writes its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Plain CSV, fields quoted only where they must be.
    Csv,
    /// Every field quoted, lines ended with CR LF (SuiteCRM's `export_utils.php`, Data Loader).
    QuotedCrlf,
    /// A Salesforce report's "Details Only" CSV: every field quoted, then the report's footer
    /// (an empty line and the confidentiality and copyright lines).
    SalesforceReport,
    Xlsx,
    /// CSV in GBK, as Chinese Excel saves a re-exported sheet.
    Gbk,
}

/// One made-up customer row, in the pieces the CRMs lay out differently.
struct Person {
    i: usize,
    first: &'static str,
    last: &'static str,
    /// Chinese full name (for the Chinese CRMs).
    zh: &'static str,
    email: Option<String>,
    /// The phone in the CRM's home format, if the row has one.
    phone: Option<String>,
    /// The salesperson who owns the record (staff, never counted).
    owner: &'static str,
    owner_zh: &'static str,
}

impl Person {
    fn full(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
    fn email(&self) -> String {
        self.email.clone().unwrap_or_default()
    }
    fn phone(&self) -> String {
        self.phone.clone().unwrap_or_default()
    }
}

/// A CRM's export layout.
struct Crm {
    crm: &'static str,
    rule: &'static str,
    /// Where the layout is documented (kept here so a reader can check it).
    #[allow(dead_code)]
    doc: &'static str,
    header: &'static [&'static str],
    /// The phone of row `i` in this CRM's home format.
    phone: fn(usize) -> String,
    email_domain: &'static str,
    row: fn(&Person, &mut StdRng) -> Vec<String>,
    /// The files it writes: the CRM's own file name and format.
    files: &'static [(&'static str, Writer)],
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Mary", "Wei", "Fatima", "Carlos", "Yuki", "Omar", "Chloe", "Lars",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Smith", "Chen", "Khan", "Garcia", "Sato", "Haddad", "Martin",
];
const ZH: &[&str] = &[
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴桐",
];
const OWNERS: &[&str] = &["Jordan Reyes", "Priya Nair", "Tom Becker"];
const OWNERS_ZH: &[&str] = &["孙丽", "马超", "何冰"];

fn s(v: &str) -> String {
    v.to_string()
}

/// A Chinese mobile (13x, 15x, 18x), 11 digits as the Chinese CRMs store them.
fn cn_mobile(i: usize) -> String {
    format!(
        "1{}{:09}",
        [3, 5, 8][i % 3],
        (i * 7_919 + 1_234_567) % 1_000_000_000
    )
}

const CRMS: &[Crm] = &[
    Crm {
        crm: "Salesforce (report)",
        rule: "crm-export.salesforce",
        doc: "https://help.salesforce.com/s/articleView?id=sf.reports_export.htm (Export a Report, \
              Details Only, CSV); column labels of the standard Contacts & Accounts report type",
        header: &[
            "Contact Owner", "Account Name", "First Name", "Last Name", "Title", "Email", "Phone",
            "Mailing Street", "Mailing City", "Mailing Country", "Lead Source", "Created Date",
        ],
        phone: |i| format!("(415) 555-{:04}", i % 10_000),
        email_domain: "example.com",
        row: |p, _| {
            vec![
                s(p.owner),
                format!("Company {} Inc", p.i),
                s(p.first),
                s(p.last),
                s("Buyer"),
                p.email(),
                p.phone(),
                format!("{} Market St", 100 + p.i),
                s("San Francisco"),
                s("USA"),
                s("Web"),
                format!("{}/{}/2026", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[
            ("report1764489600123.csv", Writer::SalesforceReport),
            ("report1764489600123.xlsx", Writer::Xlsx),
        ],
    },
    Crm {
        crm: "Salesforce (Data Loader)",
        rule: "crm-export.salesforce",
        doc: "https://developer.salesforce.com/docs/atlas.en-us.dataLoader.meta/dataLoader/exporting_data.htm \
              (Export writes extract.csv with the SOQL field names as headers); Contact fields: \
              https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contact.htm",
        header: &[
            "ID", "ACCOUNTID", "OWNERID", "FIRSTNAME", "LASTNAME", "EMAIL", "PHONE", "MOBILEPHONE",
            "MAILINGSTREET", "MAILINGCITY", "MAILINGCOUNTRY", "CREATEDDATE",
        ],
        // Ten digits with no separators: how Salesforce holds a North American number typed
        // without punctuation.
        phone: |i| format!("212555{:04}", i % 10_000),
        email_domain: "example.org",
        row: |p, _| {
            vec![
                format!("0035g000{:07}AAB", p.i),
                format!("0015g000{:07}AAA", p.i / 3),
                format!("0055g00000Qx{:03}AAB", p.i % 3),
                s(p.first),
                s(p.last),
                p.email(),
                p.phone(),
                String::new(),
                format!("{} Broadway", 10 + p.i),
                s("New York"),
                s("United States"),
                format!("2026-{:02}-{:02}T09:15:00.000Z", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[("extract.csv", Writer::QuotedCrlf)],
    },
    Crm {
        crm: "HubSpot",
        rule: "crm-export.hubspot",
        doc: "https://knowledge.hubspot.com/import-and-export/export-records (CSV, XLSX or XLS; \
              Record ID first, then the view's property labels)",
        header: &[
            "Record ID", "First Name", "Last Name", "Email", "Phone Number", "Contact owner",
            "Lifecycle Stage", "Lead Status", "Associated Company", "Create Date",
            "Last Activity Date",
        ],
        phone: |i| format!("+1 617-555-{:04}", i % 10_000),
        email_domain: "example.net",
        row: |p, _| {
            vec![
                format!("{}", 51_000_000_000u64 + p.i as u64 * 13),
                s(p.first),
                s(p.last),
                p.email(),
                p.phone(),
                s(p.owner),
                s(["Lead", "Customer", "Opportunity"][p.i % 3]),
                s("Open"),
                format!("Company {} LLC", p.i),
                format!("2026-{:02}-{:02} 09:15", 1 + p.i % 12, 1 + p.i % 28),
                String::new(),
            ]
        },
        files: &[
            ("hubspot-crm-exports-all-contacts-2026-11-30.csv", Writer::Csv),
            ("hubspot-crm-exports-all-contacts-2026-11-30.xlsx", Writer::Xlsx),
        ],
    },
    Crm {
        crm: "Zoho CRM",
        rule: "crm-export.zoho",
        doc: "https://help.zoho.com/portal/en/kb/crm/data-administration/export/articles/export-data \
              (module export to CSV; Record Id as zcrm_…, owner and time stamps by field label)",
        header: &[
            "Record Id", "Contact Owner", "Lead Source", "First Name", "Last Name", "Account Name",
            "Email", "Phone", "Mobile", "Mailing Street", "Mailing City", "Mailing Country",
            "Created Time", "Modified Time",
        ],
        // Indian mobiles (+91, ten digits from 6–9): Zoho's home market.
        phone: |i| format!("+91 98450 {:05}", i % 100_000),
        email_domain: "example.in",
        row: |p, _| {
            vec![
                format!("zcrm_4876876000000{:06}", 224_005 + p.i),
                s(p.owner),
                s("Trade Show"),
                s(p.first),
                s(p.last),
                format!("Company {} Pvt Ltd", p.i),
                p.email(),
                String::new(),
                p.phone(),
                format!("{} MG Road", 1 + p.i),
                s("Chennai"),
                s("India"),
                format!("2026-{:02}-{:02} 09:15:00", 1 + p.i % 12, 1 + p.i % 28),
                format!("2026-{:02}-{:02} 10:00:00", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[("Contacts_2026_11_30.csv", Writer::Csv)],
    },
    Crm {
        crm: "Dynamics 365",
        rule: "crm-export.dynamics",
        doc: "https://learn.microsoft.com/en-us/power-apps/user/export-data-excel (Export to Excel: \
              the hidden (Do Not Modify) columns, then the view's columns; the Active Contacts view)",
        header: &[
            "(Do Not Modify) Contact", "(Do Not Modify) Row Checksum", "(Do Not Modify) Modified On",
            "Full Name", "Company Name", "Email", "Business Phone",
        ],
        phone: |i| format!("+44 20 7946 0{:03}", i % 1_000),
        email_domain: "example.co.uk",
        row: |p, rng| {
            let checksum: String = (0..36)
                .map(|_| {
                    let c = rng.gen_range(0..64u8);
                    (match c {
                        0..=25 => b'A' + c,
                        26..=51 => b'a' + c - 26,
                        52..=61 => b'0' + c - 52,
                        62 => b'+',
                        _ => b'/',
                    }) as char
                })
                .collect();
            vec![
                format!(
                    "{:08x}-{:04x}-ef11-a71a-{:012x}",
                    rng.gen::<u32>(),
                    rng.gen::<u16>(),
                    p.i
                ),
                format!("{checksum}=="),
                format!("2026-11-{:02}T09:15:00", 1 + p.i % 28),
                p.full(),
                format!("Company {} plc", p.i),
                p.email(),
                p.phone(),
            ]
        },
        files: &[("Active Contacts 11-30-2026 9-15-00 AM.xlsx", Writer::Xlsx)],
    },
    Crm {
        crm: "Pipedrive",
        rule: "crm-export.pipedrive",
        doc: "https://support.pipedrive.com/en/article/how-can-i-export-my-data (spreadsheet \
              export of a list view: each column is `Entity - Field`, multi-value fields with \
              their label, e.g. `Person - Email - Work`)",
        header: &[
            "Person - ID", "Person - Name", "Person - Organization", "Person - Email - Work",
            "Person - Phone - Work", "Person - Label", "Person - Owner", "Person - Add time",
        ],
        phone: |i| format!("+49 30 9019 {:04}", i % 10_000),
        email_domain: "example.de",
        row: |p, _| {
            vec![
                format!("{}", 1_000 + p.i),
                p.full(),
                format!("Company {} GmbH", p.i),
                p.email(),
                p.phone(),
                s(["Hot lead", "Customer", ""][p.i % 3]),
                s(p.owner),
                format!("2026-{:02}-{:02} 09:15:00", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[
            ("people-export-2026-11-30.csv", Writer::Csv),
            ("people-export-2026-11-30.xlsx", Writer::Xlsx),
        ],
    },
    Crm {
        crm: "Odoo",
        rule: "crm-export.odoo",
        doc: "https://www.odoo.com/documentation/17.0/applications/essentials/export_import_data.html \
              (Action > Export from the Contacts list, XLSX or CSV; the file is named after the \
              model, res.partner; field labels as in the contact form)",
        header: &[
            "Name", "Related Company", "Is a Company", "Email", "Phone", "Salesperson", "City",
            "Country",
        ],
        phone: |i| format!("+32 2 290 {:02} {:02}", i / 100 % 100, i % 100),
        email_domain: "example.be",
        row: |p, _| {
            vec![
                p.full(),
                format!("Company {} SA", p.i),
                s("False"),
                p.email(),
                p.phone(),
                s(p.owner),
                s("Brussels"),
                s("Belgium"),
            ]
        },
        files: &[
            ("Contact (res.partner).xlsx", Writer::Xlsx),
            ("res.partner.csv", Writer::Csv),
        ],
    },
    Crm {
        crm: "SuiteCRM",
        rule: "crm-export.suitecrm",
        doc: "https://docs.suitecrm.com/user/introduction/user-interface/record-management/ \
              (Bulk Action > Export); include/export_utils.php: translateForExport writes each \
              field's label without its colon, every value quoted, rows ended with CR LF",
        header: &[
            "ID", "Name", "Date Created", "Date Modified", "Modified By", "Created By",
            "Assigned User Id", "Assigned to", "Salutation", "First Name", "Last Name", "Title",
            "Department", "Account Name", "Office Phone", "Mobile", "Email Address",
            "Non Primary E-mails", "Primary Address Street", "Primary Address City",
            "Primary Address Country", "Lead Source", "Do Not Call",
        ],
        phone: |i| format!("(312) 555-{:04}", i % 10_000),
        email_domain: "example.us",
        row: |p, rng| {
            let uuid = |rng: &mut StdRng| {
                format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    rng.gen::<u32>(),
                    rng.gen::<u16>(),
                    rng.gen::<u16>(),
                    rng.gen::<u16>(),
                    rng.gen::<u64>() & 0xffff_ffff_ffff
                )
            };
            vec![
                uuid(rng),
                p.full(),
                format!("2026-{:02}-{:02} 09:15:00", 1 + p.i % 12, 1 + p.i % 28),
                format!("2026-{:02}-{:02} 10:00:00", 1 + p.i % 12, 1 + p.i % 28),
                s("admin"),
                s("admin"),
                uuid(rng),
                s(p.owner),
                s("Ms."),
                s(p.first),
                s(p.last),
                s("Buyer"),
                s("Purchasing"),
                format!("Company {} Corp", p.i),
                p.phone(),
                String::new(),
                p.email(),
                String::new(),
                format!("{} Wacker Dr", 100 + p.i),
                s("Chicago"),
                s("USA"),
                s("Cold Call"),
                s("0"),
            ]
        },
        files: &[("Contacts.csv", Writer::QuotedCrlf)],
    },
    Crm {
        crm: "纷享销客",
        rule: "crm-export.fxiaoke",
        doc: "https://help.fxiaoke.com/ (客户 > 导出: 客户名称, 客户编号, 客户级别, 成交状态, \
              跟进状态, 负责人, 所属部门 and the contact fields)",
        header: &[
            "客户名称", "客户编号", "客户级别", "成交状态", "跟进状态", "负责人", "所属部门",
            "电话", "手机", "邮箱", "详细地址", "最后跟进时间", "创建时间",
        ],
        phone: cn_mobile,
        email_domain: "example.com.cn",
        row: |p, _| {
            vec![
                format!("深圳市第{}号科技有限公司", p.i),
                format!("KH2026{:06}", p.i),
                s(["A类客户", "B类客户", "C类客户"][p.i % 3]),
                s(["未成交", "已成交"][p.i % 2]),
                s("跟进中"),
                s(p.owner_zh),
                s("华南销售部"),
                String::new(),
                p.phone(),
                p.email(),
                format!("深圳市南山区科技园{}号", p.i),
                format!("2026-11-{:02} 09:15", 1 + p.i % 28),
                format!("2026-{:02}-{:02} 10:00", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[("客户_20261130.xlsx", Writer::Xlsx), ("客户_20261130.csv", Writer::Gbk)],
    },
    Crm {
        crm: "销售易",
        rule: "crm-export.xiaoshouyi",
        doc: "https://doc.xiaoshouyi.com/ (联系人列表 > 导出: 姓名, 客户名称, 手机, 电话, 邮箱, \
              职务, 所有人, 所属部门)",
        header: &[
            "姓名", "客户名称", "手机", "电话", "邮箱", "职务", "所有人", "所属部门", "创建日期",
        ],
        phone: cn_mobile,
        email_domain: "example.cn",
        row: |p, _| {
            vec![
                s(p.zh),
                format!("上海第{}号贸易有限公司", p.i),
                p.phone(),
                if p.i % 4 == 0 {
                    format!("021-6{:07}", p.i)
                } else {
                    String::new()
                },
                p.email(),
                s("采购经理"),
                s(p.owner_zh),
                s("华东大区"),
                format!("2026-{:02}-{:02}", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[("联系人列表.xlsx", Writer::Xlsx), ("联系人列表.csv", Writer::Gbk)],
    },
    Crm {
        crm: "金蝶",
        rule: "crm-export.kingdee",
        doc: "https://vip.kingdee.com/ (金蝶云星空 基础资料 > 客户 > 引出: 客户编码, 客户名称, \
              简称, 客户分组, 结算币别, 销售员, 联系人, 联系电话, 手机)",
        header: &[
            "客户编码", "客户名称", "简称", "客户分组", "结算币别", "销售员", "联系人", "联系电话",
            "手机", "电子邮箱", "通讯地址", "创建日期",
        ],
        phone: cn_mobile,
        email_domain: "example.net.cn",
        row: |p, _| {
            vec![
                format!("CUST{:06}", p.i),
                format!("广州第{}号贸易有限公司", p.i),
                format!("广贸{}", p.i),
                s("华南客户"),
                s("人民币"),
                s(p.owner_zh),
                s(p.zh),
                String::new(),
                p.phone(),
                p.email(),
                format!("广州市天河区{}号", p.i),
                format!("2026/{}/{}", 1 + p.i % 12, 1 + p.i % 28),
            ]
        },
        files: &[("客户.xlsx", Writer::Xlsx), ("客户.csv", Writer::Gbk)],
    },
    Crm {
        crm: "用友",
        rule: "crm-export.yonyou",
        doc: "https://www.yonyou.com/ (U8 基础档案 > 客户档案 > 输出: 客户编码, 客户名称, \
              客户简称, 所属分类码, 税号, 联系人, 电话, 手机, 专管业务员, 分管部门, 发展日期, \
              信用额度)",
        header: &[
            "客户编码", "客户名称", "客户简称", "所属分类码", "税号", "联系人", "电话", "手机",
            "Email地址", "地址", "专管业务员", "分管部门", "发展日期", "信用额度",
        ],
        phone: cn_mobile,
        email_domain: "example.org.cn",
        row: |p, _| {
            vec![
                format!("{:06}", 10_000 + p.i),
                format!("北京第{}号科技有限公司", p.i),
                format!("北科{}", p.i),
                s("01"),
                format!("91110108MA01{:05}X", p.i),
                s(p.zh),
                if p.i % 4 == 0 {
                    format!("010-6{:07}", p.i)
                } else {
                    String::new()
                },
                p.phone(),
                p.email(),
                format!("北京市海淀区中关村大街{}号", p.i),
                s(p.owner_zh),
                s("销售一部"),
                format!("2026-{:02}-{:02}", 1 + p.i % 12, 1 + p.i % 28),
                format!("{}", 50_000 + p.i * 100),
            ]
        },
        files: &[("客户档案.xlsx", Writer::Xlsx), ("客户档案.csv", Writer::Gbk)],
    },
];

fn quoted(t: &Table, footer: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for row in t.header.iter().chain(&t.rows) {
        let cells: Vec<String> = row
            .iter()
            .map(|v| format!("\"{}\"", v.replace('"', "\"\"")))
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    for line in footer {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The table of `crm` with `n` rows: on some rows no email, on some no phone, on some
/// neither (those are not records).
fn table(crm: &Crm, seed: u64, n: usize) -> Table {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = 0;
    let rows = (0..n)
        .map(|i| {
            let (first, last) = (
                FIRST[rng.gen_range(0..FIRST.len())],
                LAST[rng.gen_range(0..LAST.len())],
            );
            let email = (i % 7 != 3).then(|| {
                format!(
                    "{}.{}{i}@customer{}.{}",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    i % 40,
                    crm.email_domain
                )
            });
            let phone = (i % 5 != 1).then(|| (crm.phone)(i));
            if email.is_some() || phone.is_some() {
                records += 1;
            }
            let p = Person {
                i,
                first,
                last,
                zh: ZH[i % ZH.len()],
                email,
                phone,
                owner: OWNERS[i % OWNERS.len()],
                owner_zh: OWNERS_ZH[i % OWNERS_ZH.len()],
            };
            (crm.row)(&p, &mut rng)
        })
        .collect();
    Table {
        header: Some(crm.header.iter().map(|h| h.to_string()).collect()),
        rows,
        records,
    }
}

/// Every CRM's export in each of its own files, `n` rows each, and a renamed copy of each
/// (`renamed-K.ext`): the CRM is named from its columns, not only from its file name.
pub fn exports(seed: u64, n: usize) -> Vec<Export> {
    let mut out = Vec::new();
    for (k, crm) in CRMS.iter().enumerate() {
        let t = table(crm, seed ^ k as u64, n);
        for (j, &(name, writer)) in crm.files.iter().enumerate() {
            let bytes = match writer {
                Writer::Csv => write(&t, Format::Csv),
                Writer::Xlsx => write(&t, Format::Xlsx),
                Writer::Gbk => write(&t, Format::Gbk),
                Writer::QuotedCrlf => quoted(&t, &[]),
                Writer::SalesforceReport => quoted(
                    &t,
                    &[
                        "\"\"",
                        "\"Confidential Information - Do Not Distribute\"",
                        "\"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved.\"",
                    ],
                ),
            };
            let ext = name.rsplit('.').next().unwrap_or("csv");
            for file in [name.to_string(), format!("renamed-{k}-{j}.{ext}")] {
                out.push(Export {
                    crm: crm.crm,
                    rule: crm.rule,
                    name: file,
                    bytes: bytes.clone(),
                    records: t.records,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crm_writes_rows_as_wide_as_its_header_and_counts_are_not_the_row_count() {
        for (k, crm) in CRMS.iter().enumerate() {
            let t = table(crm, k as u64, 70);
            for row in &t.rows {
                assert_eq!(row.len(), crm.header.len(), "{}", crm.crm);
            }
            // Rows 31 and 66 (i ≡ 31 mod 35) hold neither an email nor a phone.
            assert_eq!(t.records, 68, "{}", crm.crm);
        }
        assert_eq!(exports(1, 10).len(), 2 * 20);
    }
}
