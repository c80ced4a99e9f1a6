//! Countries as exports write them (`France`, `FR`, `FRA`, `法国`, `Deutschland`) and how
//! their phone numbers are dialled from abroad: a national number in a row whose country
//! column names the country becomes E.164 (`01 42 68 53 00` in France is `+33142685300`),
//! so it matches the same customer written internationally in the customer set.

/// How a country's numbers are dialled: its calling code and the trunk prefix its national
/// numbers start with (dropped from the international form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialling {
    /// The country calling code's digits (`33`).
    pub code: &'static str,
    /// The national trunk prefix (`0`), when the country has one that is not dialled from
    /// abroad. Italy's leading 0 is part of the number, so Italy has none.
    pub trunk: Option<u8>,
}

/// (calling code, trunk prefix, the names and codes exports write: upper-case ASCII or as
/// written).
#[rustfmt::skip]
const COUNTRIES: &[(&str, Option<u8>, &[&str])] = &[
    ("1", Some(b'1'), &["UNITED STATES", "UNITED STATES OF AMERICA", "USA", "US", "AMERICA", "美国"]),
    ("1", Some(b'1'), &["CANADA", "CA", "CAN", "加拿大"]),
    ("44", Some(b'0'), &["UNITED KINGDOM", "UK", "GB", "GBR", "GREAT BRITAIN", "ENGLAND", "SCOTLAND", "WALES", "英国"]),
    ("33", Some(b'0'), &["FRANCE", "FR", "FRA", "法国"]),
    ("49", Some(b'0'), &["GERMANY", "DEUTSCHLAND", "DE", "DEU", "德国"]),
    ("39", None, &["ITALY", "ITALIA", "IT", "ITA", "意大利"]),
    ("34", None, &["SPAIN", "ESPAÑA", "ESPANA", "ES", "ESP", "西班牙"]),
    ("351", None, &["PORTUGAL", "PT", "PRT", "葡萄牙"]),
    ("31", Some(b'0'), &["NETHERLANDS", "THE NETHERLANDS", "NEDERLAND", "HOLLAND", "NL", "NLD", "荷兰"]),
    ("32", Some(b'0'), &["BELGIUM", "BELGIQUE", "BELGIË", "BE", "BEL", "比利时"]),
    ("41", Some(b'0'), &["SWITZERLAND", "SCHWEIZ", "SUISSE", "CH", "CHE", "瑞士"]),
    ("43", Some(b'0'), &["AUSTRIA", "ÖSTERREICH", "OSTERREICH", "AT", "AUT", "奥地利"]),
    ("353", Some(b'0'), &["IRELAND", "IE", "IRL", "爱尔兰"]),
    ("46", Some(b'0'), &["SWEDEN", "SVERIGE", "SE", "SWE", "瑞典"]),
    ("47", None, &["NORWAY", "NORGE", "NO", "NOR", "挪威"]),
    ("45", None, &["DENMARK", "DANMARK", "DK", "DNK", "丹麦"]),
    ("358", Some(b'0'), &["FINLAND", "SUOMI", "FI", "FIN", "芬兰"]),
    ("48", None, &["POLAND", "POLSKA", "PL", "POL", "波兰"]),
    ("420", None, &["CZECH REPUBLIC", "CZECHIA", "CZ", "CZE", "捷克"]),
    ("30", None, &["GREECE", "GR", "GRC", "希腊"]),
    ("90", Some(b'0'), &["TURKEY", "TÜRKIYE", "TURKIYE", "TR", "TUR", "土耳其"]),
    ("7", Some(b'8'), &["RUSSIA", "RUSSIAN FEDERATION", "RU", "RUS", "俄罗斯"]),
    ("86", Some(b'0'), &["CHINA", "PRC", "CN", "CHN", "中国", "中华人民共和国", "中国大陆"]),
    ("852", None, &["HONG KONG", "HK", "HKG", "香港", "中国香港"]),
    ("886", Some(b'0'), &["TAIWAN", "TW", "TWN", "台湾", "中国台湾"]),
    ("81", Some(b'0'), &["JAPAN", "JP", "JPN", "日本"]),
    ("82", Some(b'0'), &["SOUTH KOREA", "KOREA", "REPUBLIC OF KOREA", "KR", "KOR", "韩国"]),
    ("65", None, &["SINGAPORE", "SG", "SGP", "新加坡"]),
    ("60", Some(b'0'), &["MALAYSIA", "MY", "MYS", "马来西亚"]),
    ("91", Some(b'0'), &["INDIA", "IN", "IND", "印度"]),
    ("61", Some(b'0'), &["AUSTRALIA", "AU", "AUS", "澳大利亚"]),
    ("64", Some(b'0'), &["NEW ZEALAND", "NZ", "NZL", "新西兰"]),
    ("55", Some(b'0'), &["BRAZIL", "BRASIL", "BR", "BRA", "巴西"]),
    ("52", None, &["MEXICO", "MÉXICO", "MX", "MEX", "墨西哥"]),
    ("54", Some(b'0'), &["ARGENTINA", "AR", "ARG", "阿根廷"]),
    ("56", None, &["CHILE", "CL", "CHL", "智利"]),
    ("57", None, &["COLOMBIA", "CO", "COL", "哥伦比亚"]),
    ("51", None, &["PERU", "PERÚ", "PE", "PER", "秘鲁"]),
    ("27", Some(b'0'), &["SOUTH AFRICA", "ZA", "ZAF", "南非"]),
    ("971", Some(b'0'), &["UNITED ARAB EMIRATES", "UAE", "AE", "ARE", "阿联酋"]),
    ("972", Some(b'0'), &["ISRAEL", "IL", "ISR", "以色列"]),
];

