//! The column-role model: what a header (or a JSON field name) says a column holds, in
//! English and Chinese — the customer's name, company, contact, email, phone, address, WeChat,
//! title, account or ID; the staff member who owns the record; order, invoice and record
//! numbers; dates, amounts and countries — and what a field looks like when no header says
//! (a person's or a company's name). The records use it to count (an owner's address is not a
//! customer's, an order number is not a phone), to decide the verdict and to explain it.

use crate::ident::Context;

/// What a column header says the column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Name,
    Company,
    Contact,
    Email,
    Phone,
    Address,
    Wechat,
    Title,
    Account,
    IdNumber,
    /// The salesperson or user who owns, created or changed the record: staff, not a
    /// customer (their addresses and phones are not the customers').
    Owner,
    /// Order, invoice, record or transaction numbers.
    Reference,
    Date,
    Amount,
    Country,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Name => "name",
            Role::Company => "company",
            Role::Contact => "contact",
            Role::Email => "email",
            Role::Phone => "phone",
            Role::Address => "address",
            Role::Wechat => "wechat",
            Role::Title => "title",
            Role::Account => "account",
            Role::IdNumber => "id_number",
            Role::Owner => "owner",
            Role::Reference => "reference",
            Role::Date => "date",
            Role::Amount => "amount",
            Role::Country => "country",
        }
    }

    /// What fields in a column of this role are, for the validators.
    pub fn context(self) -> Context {
        match self {
            Role::Phone => Context::Phone,
            Role::Reference | Role::Date | Role::Amount => Context::NotPersonal,
            _ => Context::Unknown,
        }
    }

    /// Roles that say "this column identifies a customer".
    pub(super) fn is_identifier(self) -> bool {
        matches!(
            self,
            Role::Email | Role::Phone | Role::Wechat | Role::IdNumber | Role::Address
        )
    }

    /// Roles that say "these rows are people or customers".
    pub(super) fn is_party(self) -> bool {
        matches!(
            self,
            Role::Name | Role::Company | Role::Contact | Role::Account
        )
    }
}

