//! HR import: a CSV export from the HR system (who resigned, when notice was given, their
//! last working day) schedules each leaver's offboarding for the end of their last day and
//! marks them departing from their notice date. A bad row is reported by line number and the
//! good rows still apply; importing the same file again changes nothing.

use crate::config::Config;
use crate::offboard::{Actor, OffboardError, Request};
use crate::store::Store;
use holdfast_shared::classify::record::header_key;
use holdfast_shared::classify::{RowSink, TableReader, TextDecoder};
use holdfast_shared::time::UnixMs;
use serde::Serialize;
use std::io::Read;
use std::path::Path;

/// Largest HR file read.
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Rows read at most.
const MAX_ROWS: usize = 1_000_000;
/// Default look-back for offboardings scheduled by an import.
const LOOKBACK_MS: i64 = 90 * 86_400_000;

/// Header names (as [`header_key`]s) for each column.
const USER: &[&str] = &[
    "user",
    "username",
    "login",
    "account",
    "email",
    "mail",
    "email地址",
    "邮箱",
    "账号",
    "用户名",
];
const NOTICE: &[&str] = &[
    "resignationdate",
    "noticedate",
    "resigned",
    "resignation",
    "离职申请日期",
    "提出离职日期",
];
const LAST_DAY: &[&str] = &[
    "lastworkingdate",
    "lastworkingday",
    "lastday",
    "effective",
    "effectivedate",
    "terminationdate",
    "最后工作日",
    "离职日期",
];

/// Why an import could not run at all (bad rows are reported, not errors).
#[derive(Debug, thiserror::Error)]
pub enum HrError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is larger than an HR export can be.
    #[error("{0}: larger than {MAX_FILE} bytes; not an HR export")]
    TooLarge(String),
    /// No header names a user column or a last-working-day column.
    #[error("{path}: no {what} column in the header (found: {header})")]
    Column {
        path: String,
        what: &'static str,
        header: String,
    },
    /// Offboarding failed for a reason other than the row (database, signing).
    #[error(transparent)]
    Offboard(#[from] OffboardError),
}

/// One row's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowOutcome {
    pub line: u64,
    pub user: String,
    /// `scheduled`, `unchanged` (already offboarding) or `error`.
    pub result: String,
    pub detail: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct HrImported {
    pub scheduled: u64,
    pub unchanged: u64,
    pub errors: u64,
    pub rows: Vec<RowOutcome>,
}

#[derive(Default)]
struct Rows {
    row: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
    line: u64,
}

impl RowSink for Rows {
    fn field(&mut self, text: &[u8]) {
        if self.row.len() < 256 {
            self.row
                .push(String::from_utf8_lossy(text.trim_ascii()).into_owned());
        }
    }

    fn end_record(&mut self) {
        self.line += 1;
        let row = std::mem::take(&mut self.row);
        if self.rows.len() < MAX_ROWS && row.iter().any(|c| !c.is_empty()) {
            self.rows.push((self.line, row));
        }
    }
}

