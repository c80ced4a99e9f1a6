//! Ingest: one batch of sealed events is one transaction, idempotent on `(device_id, seq)`;
//! each device's hash chain is checked (a gap, an edit, a changed resend, a restarted or
//! forked spool), rules' matches become alerts, and correlation runs on what was stored.

use super::crm::{departing_at, link_download};
use super::{
    correlate, notice_alerts, span, stored_hash, system_hit, system_rules, upsert_alert, Device,
    Hit, Store, StoreError,
};
use holdfast_shared::event::{Action, EventBody, SealedEvent, Severity};
use holdfast_shared::time::UnixMs;
use rusqlite::{params, OptionalExtension};

impl Store {
    /// Stores a batch from `device` in one transaction; events already stored are skipped.
    /// Checks each event's link to its predecessor and raises an alert on a gap, an edited
    /// event, or a resent event whose content changed. Returns how many events were new.
    pub fn ingest(
        &mut self,
        device: &Device,
        events: &[SealedEvent],
        now_ms: UnixMs,
    ) -> Result<usize, StoreError> {
        // IMMEDIATE: the write lock first, waiting on the busy timeout. A deferred
        // transaction that read before another connection (a forwarder, the API, a second
        // process) wrote would fail at its first write instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (first_seq, skew): (i64, Option<i64>) = tx.query_row(
            "SELECT first_seq, clock_skew_ms FROM devices WHERE id = ?1",
            [&device.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut sorted: Vec<&SealedEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.seq);
        let mut new = 0;
        // The device's chains: its own, then any stream opened for a spool that started over
        // or a second chain at the same sequence numbers.
        let mut streams: Vec<String> = vec![device.id.clone()];
        {
            let mut st = tx.prepare_cached(
                "SELECT stream FROM device_streams WHERE device_id = ?1 ORDER BY created_ms, stream",
            )?;
            for s in st.query_map([&device.id], |r| r.get::<_, String>(0))? {
                streams.push(s?);
            }
        }
        let mut last_stream: Option<String> = tx.query_row(
            "SELECT last_stream FROM devices WHERE id = ?1",
            [&device.id],
            |r| r.get(0),
        )?;
        for sealed in sorted {
            let seq = sealed.seq.min(i64::MAX as u64) as i64;
            let hash = sealed.hash();
            // Every channel alert of this event is high severity and about the device.
            let flag = |rule: &str, detail: &str| {
                upsert_alert(
                    &tx,
                    &system_hit(
                        &device.user,
                        &device.id,
                        rule,
                        Severity::High,
                        detail,
                        now_ms,
                        seq,
                    ),
                )
            };
            // Sent before and stored (on any chain): nothing to do.
            let mut known = false;
            for s in &streams {
                if stored_hash(&tx, s, seq)?
                    .flatten()
                    .is_some_and(|h| h == hash)
                {
                    known = true;
                    break;
                }
            }
            if known {
                continue;
            }
            // Which chain it continues: the one whose newest event it links to.
            let mut target: Option<String> = None;
            for s in &streams {
                let head: Option<(i64, Option<Vec<u8>>)> = tx
                    .query_row(
                        "SELECT seq, hash FROM events WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1",
                        [s],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((head_seq, Some(head_hash))) = head {
                    if head_seq + 1 == seq && head_hash == sealed.prev_hash {
                        target = Some(s.clone());
                        break;
                    }
                }
            }
            let mut opened = false;
            if target.is_none() && stored_hash(&tx, &device.id, seq)?.is_some() {
                // The device's own chain already holds other content at this number: a spool
                // that started over, or a second agent. Nothing is dropped: a new stream.
                let stream = format!("{}~{}", device.id, streams.len() + 1);
                let reset = seq == 1 && sealed.prev_hash == holdfast_shared::event::GENESIS;
                tx.execute(
                    "INSERT INTO device_streams (device_id, stream, kind, since_seq, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        device.id,
                        stream,
                        if reset { "reset" } else { "fork" },
                        seq,
                        now_ms
                    ],
                )?;
                let (rule, detail) = if reset {
                    (
                        system_rules::SPOOL_RESET,
                        format!("device {}: its spool started over (a new chain at seq 1); its events are kept as stream {stream}", device.id),
                    )
                } else {
                    (
                        system_rules::CHAIN_FORKED,
                        format!("device {}: two different events claim seq {seq} (a copied identity or a restored snapshot); both are kept, the second as stream {stream}", device.id),
                    )
                };
                flag(rule, &detail)?;
                streams.push(stream.clone());
                target = Some(stream);
                opened = true;
            }
            if let Some(t) = &target {
                if !opened && last_stream.as_deref().is_some_and(|l| l != t.as_str()) {
                    let detail = format!(
                        "device {}: two agents are sending as this device at once (chains {} and {t} both advance); the events of both are kept",
                        device.id,
                        last_stream.as_deref().unwrap_or_default()
                    );
                    upsert_alert(
                        &tx,
                        &system_hit(
                            &device.user,
                            &device.id,
                            system_rules::IDENTITY_CLONED,
                            Severity::Critical,
                            &detail,
                            now_ms,
                            seq,
                        ),
                    )?;
                }
            }
            let stream = target.unwrap_or_else(|| device.id.clone());
            if last_stream.as_deref() != Some(stream.as_str()) {
                tx.execute(
                    "UPDATE devices SET last_stream = ?2 WHERE id = ?1",
                    params![device.id, stream],
                )?;
                last_stream = Some(stream.clone());
            }
            let on_own_chain = stream == device.id;
            if on_own_chain && seq > first_seq {
                match stored_hash(&tx, &device.id, seq - 1)? {
                    Some(Some(h)) if h != sealed.prev_hash => flag(
                        system_rules::CHAIN_BROKEN,
                        &format!(
                            "event {seq} does not link to event {}: an event was edited on the device",
                            seq - 1
                        ),
                    )?,
                    Some(_) => {}
                    None => {
                        let below: Option<i64> = tx.query_row(
                            "SELECT MAX(seq) FROM events WHERE device_id = ?1 AND seq < ?2",
                            params![device.id, seq],
                            |r| r.get(0),
                        )?;
                        let from = below.map(|b| b + 1).unwrap_or(first_seq).max(first_seq);
                        flag(
                            system_rules::SEQUENCE_GAP,
                            &format!("events {from}..{} never arrived", seq - 1),
                        )?;
                    }
                }
            }
            let corrected = skew
                .map(|k| sealed.time_ms - k)
                .unwrap_or(sealed.time_ms)
                .min(now_ms);
            let body = match EventBody::from_bytes(&sealed.body) {
                Ok(b) => Some(b),
                Err(e) => {
                    flag(
                        system_rules::UNDECODABLE,
                        &format!("event {seq} does not decode: {e}"),
                    )?;
                    None
                }
            };
            let (kind, file) = match &body {
                Some(EventBody::File(f)) => ("file", Some(f)),
                Some(EventBody::Notice(n)) => (n.kind.as_str(), None),
                None => ("undecodable", None),
            };
            let rules: Vec<&str> = file
                .map(|f| f.rules.iter().map(|r| r.id.as_str()).collect())
                .unwrap_or_default();
            let findings = file
                .and_then(|f| f.summary.as_ref())
                .map(|s| serde_json::to_string(&s.findings).unwrap_or_default());
            tx.execute(
                "INSERT INTO events (device_id, seq, user, time_ms, received_ms, kind, action, path, old_path,
                     size, sha256, records, findings, rules, body, hash, prev_hash, corrected_ms,
                     destination, origin, process)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                params![
                    stream,
                    seq,
                    device.user,
                    sealed.time_ms,
                    now_ms,
                    kind,
                    file.map(|f| f.action.as_str()),
                    file.map(|f| f.path.as_str()),
                    file.and_then(|f| f.old_path.as_deref()),
                    file.and_then(|f| f.size).map(|s| s as i64),
                    file.and_then(|f| f.sha256.as_deref()),
                    file.and_then(|f| f.summary.as_ref()).map(|s| s.records as i64),
                    findings,
                    serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
                    sealed.body,
                    hash.to_vec(),
                    sealed.prev_hash,
                    corrected,
                    file.and_then(|f| f.destination.as_ref())
                        .and_then(|d| serde_json::to_string(d).ok()),
                    file.and_then(|f| f.origin.as_ref())
                        .and_then(|o| serde_json::to_string(o).ok()),
                    file.and_then(|f| f.process.as_ref())
                        .and_then(|p| serde_json::to_string(p).ok()),
                ],
            )?;
            let event_id = tx.last_insert_rowid();
            new += 1;
            if let Some(EventBody::Notice(n)) = &body {
                notice_alerts(&tx, device, n, corrected, now_ms, seq)?;
                if n.kind == "spool_dropped" {
                    let counts = n
                        .counts
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let d = format!(
                        "the agent's spool was full and it dropped {} events ({counts})",
                        n.count
                    );
                    let mut h = system_hit(
                        &device.user,
                        &device.id,
                        system_rules::SPOOL_OVERFLOW,
                        Severity::Medium,
                        &d,
                        now_ms,
                        seq,
                    );
                    h.records = n.count as i64;
                    h.time_ms = corrected;
                    upsert_alert(&tx, &h)?;
                }
            }
            let Some(f) = file else { continue };
            let at = correlate::Ingested {
                device,
                seq,
                f,
                time_ms: corrected,
            };
            let records = f.summary.as_ref().map(|s| s.records).unwrap_or(0) as i64;
            // From an offboarding's effective time on, any customer file the user touches is
            // critical; between notice and that time their alerts rise in severity.
            let (raise, offboarded) = departing_at(&tx, &device.user, corrected)?;
            if offboarded && (records > 0 || !f.rules.is_empty()) {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: system_rules::OFFBOARDED_ACCESS,
                        severity: Severity::Critical,
                        detail: "customer file touched after the user's offboarding took effect",
                        ..Hit::on_file(&at)
                    },
                )?;
            }
            // A customer file that lands fresh may be the download of a CRM export.
            let fresh = matches!(f.action, Action::Created | Action::Renamed) && f.origin.is_none();
            let link = if fresh && !f.rules.is_empty() {
                link_download(
                    &tx,
                    event_id,
                    &device.user,
                    &f.path,
                    corrected,
                    self.correlation.window_ms,
                )?
            } else {
                None
            };
            let bulk_detail = f
                .bulk
                .as_ref()
                .map(|b| bulk_read_detail(b, f.process.as_deref()))
                .or(link);
            for m in &f.rules {
                upsert_alert(
                    &tx,
                    &Hit {
                        rule_id: &m.id,
                        severity: m.severity.raised(raise),
                        detail: bulk_detail.as_deref().unwrap_or(""),
                        ..Hit::on_file(&at)
                    },
                )?;
            }
            self.correlation.sequence(&tx, &at)?;
            self.correlation.volume(&tx, &at)?;
        }
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1",
            params![device.id, now_ms],
        )?;
        tx.commit()?;
        Ok(new)
    }
}