/// Header synonyms, matched on the lowercased header with spaces, `_`, `-` and `.` removed.
/// Longer (more specific) entries are listed first within each language.
const SYNONYMS: &[(&str, Role)] = &[
    // Staff, references, dates and amounts first: "Account Owner", "Customer ID" and
    // "订单号码" are not the customer's name, nor their phone.
    ("负责人", Role::Owner),
    ("所属销售", Role::Owner),
    ("销售代表", Role::Owner),
    ("销售员", Role::Owner),
    ("跟进人", Role::Owner),
    ("归属人", Role::Owner),
    ("创建人", Role::Owner),
    ("客户经理", Role::Owner),
    ("所有人", Role::Owner),
    ("业务员", Role::Owner),
    ("订单号", Role::Reference),
    ("订单编号", Role::Reference),
    ("单号", Role::Reference),
    ("发票号", Role::Reference),
    ("客户编号", Role::Reference),
    ("客户id", Role::Reference),
    ("合同编号", Role::Reference),
    ("流水号", Role::Reference),
    ("税号", Role::Reference),
    ("编号", Role::Reference),
    ("序号", Role::Reference),
    ("创建时间", Role::Date),
    ("下单时间", Role::Date),
    ("日期", Role::Date),
    ("金额", Role::Amount),
    ("价格", Role::Amount),
    ("总价", Role::Amount),
    ("单价", Role::Amount),
    ("销售额", Role::Amount),
    ("国家", Role::Country),
    ("accountowner", Role::Owner),
    ("contactowner", Role::Owner),
    ("companyowner", Role::Owner),
    ("leadowner", Role::Owner),
    ("dealowner", Role::Owner),
    ("recordowner", Role::Owner),
    ("ownername", Role::Owner),
    ("owner", Role::Owner),
    ("salesperson", Role::Owner),
    ("salesrep", Role::Owner),
    ("accountmanager", Role::Owner),
    ("assignedto", Role::Owner),
    ("createdby", Role::Owner),
    ("modifiedby", Role::Owner),
    ("lastmodifiedby", Role::Owner),
    ("id", Role::Reference),
    ("recordid", Role::Reference),
    ("contactid", Role::Reference),
    ("accountid", Role::Reference),
    ("leadid", Role::Reference),
    ("dealid", Role::Reference),
    ("companyid", Role::Reference),
    ("customerid", Role::Reference),
    ("customernumber", Role::Reference),
    ("customerno", Role::Reference),
    ("accountnumber", Role::Reference),
    ("userid", Role::Reference),
    ("orderid", Role::Reference),
    ("ordernumber", Role::Reference),
    ("orderno", Role::Reference),
    ("invoiceid", Role::Reference),
    ("invoicenumber", Role::Reference),
    ("invoiceno", Role::Reference),
    ("invoice", Role::Reference),
    ("ponumber", Role::Reference),
    ("transactionid", Role::Reference),
    ("providerid", Role::Reference),
    ("memberid", Role::Reference),
    ("npi", Role::Reference),
    ("sku", Role::Reference),
    ("date", Role::Date),
    ("createddate", Role::Date),
    ("createdate", Role::Date),
    ("closedate", Role::Date),
    ("lastmodifieddate", Role::Date),
    ("lastactivitydate", Role::Date),
    ("orderdate", Role::Date),
    ("invoicedate", Role::Date),
    ("createdat", Role::Date),
    ("updatedat", Role::Date),
    ("amount", Role::Amount),
    ("total", Role::Amount),
    ("price", Role::Amount),
    ("revenue", Role::Amount),
    ("annualrevenue", Role::Amount),
    ("country", Role::Country),
    ("mailingcountry", Role::Country),
    ("billingcountry", Role::Country),
    ("客户名称", Role::Account),
    ("客户", Role::Account),
    ("公司名称", Role::Company),
    ("公司", Role::Company),
    ("单位", Role::Company),
    ("企业名称", Role::Company),
    ("联系人", Role::Contact),
    ("姓名", Role::Name),
    ("名字", Role::Name),
    ("手机号码", Role::Phone),
    ("手机号", Role::Phone),
    ("手机", Role::Phone),
    ("电话", Role::Phone),
    ("联系电话", Role::Phone),
    ("座机", Role::Phone),
    ("邮箱", Role::Email),
    ("电子邮件", Role::Email),
    ("地址", Role::Address),
    ("微信", Role::Wechat),
    ("职位", Role::Title),
    ("身份证", Role::IdNumber),
    ("accountname", Role::Account),
    ("account", Role::Account),
    ("customername", Role::Account),
    ("customer", Role::Account),
    ("client", Role::Account),
    ("companyname", Role::Company),
    ("company", Role::Company),
    ("organization", Role::Company),
    ("organisation", Role::Company),
    ("contactname", Role::Contact),
    ("contact", Role::Contact),
    ("firstname", Role::Name),
    ("lastname", Role::Name),
    ("fullname", Role::Name),
    ("personname", Role::Name),
    ("displayname", Role::Name),
    ("name", Role::Name),
    ("emailaddress", Role::Email),
    ("email", Role::Email),
    ("mail", Role::Email),
    ("mobilephone", Role::Phone),
    ("mobile", Role::Phone),
    ("phone", Role::Phone),
    ("telephone", Role::Phone),
    ("tel", Role::Phone),
    ("cell", Role::Phone),
    ("mailingstreet", Role::Address),
    ("address", Role::Address),
    ("street", Role::Address),
    ("wechat", Role::Wechat),
    ("jobtitle", Role::Title),
    ("title", Role::Title),
];

/// A header normalised for comparison: lowercased, without spaces, `_`, `-`, `.` or quotes.
/// Policies' `headers_any` / `headers_all` are compared in this form.
pub fn header_key(header: &str) -> String {
    header
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '"' | '\u{3000}'))
        .flat_map(char::to_lowercase)
        .take(64)
        .collect()
}

/// The role a header names, if it is one we know.
pub fn header_role(header: &str) -> Option<Role> {
    let key = header_key(header);
    if key.is_empty() || key.chars().count() > 40 {
        return None;
    }
    SYNONYMS
        .iter()
        .find(|(s, _)| key == *s)
        .or_else(|| {
            SYNONYMS
                .iter()
                .find(|(s, _)| s.chars().count() >= 5 && key.contains(s))
        })
        .or_else(|| {
            // Short Chinese words inside longer headers: 客户手机, 公司地址.
            SYNONYMS
                .iter()
                .find(|(s, _)| !s.is_ascii() && key.contains(s))
        })
        .map(|&(_, r)| r)
}