/// A date: `YYYY-MM-DD` or `YYYY/MM/DD` (the start of that day, UTC), or an RFC 3339 time.
pub fn parse_date(v: &str) -> Option<UnixMs> {
    let v = v.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Some(UnixMs((t.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    let day = v.split([' ', 'T']).next()?;
    let parts: Vec<&str> = day.split(['-', '/', '.']).collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(UnixMs(date.midnight().assume_utc().unix_timestamp() * 1000))
}

fn column(header: &[String], names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|h| names.contains(&header_key(h).as_str()))
}

/// The enrolled user an HR identifier stands for: itself, or the local part of an email.
fn known_user(store: &Store, v: &str) -> Result<Option<String>, OffboardError> {
    if store.user_known(v)? {
        return Ok(Some(v.to_string()));
    }
    if let Some((local, _)) = v.split_once('@') {
        if store.user_known(local)? {
            return Ok(Some(local.to_string()));
        }
    }
    Ok(None)
}

/// Imports an HR export: each good row schedules the user's offboarding for the end of
/// their last working day (UTC) with notice from their resignation date.
pub fn import(
    config: &Config,
    store: &mut Store,
    file: &Path,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<HrImported, HrError> {
    let shown = file.display().to_string();
    let io = |source| HrError::Io {
        path: shown.clone(),
        source,
    };
    let f = std::fs::File::open(file).map_err(io)?;
    if f.metadata().map_err(io)?.len() > MAX_FILE {
        return Err(HrError::TooLarge(shown));
    }
    let mut bytes = Vec::new();
    f.take(MAX_FILE).read_to_end(&mut bytes).map_err(io)?;
    let mut rows = Rows::default();
    let mut decoder = TextDecoder::new();
    let mut table = TableReader::new(None);
    decoder.feed(&bytes, &mut |t| table.feed(t, &mut rows));
    decoder.finish(&mut |t| table.feed(t, &mut rows));
    table.finish(&mut rows);
    let mut it = rows.rows.into_iter();
    let Some((_, header)) = it.next() else {
        return Err(HrError::Column {
            path: shown,
            what: "user",
            header: String::new(),
        });
    };
    let missing = |what| HrError::Column {
        path: shown.clone(),
        what,
        header: header.join(", "),
    };
    let user_col = column(&header, USER).ok_or_else(|| missing("user (user, email, login)"))?;
    let last_col = column(&header, LAST_DAY)
        .ok_or_else(|| missing("last working day (last_working_date, last_day, effective)"))?;
    let notice_col = column(&header, NOTICE);
    let mut out = HrImported {
        scheduled: 0,
        unchanged: 0,
        errors: 0,
        rows: Vec::new(),
    };
    for (line, row) in it {
        let cell = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let raw_user = cell(user_col).to_string();
        let outcome = |result: &str, detail: String| RowOutcome {
            line,
            user: raw_user.clone(),
            result: result.to_string(),
            detail,
        };
        let Some(last_day) = parse_date(cell(last_col)) else {
            out.errors += 1;
            out.rows.push(outcome(
                "error",
                format!(
                    "{}: `{}` is not a date (YYYY-MM-DD)",
                    header[last_col],
                    cell(last_col)
                ),
            ));
            continue;
        };
        let notice = match notice_col.map(cell).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => match parse_date(v) {
                Some(t) => Some(t),
                None => {
                    out.errors += 1;
                    let col = notice_col.map(|i| header[i].as_str()).unwrap_or_default();
                    out.rows.push(outcome(
                        "error",
                        format!("{col}: `{v}` is not a date (YYYY-MM-DD)"),
                    ));
                    continue;
                }
            },
        };
        let Some(user) = known_user(store, &raw_user)? else {
            out.errors += 1;
            out.rows.push(outcome(
                "error",
                format!("unknown user `{raw_user}`: no device or enrollment token was ever issued to them"),
            ));
            continue;
        };
        // The offboarding takes effect when the last working day is over.
        let effective_ms = if cell(last_col).len() <= 10 {
            last_day + 86_400_000
        } else {
            last_day
        };
        let started = crate::offboard::start(
            config,
            store,
            &Request {
                user: user.clone(),
                effective_ms: Some(effective_ms),
                lookback_ms: LOOKBACK_MS,
                reason: format!("HR import {} line {line}", file.display()),
                notice_ms: notice,
                successor: None,
            },
            actor,
            now_ms,
        );
        let started = match started {
            Err(e @ crate::offboard::OffboardError::EffectiveChanged { .. }) => {
                out.errors += 1;
                out.rows.push(outcome("error", e.to_string()));
                continue;
            }
            other => other?,
        };
        if started.started {
            out.scheduled += 1;
            out.rows.push(outcome(
                "scheduled",
                format!(
                    "{user}: offboarding effective {}",
                    crate::fmt_ms(started.effective_ms)
                ),
            ));
        } else {
            out.unchanged += 1;
            out.rows.push(outcome(
                "unchanged",
                format!("{user}: already being offboarded"),
            ));
        }
    }
    Ok(out)
}

/// Imports `schedule.file` at start and whenever its content changes (checked every
/// `schedule.every`), until `shutdown` turns true. Outcomes are logged; bad rows by line.
pub async fn run_schedule(config: Config, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(schedule) = config.hr.clone() else {
        return;
    };
    let mut last: Option<[u8; 32]> = None;
    loop {
        let cfg = config.clone();
        let file = schedule.file.clone();
        let seen = last;
        let outcome = tokio::task::spawn_blocking(
            move || -> Result<Option<([u8; 32], HrImported)>, HrError> {
                use sha2::Digest;
                let io = |source| HrError::Io {
                    path: file.display().to_string(),
                    source,
                };
                let mut f = std::fs::File::open(&file).map_err(io)?;
                let mut h = sha2::Sha256::new();
                std::io::copy(&mut (&mut f).take(MAX_FILE), &mut h).map_err(io)?;
                let digest: [u8; 32] = h.finalize().into();
                if seen == Some(digest) {
                    return Ok(None);
                }
                let mut store = Store::open(&cfg.db_path()).map_err(OffboardError::from)?;
                let actor = Actor {
                    who: "hr-schedule".into(),
                    origin: format!("collector ({})", file.display()),
                };
                Ok(Some((
                    digest,
                    import(&cfg, &mut store, &file, &actor, crate::now_ms())?,
                )))
            },
        )
        .await;
        match outcome {
            Ok(Ok(Some((digest, r)))) => {
                last = Some(digest);
                tracing::info!(
                    file = %schedule.file.display(),
                    scheduled = r.scheduled,
                    unchanged = r.unchanged,
                    errors = r.errors,
                    "HR export imported"
                );
                for row in r.rows.iter().filter(|r| r.result == "error") {
                    tracing::warn!(line = row.line, user = %row.user, detail = %row.detail, "HR export row refused");
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HR export not imported; will try again"),
            Err(e) => tracing::warn!(error = %e, "HR import task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(schedule.every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_forms_hr_systems_write() {
        assert_eq!(parse_date("2026-12-01"), Some(UnixMs(1_796_083_200_000)));
        assert_eq!(parse_date("2026/12/01"), Some(UnixMs(1_796_083_200_000)));
        assert_eq!(
            parse_date("2026-12-01T08:00:00Z"),
            Some(UnixMs(1_796_112_000_000))
        );
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("next week"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_apply() {
        let (dir, config, mut store) = crate::store::fixtures::configured();
        for u in ["kim", "lee"] {
            store
                .add_token(
                    &format!("t-{u}"),
                    u,
                    UnixMs(1),
                    UnixMs(2),
                    &crate::Actor::test(),
                )
                .unwrap();
        }
        let file = dir.path().join("hr.csv");
        std::fs::write(
            &file,
            "Email,Resignation Date,Last Working Date\nkim@corp.example,2026-11-20,2026-12-01\nnobody@corp.example,2026-11-20,2026-12-01\nlee,2026-11-21,someday\n",
        )
        .unwrap();
        let actor = Actor {
            who: "cli:test".into(),
            origin: "cli@here".into(),
        };
        let now = 1_795_305_600_000; // 2026-11-22
        let r = import(&config, &mut store, &file, &actor, UnixMs(now)).unwrap();
        let got: Vec<(u64, &str)> = r.rows.iter().map(|o| (o.line, o.result.as_str())).collect();
        assert_eq!(got, [(2, "scheduled"), (3, "error"), (4, "error")]);
        assert!(r.rows[1]
            .detail
            .contains("unknown user `nobody@corp.example`"));
        assert_eq!(
            r.rows[2].detail,
            "Last Working Date: `someday` is not a date (YYYY-MM-DD)"
        );
        let off = store.offboarding("kim").unwrap().unwrap();
        // Effective at the end of the last working day; departing since the notice date.
        assert_eq!(off.effective_ms, UnixMs(1_796_083_200_000 + 86_400_000));
        assert_eq!(off.notice_ms, UnixMs(1_795_132_800_000));
        // Again: nothing changes.
        let again = import(&config, &mut store, &file, &actor, UnixMs(now)).unwrap();
        assert_eq!((again.scheduled, again.unchanged, again.errors), (0, 1, 2));
        // A file without a last-day column is refused as a whole, naming what it found.
        std::fs::write(&file, "Email,Department\nkim,Sales\n").unwrap();
        let e = import(&config, &mut store, &file, &actor, UnixMs(now))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no last working day") && e.contains("Email, Department"),
            "{e}"
        );
    }
}