/// What a bulk-read alert says: who opened how many customer files, where, how fast.
pub(super) fn bulk_read_detail(
    b: &holdfast_shared::event::BulkRead,
    p: Option<&holdfast_shared::event::Process>,
) -> String {
    let who = match p {
        // The inotify fallback: the platform said a file was opened, not by whom.
        Some(p) if p.pid == 0 && p.exe.is_none() => format!(
            "a program of {} (which one is unknown: the device monitors reads without fanotify)",
            p.user.as_deref().unwrap_or("the device's user")
        ),
        Some(p) => {
            let exe = p.exe.as_deref().unwrap_or("an unknown program");
            let uid = p.uid.map(|u| format!(", uid {u}")).unwrap_or_default();
            let user = p
                .user
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            format!("{exe} (pid {}{uid}{user})", p.pid)
        }
        None => "the device's user".to_string(),
    };
    format!(
        "{who} opened {} customer files under {} within {} (counted by {})",
        b.files,
        b.folder,
        span(b.within_s.saturating_mul(1000).min(i64::MAX as u64) as i64),
        b.by
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::*;
    use crate::store::*;
    use holdfast_shared::event::{AgentNotice, EventBody, SealedEvent, Severity, GENESIS};

    /// A user who handles ten times their own daily average of customer records in a day
    /// raises one volume alert; a user with less than a week of history is not judged.
    #[test]
    fn a_day_ten_times_the_users_own_average_is_a_volume_spike() {
        let (_dir, mut s, d) = open_with_device();
        const DAY: i64 = 86_400_000;
        let t0 = 1_700_000_000_000i64;
        // One 200-record export a day for 20 days, then eleven in one morning.
        let mut times: Vec<i64> = (0..20).map(|day| t0 + day * DAY).collect();
        times.extend((0..11).map(|i| t0 + 21 * DAY + i * 60_000));
        let mut prev = GENESIS;
        let mut batch = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let body = file_body(&format!("/exports/{i}.csv"), &[("r", Severity::Low)]);
            let e = SealedEvent::seal(i as u64 + 1, UnixMs(*t), "ada", prev, &body).unwrap();
            prev = e.hash();
            batch.push(e);
        }
        // Before the eleven, nothing; after them, one alert with the day's total.
        s.ingest(&d, &batch[..20], UnixMs(t0 + 20 * DAY)).unwrap();
        let spikes = |s: &Store| -> Vec<Alert> {
            s.alerts(100)
                .unwrap()
                .into_iter()
                .filter(|a| a.rule_id == system_rules::VOLUME_SPIKE)
                .collect()
        };
        assert!(spikes(&s).is_empty());
        s.ingest(&d, &batch[20..], UnixMs(t0 + 22 * DAY)).unwrap();
        let v = spikes(&s);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].records, 2200);
        assert_eq!(v[0].severity, Severity::High);
        assert!(
            v[0].detail
                .starts_with("2200 customer records handled in the 24 hours to")
                && v[0]
                    .detail
                    .contains("12× the daily average of the 20 days before (190)"),
            "{}",
            v[0].detail
        );
        // The user's risk shows it.
        let risk = crate::risk::users(&s, UnixMs(t0 + 22 * DAY)).unwrap();
        let ada = risk.iter().find(|u| u.user == "ada").unwrap();
        assert!(ada.score >= 30, "{ada:?}");
        assert!(
            ada.signals.iter().any(|s| s
                .starts_with("1 volume spike(s) against their own 30-day baseline (up to 2200")),
            "{ada:?}"
        );

        // The same morning for a user seen only three days: not judged.
        let (_dir2, mut s2, d2) = open_with_device();
        let mut prev = GENESIS;
        let mut batch = Vec::new();
        let times: Vec<i64> = (0..3)
            .map(|day| t0 + day * DAY)
            .chain((0..11).map(|i| t0 + 4 * DAY + i * 60_000))
            .collect();
        for (i, t) in times.iter().enumerate() {
            let body = file_body(&format!("/exports/{i}.csv"), &[("r", Severity::Low)]);
            let e = SealedEvent::seal(i as u64 + 1, UnixMs(*t), "ada", prev, &body).unwrap();
            prev = e.hash();
            batch.push(e);
        }
        s2.ingest(&d2, &batch, UnixMs(t0 + 5 * DAY)).unwrap();
        assert!(spikes(&s2).is_empty());
    }

    #[test]
    fn ingest_is_idempotent_and_aggregates_alerts() {
        let (_dir, mut s, d) = open_with_device();
        let batch = chain(&[
            file_body("/x.csv", &[("r", Severity::High)]),
            file_body("/y.csv", &[]),
            file_body("/x.csv", &[("r", Severity::Critical)]),
        ]);
        assert_eq!(s.ingest(&d, &batch, UnixMs(5_000)).unwrap(), 3);
        assert_eq!(s.ingest(&d, &batch, UnixMs(6_000)).unwrap(), 0);
        assert_eq!(s.events(100).unwrap().len(), 3);
        assert_eq!(s.last_seq("dev-1").unwrap(), 3);
        let alerts = s.alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].event_count, alerts[0].severity.as_str()),
            (2, "critical")
        );
        assert!(system_alerts(&s).is_empty());
        assert_eq!(s.device_by_cert("ff").unwrap().map(|d| d.last_seq), Some(3));
        assert!(!s.is_revoked("dev-1").unwrap());
        assert!(s
            .revoke_device("dev-1", UnixMs(10), &crate::Actor::test())
            .unwrap());
        assert!(s
            .revoke_device("dev-1", UnixMs(20), &crate::Actor::test())
            .unwrap());
        assert!(s.is_revoked("dev-1").unwrap());
        assert_eq!(
            s.device_by_cert("ff").unwrap().and_then(|d| d.revoked_ms),
            Some(UnixMs(10))
        );
        assert!(!s
            .revoke_device("nope", UnixMs(10), &crate::Actor::test())
            .unwrap());
    }

    #[test]
    fn departing_users_alerts_rise_and_access_after_offboarding_is_critical() {
        let (_dir, mut s, d) = open_with_device();
        s.start_offboarding(
            &OffboardRow {
                user: "ada".into(),
                started_ms: UnixMs(1_500),
                effective_ms: UnixMs(2_500),
                lookback_ms: 1_000,
                reason: String::new(),
                restored_ms: None,
                notice_ms: UnixMs(1_500),
                raise_levels: 1,
                successor: None,
            },
            &[],
            &[],
            &offboard::AuditEntry {
                id: 0,
                time_ms: UnixMs(1_500),
                actor: "t".into(),
                origin: "t".into(),
                action: "offboard".into(),
                target: "ada".into(),
                detail: String::new(),
            },
        )
        .unwrap();
        // Events at 1 s (before notice), 2 s (departing), 3 s (after the effective time).
        let batch = chain(&[
            file_body("/a.csv", &[("r", Severity::High)]),
            file_body("/b.csv", &[("r", Severity::High)]),
            file_body("/c.csv", &[("r", Severity::Medium)]),
        ]);
        s.ingest(&d, &batch, UnixMs(10_000)).unwrap();
        let mut got: Vec<(String, String, String)> = s
            .alerts(10)
            .unwrap()
            .into_iter()
            .map(|a| (a.path, a.rule_id, a.severity.as_str().to_string()))
            .collect();
        got.sort();
        let want: Vec<(String, String, String)> = [
            ("/a.csv", "r", "high"),
            ("/b.csv", "r", "critical"),
            ("/c.csv", "holdfast.offboarded_access", "critical"),
            ("/c.csv", "r", "medium"),
        ]
        .iter()
        .map(|(p, r, sev)| (p.to_string(), r.to_string(), sev.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    /// One `check()` for the chain: ingest `batches` in order, compare the system alerts.
    fn check_chain(batches: Vec<Vec<SealedEvent>>, want: &[(&str, &str)]) {
        let (_dir, mut s, d) = open_with_device();
        for b in batches {
            s.ingest(&d, &b, UnixMs(10_000)).unwrap();
        }
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(system_alerts(&s), want);
    }

    #[test]
    fn the_chain_catches_gaps_edits_and_changed_resends() {
        let bodies: Vec<EventBody> = (0..6).map(|i| file_body(&format!("/f{i}"), &[])).collect();
        let good = chain(&bodies);
        // Intact, in any batching: nothing.
        check_chain(vec![good[..2].to_vec(), good[2..].to_vec()], &[]);
        // Rows 3 and 4 deleted from the spool.
        let mut gap = good.clone();
        gap.drain(2..4);
        check_chain(
            vec![gap],
            &[(system_rules::SEQUENCE_GAP, "events 3..4 never arrived")],
        );
        // Row 3's body edited on the device: event 4 no longer links.
        let mut edited = good.clone();
        edited[2].body = file_body("/innocent.txt", &[]).to_bytes().unwrap();
        check_chain(
            vec![edited],
            &[(
                system_rules::CHAIN_BROKEN,
                "event 4 does not link to event 3: an event was edited on the device",
            )],
        );
        // Event 2 sent again after its ack with other content: a second chain (a restored
        // snapshot, a copied identity), kept beside the first.
        let mut changed = good[..2].to_vec();
        changed[1].time_ms += 1;
        check_chain(
            vec![good.clone(), changed],
            &[(
                system_rules::CHAIN_FORKED,
                "device dev-1: two different events claim seq 2 (a copied identity or a restored snapshot); both are kept, the second as stream dev-1~2",
            )],
        );
        // Junk body: stored as undecodable and flagged.
        let mut junk = good[..1].to_vec();
        junk[0].body = vec![0xc1];
        check_chain(
            vec![junk],
            &[(
                system_rules::UNDECODABLE,
                "event 1 does not decode: event body: wrong msgpack marker Reserved",
            )],
        );
    }

    #[test]
    fn a_spool_that_starts_over_and_a_second_agent_lose_nothing() {
        let (_dir, mut s, d) = open_with_device();
        let first = chain(
            &(0..4)
                .map(|i| file_body(&format!("/a{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        s.ingest(&d, &first, UnixMs(10_000)).unwrap();
        // The spool started over: seq 1 again, a new chain. Kept as a new stream.
        let again = chain(
            &(0..3)
                .map(|i| file_body(&format!("/b{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        assert_eq!(s.ingest(&d, &again, UnixMs(10_001)).unwrap(), 3);
        // Resending either changes nothing.
        assert_eq!(s.ingest(&d, &again, UnixMs(10_002)).unwrap(), 0);
        assert_eq!(s.ingest(&d, &first, UnixMs(10_003)).unwrap(), 0);
        let paths: std::collections::BTreeSet<String> = s
            .events(100)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.path)
            .collect();
        assert_eq!(paths.len(), 7, "{paths:?}");
        let alerts = system_alerts(&s);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, system_rules::SPOOL_RESET);
        // Both chains then advance: two agents on one identity.
        let mut more_first = chain(
            &(0..5)
                .map(|i| file_body(&format!("/a{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        let a5 = more_first.pop().unwrap();
        let mut more_again = chain(
            &(0..4)
                .map(|i| file_body(&format!("/b{i}"), &[]))
                .collect::<Vec<_>>(),
        );
        let b4 = more_again.pop().unwrap();
        assert_eq!(s.ingest(&d, &[a5], UnixMs(10_004)).unwrap(), 1);
        assert_eq!(s.ingest(&d, &[b4], UnixMs(10_005)).unwrap(), 1);
        let alerts = system_alerts(&s);
        let cloned: Vec<&(String, String)> = alerts
            .iter()
            .filter(|(r, _)| r == system_rules::IDENTITY_CLONED)
            .collect();
        assert_eq!(cloned.len(), 1, "{alerts:?}");
        assert!(
            cloned[0]
                .1
                .contains("two agents are sending as this device"),
            "{cloned:?}"
        );
        assert_eq!(s.events(100).unwrap().len(), 9);
    }

    #[test]
    fn drop_reports_raise_an_overflow_alert_with_the_counts() {
        let (_dir, mut s, d) = open_with_device();
        let report = EventBody::Notice(AgentNotice {
            kind: "spool_dropped".into(),
            message: "m".into(),
            count: 72,
            counts: [
                ("created/none".to_string(), 70),
                ("created/high".to_string(), 2),
            ]
            .into_iter()
            .collect(),
        });
        s.ingest(&d, &chain(&[report]), UnixMs(10)).unwrap();
        let a = s.alerts(10).unwrap();
        assert_eq!(a[0].rule_id, system_rules::SPOOL_OVERFLOW);
        assert_eq!(a[0].records, 72);
        assert_eq!(
            a[0].detail,
            "the agent's spool was full and it dropped 72 events (created/high=2, created/none=70)"
        );
    }

    /// A stop notice raises `agent_stopped`; a gap notice raises `coverage_gap` only when
    /// customer files changed meanwhile; the device keeps the last of each.
    #[test]
    fn stop_and_gap_notices_raise_alerts_and_show_on_the_device() {
        let notice = |kind: &str, message: &str, customer: u64| {
            EventBody::Notice(AgentNotice {
                kind: kind.into(),
                message: message.into(),
                count: 3,
                counts: [("customer_files".to_string(), customer)]
                    .into_iter()
                    .collect(),
            })
        };
        use holdfast_shared::event::notice::{AGENT_GAP, AGENT_STOPPED};
        for (events, want) in [
            (vec![notice(AGENT_GAP, "gap with nothing", 0)], vec![]),
            (
                vec![notice(AGENT_STOPPED, "SIGTERM from pid 9", 0)],
                vec![(system_rules::AGENT_STOPPED, 0)],
            ),
            (
                vec![
                    notice(AGENT_STOPPED, "SIGTERM from pid 9", 0),
                    notice(AGENT_GAP, "gap with two customer files", 2),
                ],
                vec![
                    (system_rules::COVERAGE_GAP, 2),
                    (system_rules::AGENT_STOPPED, 0),
                ],
            ),
        ] {
            let (_dir, mut s, d) = open_with_device();
            s.ingest(&d, &chain(&events), UnixMs(10)).unwrap();
            let mut got: Vec<(String, u64)> = s
                .alerts(10)
                .unwrap()
                .into_iter()
                .map(|a| (a.rule_id, a.records))
                .collect();
            got.sort();
            let mut want: Vec<(String, u64)> =
                want.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
            want.sort();
            assert_eq!(got, want);
            let dev = s.devices().unwrap().remove(0);
            let last = |kind: &str| {
                events.iter().rev().find_map(|e| match e {
                    EventBody::Notice(n) if n.kind == kind => Some(n.message.clone()),
                    _ => None,
                })
            };
            assert_eq!(dev.last_gap, last(AGENT_GAP));
            assert_eq!(dev.last_stop, last(AGENT_STOPPED));
        }
    }
}