/// Longest country name compared.
const MAX_NAME: usize = 40;

/// The country a field names, by English or local name, ISO 3166 code or Chinese name
/// (case, dots and surrounding blanks ignored: `u.s.a.`, ` France `); `None` for anything
/// else.
pub fn dialling(field: &[u8]) -> Option<Dialling> {
    let t = field.trim_ascii();
    if t.is_empty() || t.len() > MAX_NAME {
        return None;
    }
    let mut name = [0u8; MAX_NAME];
    let mut n = 0;
    for &b in t {
        if b != b'.' {
            name[n] = b.to_ascii_uppercase();
            n += 1;
        }
    }
    let name = name.get(..n)?;
    COUNTRIES
        .iter()
        .find(|(_, _, names)| names.iter().any(|c| c.as_bytes() == name))
        .map(|&(code, trunk, _)| Dialling { code, trunk })
}

impl Dialling {
    /// `national` (a national number's digits as written, without a `+`) as
    /// E.164, into `out`; returns the length. The trunk prefix is dropped; digits that already
    /// start with the calling code and are long enough to hold a number after it are taken as
    /// international written without the `+`. `None` when the number is international already
    /// or the result could not be a whole number (a North American one without its area
    /// code, fewer than 6 digits after the code, more than 15 in all): it is left as it was.
    pub fn e164_into(&self, national: &[u8], out: &mut [u8; 40]) -> Option<usize> {
        if national.first() == Some(&b'+') || !national.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = self.code.as_bytes();
        let body = match national.split_first() {
            Some((&first, rest)) if Some(first) == self.trunk => rest,
            _ if national.starts_with(code) && national.len() >= code.len() + 9 => {
                &national[code.len()..]
            }
            _ => national,
        };
        // North American numbers are ten digits; elsewhere at least six after the code.
        let whole = if code == b"1" {
            body.len() == 10
        } else {
            body.len() >= 6
        };
        if !whole || code.len() + body.len() > 15 {
            return None;
        }
        let len = 1 + code.len() + body.len();
        out[0] = b'+';
        out[1..=code.len()].copy_from_slice(code);
        out[1 + code.len()..len].copy_from_slice(body);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{phone_in_column, phone_in_country_into};

    /// The normal form of a phone written in a phone column, in a row whose country column
    /// says `country`.
    fn check(country: &str, phone: &str, want: &str) {
        let national = phone_in_column(phone.as_bytes()).unwrap();
        let got = dialling(country.as_bytes())
            .and_then(|d| {
                let mut out = [0u8; 40];
                let n = phone_in_country_into(phone.as_bytes(), d, &mut out)?;
                Some(String::from_utf8_lossy(&out[..n]).into_owned())
            })
            .unwrap_or_else(|| national.clone());
        assert_eq!(got, want, "{country:?} {phone:?} ({national})");
    }

    #[test]
    fn national_numbers_become_international_with_their_rows_country() {
        check("France", "01 42 68 53 00", "+33142685300");
        check("FR", "01.42.68.53.00", "+33142685300");
        check(" fra ", "0142685300", "+33142685300");
        check("法国", "01 42 68 53 00", "+33142685300");
        check("United Kingdom", "(0171) 555-2282", "+441715552282");
        check("U.K.", "020 7946 0958", "+442079460958");
        check("Deutschland", "030 12345678", "+493012345678");
        check("Italia", "06 6982 1234", "+390669821234");
        check("Italy", "393 123 4567", "+393931234567");
        check("Spain", "912 345 678", "+34912345678");
        check("Japan", "03-1234-5678", "+81312345678");
        check("Brazil", "(11) 3456-7890", "+551134567890");
        check("Sweden", "08-123 456 78", "+46812345678");
        check("Norway", "22 12 34 56", "+4722123456");
        // International already, written without the `+`, or with 00.
        check("France", "33 1 42 68 53 00", "+33142685300");
        check("DE", "0049 30 12345678", "+493012345678");
        // E.164 by its shape whatever the country column says.
        check("USA", "(415) 555-0100", "+14155550100");
        check("中国", "010-12345678", "+861012345678");
        // A 7-digit local number has no area code to make it whole: left as written.
        check("Canada", "555-0100", "5550100");
        // No such country, or no country at all.
        check("Narnia", "01 42 68 53 00", "0142685300");
        check("", "01 42 68 53 00", "0142685300");
    }
}
