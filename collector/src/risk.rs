//! Each user's risk: one score from 0 to 100 and the signals behind it, over the last 30
//! days — alerts by severity, export → archive → way-out sequences, volume spikes against the
//! user's own baseline, bulk reads of customer files, uploads of them through a browser, mail
//! client or chat app, print jobs of them, and a notice given. The CLI (`users
//! list`), the API (`/api/v1/users`) and the console's Users page all show this one ranking.

use crate::store::{RiskSignals, Store, StoreError, UserRow};
use holdfast_shared::time::UnixMs;
use serde::Serialize;

/// The window risk looks back over.
pub const WINDOW_MS: i64 = 30 * 86_400_000;

/// A user and their risk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UserRisk {
    pub user: String,
    /// 0 (nothing seen) to 100: see [`score`].
    pub score: u32,
    /// What drove the score, in words, strongest first.
    pub signals: Vec<String>,
    pub devices: u64,
    /// active, departing, offboarded or restored.
    pub state: String,
    /// Notice given and not yet effective.
    pub departing: bool,
    pub effective_ms: Option<UnixMs>,
    pub notice_ms: Option<UnixMs>,
    /// Alerts last seen in the last 30 days, by severity (false positives left out).
    pub alerts_30d: crate::store::BySeverity,
    /// Customer records in files that matched a rule, last 30 days.
    pub records_30d: u64,
    pub last_activity_ms: Option<UnixMs>,
}

/// The score and its reasons: 25 a critical alert, 10 a high one, 3 a medium one, 1 a low
/// one; on top, 15 an exfiltration sequence, 10 a volume spike, 10 a bulk read, 10 an upload
/// through a browser, mail client or chat app, 10 a print job of customer records; 20 for a
/// user who has given notice. At most 100.
pub fn score(s: &RiskSignals, departing: bool) -> (u32, Vec<String>) {
    let a = &s.alerts;
    let mut points = 25 * a.critical + 10 * a.high + 3 * a.medium + a.low;
    let mut why: Vec<(u64, String)> = Vec::new();
    // Each reason weighs what it adds, its alert included, so the strongest comes first.
    let mut say = |weight: u64, n: u64, text: String| {
        if n > 0 {
            why.push((weight * n, text));
        }
    };
    say(
        40,
        s.sequences,
        format!("{} export → archive → way-out sequence(s)", s.sequences),
    );
    say(
        20,
        s.volume_spikes,
        format!(
            "{} volume spike(s) against their own 30-day baseline (up to {} records in a day)",
            s.volume_spikes, s.volume_max
        ),
    );
    say(
        20,
        s.bulk_reads,
        format!("{} bulk read(s) of customer files", s.bulk_reads),
    );
    say(
        20,
        s.uploads,
        format!(
            "{} upload(s) of customer files (a browser, mail client or chat app)",
            s.uploads
        ),
    );
    say(
        20,
        s.prints,
        format!("{} print job(s) of customer records", s.prints),
    );
    say(
        20,
        s.bluetooth,
        format!("{} customer file(s) sent over Bluetooth", s.bluetooth),
    );
    points += 15 * s.sequences
        + 10 * s.volume_spikes
        + 10 * s.bulk_reads
        + 10 * s.uploads
        + 10 * s.prints
        + 10 * s.bluetooth;
    if departing {
        points += 20;
        why.push((20, "has given notice (departing)".into()));
    }
    let alerts = [
        (a.critical, "critical"),
        (a.high, "high"),
        (a.medium, "medium"),
        (a.low, "low"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, s)| format!("{n} {s}"))
    .collect::<Vec<_>>();
    if !alerts.is_empty() {
        why.push((
            25 * a.critical + 10 * a.high + 3 * a.medium + a.low,
            format!("alerts in 30 days: {}", alerts.join(", ")),
        ));
    }
    why.sort_by_key(|w| std::cmp::Reverse(w.0));
    (
        points.min(100) as u32,
        why.into_iter().map(|(_, t)| t).collect(),
    )
}

/// Every user with their risk, riskiest first.
pub fn users(store: &Store, now_ms: UnixMs) -> Result<Vec<UserRisk>, StoreError> {
    let since = now_ms - WINDOW_MS;
    let signals = store.risk_signals(since)?;
    let records = store.records_by_user(since)?;
    let mut out: Vec<UserRisk> = store
        .users(now_ms)?
        .into_iter()
        .map(|u: UserRow| {
            let (records_30d, last) = records.get(&u.user).copied().unwrap_or((0, 0));
            let s = signals.get(&u.user).copied().unwrap_or_default();
            let departing = u.state == "departing";
            let (score, signals) = score(&s, departing);
            UserRisk {
                score,
                signals,
                departing,
                alerts_30d: s.alerts,
                records_30d,
                last_activity_ms: (last > 0).then_some(UnixMs(last)),
                devices: u.devices,
                state: u.state,
                effective_ms: u.effective_ms,
                notice_ms: u.notice_ms,
                user: u.user,
            }
        })
        .collect();
    out.sort_by(|a, b| (b.score, b.records_30d, &a.user).cmp(&(a.score, a.records_30d, &b.user)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BySeverity;

    fn check(s: RiskSignals, departing: bool, want_score: u32, want_first: &str) {
        let (score, why) = score(&s, departing);
        assert_eq!(score, want_score, "{why:?}");
        assert_eq!(why.first().map(String::as_str).unwrap_or(""), want_first);
    }

    /// Signals with `high` and `critical` alerts in 30 days.
    fn alerts(high: u64, critical: u64) -> RiskSignals {
        RiskSignals {
            alerts: BySeverity {
                high,
                critical,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn signals_add_up_to_a_capped_score() {
        check(RiskSignals::default(), false, 0, "");
        check(alerts(1, 0), false, 10, "alerts in 30 days: 1 high");
        // A sequence (critical) is 25 + 15; departing adds 20.
        let sequence = RiskSignals {
            sequences: 1,
            ..alerts(0, 1)
        };
        check(
            sequence,
            true,
            60,
            "1 export → archive → way-out sequence(s)",
        );
        // Each counted route: two of them, on two high alerts, score 2 × 10 + 2 × 10.
        type Count = fn(&mut RiskSignals) -> &mut u64;
        let routes: [(Count, &str); 4] = [
            (|s| &mut s.bulk_reads, "2 bulk read(s) of customer files"),
            (
                |s| &mut s.uploads,
                "2 upload(s) of customer files (a browser, mail client or chat app)",
            ),
            (|s| &mut s.prints, "2 print job(s) of customer records"),
            (
                |s| &mut s.bluetooth,
                "2 customer file(s) sent over Bluetooth",
            ),
        ];
        for (count, says) in routes {
            let mut s = alerts(2, 0);
            *count(&mut s) = 2;
            check(s, false, 40, says);
        }
        check(alerts(0, 9), false, 100, "alerts in 30 days: 9 critical");
    }
}