/// Whether a field without an identifier reads like a person's or a company's name: two to
/// four capitalised words (`Ada Lovelace`, `Mary-Jane O'Neil`), a company suffix (`Acme Ltd`,
/// `某某科技有限公司`), or two to four Chinese characters starting with a common surname.
/// Cheap: it looks at one field's bytes, and only in tables without a header.
pub(super) fn party_like(f: &[u8]) -> bool {
    let Ok(t) = std::str::from_utf8(f) else {
        return false;
    };
    let t = t.trim();
    if t.len() < 3 || t.len() > 80 {
        return false;
    }
    const COMPANY: [&str; 16] = [
        " inc", " inc.", " llc", " ltd", " ltd.", " gmbh", " corp", " corp.", " co.", " ag", " bv",
        " pty", " s.a.", " sarl", " plc", " limited",
    ];
    const COMPANY_ZH: [&str; 6] = ["公司", "集团", "科技", "贸易", "股份", "工作室"];
    let lower = t.to_lowercase();
    if COMPANY.iter().any(|s| lower.ends_with(s)) || COMPANY_ZH.iter().any(|s| t.ends_with(s)) {
        return true;
    }
    const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤";
    let chars: Vec<char> = t.chars().take(6).collect();
    if (2..=4).contains(&chars.len())
        && chars.iter().all(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        && SURNAMES.contains(chars[0])
    {
        return true;
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let word = |w: &&str| {
        w.chars().next().is_some_and(char::is_uppercase)
            && w.chars().all(|c| c.is_alphabetic() || "-'.".contains(c))
    };
    let shouting = words.iter().all(|w| !w.chars().any(char::is_lowercase));
    (2..=4).contains(&words.len()) && words.iter().all(word) && !shouting
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{classify_field, IdKind};

    #[test]
    fn header_synonyms() {
        for (h, want) in [
            ("Account Name", Some(Role::Account)),
            ("E-mail", Some(Role::Email)),
            ("Mobile Phone", Some(Role::Phone)),
            ("客户手机", Some(Role::Account)),
            ("联系人手机", Some(Role::Contact)),
            ("微信号", Some(Role::Wechat)),
            ("Mailing Street", Some(Role::Address)),
            ("Mailing City", None),
            ("Product Name", None),
            ("Price", Some(Role::Amount)),
            ("Account Owner", Some(Role::Owner)),
            ("Contact owner", Some(Role::Owner)),
            ("负责人", Some(Role::Owner)),
            ("Order ID", Some(Role::Reference)),
            ("Invoice No", Some(Role::Reference)),
            ("订单号", Some(Role::Reference)),
            ("订单号码", Some(Role::Reference)),
            ("Customer ID", Some(Role::Reference)),
            ("客户编号", Some(Role::Reference)),
            ("Provider ID", Some(Role::Reference)),
            ("Created Date", Some(Role::Date)),
            ("Mailing Country", Some(Role::Country)),
            ("所有人", Some(Role::Owner)),
            ("专管业务员", Some(Role::Owner)),
            ("税号", Some(Role::Reference)),
            ("Person - Name", Some(Role::Name)),
            ("Person - Owner", Some(Role::Owner)),
            ("Person - Email - Work", Some(Role::Email)),
            ("Person - Phone - Work", Some(Role::Phone)),
            ("", None),
        ] {
            assert_eq!(header_role(h), want, "{h}");
        }
        assert_eq!(classify_field(b"ada@example.com"), Some(IdKind::Email));
        assert_eq!(classify_field(b"11010519491231002X"), Some(IdKind::CnId));
        assert_eq!(classify_field(b"4111 1111 1111 1111"), Some(IdKind::Card));
        assert_eq!(classify_field(b"13800138000"), Some(IdKind::Phone));
        assert_eq!(classify_field(b"12.99"), None);
    }

    #[test]
    fn names_and_companies_without_a_header() {
        for (f, want) in [
            ("Ada Lovelace", true),
            ("Mary-Jane O'Neil", true),
            ("Acme Widgets Ltd", true),
            ("深圳某某科技有限公司", true),
            ("张伟", true),
            ("GET /index.html", false),
            ("2024-01-05", false),
            ("error", false),
            ("商品", false),
            ("ok", false),
        ] {
            assert_eq!(party_like(f.as_bytes()), want, "{f}");
        }
    }
}
