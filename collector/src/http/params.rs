//! Query parameters: each endpoint declares the ones it takes ([`Param`]); a request is
//! checked against that list before anything runs, so an unknown or malformed parameter is a
//! 400 naming it. The same declarations feed the OpenAPI document.

use super::ApiError;
use holdfast_shared::time::UnixMs;
use std::collections::BTreeMap;

/// What a parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Any text up to 512 bytes.
    Text,
    /// An integer within bounds.
    Int { min: i64, max: i64 },
    /// RFC 3339, milliseconds since the epoch, or a duration before now (`24h`, `30d`).
    Time,
    /// One of these values.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these values.
    ListOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
}

/// A declared query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

impl Param {
    /// A parameter of `kind`.
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Param {
        Param { name, kind, doc }
    }

    /// A free-text parameter.
    pub const fn text(name: &'static str, doc: &'static str) -> Param {
        Param::new(name, Kind::Text, doc)
    }
}

/// A request's parameters, checked against the declaration.
#[derive(Debug, Default)]
pub struct Query {
    vals: BTreeMap<&'static str, String>,
    now_ms: UnixMs,
}

/// Longest value accepted for any parameter.
const MAX_VALUE: usize = 512;

fn bad(name: &str, msg: String) -> ApiError {
    ApiError::BadRequest(format!("query parameter `{name}`: {msg}"))
}

/// Parses a time value (see [`Kind::Time`]).
pub fn parse_time(v: &str, now_ms: UnixMs) -> Option<UnixMs> {
    if let Ok(ms) = v.parse::<i64>() {
        return Some(UnixMs(ms));
    }
    if let Some(t) = UnixMs::parse_rfc3339(v) {
        return Some(t);
    }
    humantime::parse_duration(v).ok().map(|d| now_ms.minus(d))
}

impl Query {
    /// Checks `raw` (the URL's query string) against `declared`.
    pub fn parse(raw: Option<&str>, declared: &[Param], now_ms: UnixMs) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))?;
        let mut q = Query {
            vals: BTreeMap::new(),
            now_ms,
        };
        for (k, v) in pairs {
            let Some(p) = declared.iter().find(|p| p.name == k) else {
                let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{}`; this endpoint takes: {}",
                    k.chars().take(64).collect::<String>(),
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if v.is_empty() {
                continue;
            }
            if v.len() > MAX_VALUE {
                return Err(bad(p.name, format!("longer than {MAX_VALUE} bytes")));
            }
            match p.kind {
                Kind::Text => {}
                Kind::Int { min, max } => match v.parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => {}
                    _ => {
                        return Err(bad(
                            p.name,
                            format!("`{v}` is not an integer from {min} to {max}"),
                        ))
                    }
                },
                Kind::Time => {
                    if parse_time(&v, now_ms).is_none() {
                        return Err(bad(
                            p.name,
                            format!("`{v}` is not a time (RFC 3339, epoch milliseconds, or a duration such as 24h)"),
                        ));
                    }
                }
                Kind::OneOf(allowed) => {
                    if !allowed.contains(&v.as_str()) {
                        return Err(bad(
                            p.name,
                            format!("`{v}` is not one of {}", allowed.join(", ")),
                        ));
                    }
                }
                Kind::ListOf(allowed) => {
                    for item in v.split(',') {
                        if !allowed.contains(&item.trim()) {
                            return Err(bad(
                                p.name,
                                format!("`{}` is not one of {}", item.trim(), allowed.join(", ")),
                            ));
                        }
                    }
                }
                Kind::Bool => {
                    if v != "true" && v != "false" {
                        return Err(bad(p.name, format!("`{v}` is not true or false")));
                    }
                }
            }
            if q.vals.insert(p.name, v).is_some() {
                return Err(bad(p.name, "given more than once".into()));
            }
        }
        Ok(q)
    }

    /// A text value.
    pub fn text(&self, name: &str) -> Option<String> {
        self.vals.get(name).cloned()
    }

    /// An integer value (already range-checked).
    pub fn int(&self, name: &str) -> Option<i64> {
        self.vals.get(name).and_then(|v| v.parse().ok())
    }

    /// A time value, in milliseconds since the epoch.
    pub fn time(&self, name: &str) -> Option<UnixMs> {
        self.vals.get(name).and_then(|v| parse_time(v, self.now_ms))
    }

    /// A list value (empty when absent).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.vals
            .get(name)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    }

    /// A boolean value (false when absent).
    pub fn flag(&self, name: &str) -> bool {
        self.vals.get(name).is_some_and(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[Param] = &[
        Param {
            name: "limit",
            kind: Kind::Int { min: 1, max: 500 },
            doc: "",
        },
        Param {
            name: "severity",
            kind: Kind::ListOf(&["critical", "high"]),
            doc: "",
        },
        Param {
            name: "since",
            kind: Kind::Time,
            doc: "",
        },
        Param {
            name: "sort",
            kind: Kind::OneOf(&["severity", "newest"]),
            doc: "",
        },
    ];

    fn check(raw: &str, want: Result<&str, &str>) {
        match (Query::parse(Some(raw), DECLARED, UnixMs(100_000_000)), want) {
            (Ok(q), Ok(expect)) => assert_eq!(format!("{:?}", q.vals), expect, "{raw}"),
            (Err(e), Err(needle)) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{raw}: {msg:?} lacks {needle:?}")
            }
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parameters_are_checked_and_errors_name_them() {
        check(
            "limit=5&sort=newest",
            Ok(r#"{"limit": "5", "sort": "newest"}"#),
        );
        check(
            "severity=critical,high",
            Ok(r#"{"severity": "critical,high"}"#),
        );
        check("limit=", Ok("{}"));
        check(
            "limit=0",
            Err("`limit`: `0` is not an integer from 1 to 500"),
        );
        check("limit=ten", Err("`limit`"));
        check(
            "severity=urgent",
            Err("`severity`: `urgent` is not one of critical, high"),
        );
        check("sort=oldest", Err("`sort`"));
        check("since=yesterday", Err("`since`"));
        check(
            "since=2026-01-01T00:00:00Z",
            Ok(r#"{"since": "2026-01-01T00:00:00Z"}"#),
        );
        check("colour=red", Err("unknown query parameter `colour`"));
        check("limit=1&limit=2", Err("given more than once"));
    }

    #[test]
    fn times_are_rfc3339_epoch_ms_or_a_duration_before_now() {
        assert_eq!(parse_time("1500", UnixMs(0)), Some(UnixMs(1500)));
        assert_eq!(
            parse_time("1970-01-01T00:00:02Z", UnixMs(0)),
            Some(UnixMs(2000))
        );
        assert_eq!(parse_time("1h", UnixMs(3_600_000 + 5)), Some(UnixMs(5)));
        assert_eq!(parse_time("soon", UnixMs(0)), None);
    }
}
