//! Moments in time as a type: [`UnixMs`], milliseconds since the Unix epoch (UTC). Every
//! stored, sent and compared moment is one, so a moment cannot be mistaken for a count or a
//! length of time (those stay plain numbers of milliseconds or `Duration`s). It is sent,
//! stored and written as the plain number (serde, SQL and `Display` see an `i64`); people are
//! shown `rfc3339()`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A moment: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The epoch itself: "never" where a moment is required.
    pub const EPOCH: UnixMs = UnixMs(0);

    /// The milliseconds since the epoch.
    pub fn ms(self) -> i64 {
        self.0
    }

    /// Milliseconds from `earlier` to this moment (negative when `earlier` is later).
    pub fn since(self, earlier: UnixMs) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 in UTC to the second (`2026-12-02T05:31:36Z`): the one way moments are shown
    /// to people. Moments before the epoch show as the epoch.
    pub fn rfc3339(self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }

    /// An RFC 3339 time (`2026-12-01T18:00:00Z`, the `T` or zone may be left out: UTC), or
    /// `None` when it is not one or is before the epoch.
    pub fn parse_rfc3339(s: &str) -> Option<UnixMs> {
        let t = humantime::parse_rfc3339_weak(s).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(UnixMs(i64::try_from(d.as_millis()).ok()?))
    }

    /// This moment plus a `Duration` (saturating).
    pub fn plus(self, d: std::time::Duration) -> UnixMs {
        self + i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// This moment minus a `Duration` (saturating).
    pub fn minus(self, d: std::time::Duration) -> UnixMs {
        self - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Later by this many milliseconds (saturating).
impl Add<i64> for UnixMs {
    type Output = UnixMs;
    fn add(self, ms: i64) -> UnixMs {
        UnixMs(self.0.saturating_add(ms))
    }
}

impl AddAssign<i64> for UnixMs {
    fn add_assign(&mut self, ms: i64) {
        *self = *self + ms;
    }
}

/// Earlier by this many milliseconds (saturating).
impl Sub<i64> for UnixMs {
    type Output = UnixMs;
    fn sub(self, ms: i64) -> UnixMs {
        UnixMs(self.0.saturating_sub(ms))
    }
}

/// The milliseconds between two moments.
impl Sub<UnixMs> for UnixMs {
    type Output = i64;
    fn sub(self, earlier: UnixMs) -> i64 {
        self.since(earlier)
    }
}

/// The plain number of milliseconds, as kept in text (the agent's status values).
impl std::str::FromStr for UnixMs {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<UnixMs, Self::Err> {
        s.trim().parse().map(UnixMs)
    }
}

impl From<i64> for UnixMs {
    fn from(ms: i64) -> UnixMs {
        UnixMs(ms)
    }
}

/// The plain number of milliseconds, as it is kept in text (status values, records); people
/// are shown [`UnixMs::rfc3339`].
impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(feature = "sql")]
mod sql {
    //! The SQL form: an INTEGER column of milliseconds.
    use super::UnixMs;
    use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    impl ToSql for UnixMs {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.0))
        }
    }

    impl FromSql for UnixMs {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<UnixMs> {
            i64::column_result(value).map(UnixMs)
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for UnixMs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnixMs".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "integer",
            "format": "int64",
            "description": "milliseconds since the Unix epoch (UTC)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: how a moment is shown, and that its text form is the number.
    fn check(t: UnixMs, want: &str) {
        assert_eq!(t.rfc3339(), want);
        assert_eq!(t.to_string().parse::<UnixMs>(), Ok(t));
    }

    #[test]
    fn moments_print_as_rfc3339_and_count_in_milliseconds() {
        check(UnixMs(0), "1970-01-01T00:00:00Z");
        check(UnixMs(1_796_189_496_999), "2026-12-02T05:31:36Z");
        check(UnixMs(-5), "1970-01-01T00:00:00Z");
        assert_eq!(
            UnixMs::parse_rfc3339("2026-12-02T05:31:36Z"),
            Some(UnixMs(1_796_189_496_000))
        );
        assert_eq!(
            UnixMs::parse_rfc3339("1970-01-01 00:00:02"),
            Some(UnixMs(2_000))
        );
        assert_eq!(UnixMs::parse_rfc3339("tomorrow"), None);
        let t = UnixMs(10_000);
        assert_eq!(t + 500, UnixMs(10_500));
        assert_eq!(t - UnixMs(4_000), 6_000);
        assert_eq!(UnixMs(4_000).since(t), -6_000);
        assert_eq!(t.plus(std::time::Duration::from_secs(2)), UnixMs(12_000));
        assert_eq!(UnixMs(i64::MAX) + 1, UnixMs(i64::MAX), "saturates");
        // Sent and stored as the plain number.
        assert_eq!(
            rmp_serde::to_vec(&t).unwrap(),
            rmp_serde::to_vec(&10_000i64).unwrap()
        );
        assert_eq!(serde_json::to_string(&t).unwrap(), "10000");
    }
}
