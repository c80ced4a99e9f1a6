//! Both sides of the session in one process: the agent's [`AgentSession`] and the collector's
//! [`CollectorSession`] talking through the real frame codec, with an in-memory registry in
//! place of the database and simulated time in place of clocks and sockets. What the real
//! drivers (uplink, ingest) do with each step and decision, the harness does here.

use super::agent::{AgentSession, Step, Timing};
use super::collector::{Cert, CollectorSession, Current, Decision, Outcome, Work};
use crate::event::SealedEvent;
use crate::signed::{Signed, SignedBody};
use crate::time::UnixMs;
use crate::wire::{self, Message};

/// What the database would hold: committed events by sequence, the device's certificate
/// generation and its times, revocation, the current policy, and a store that can fail.
#[derive(Debug)]
struct Registry {
    committed: Vec<u64>,
    cert_generation: u32,
    cert_issued_ms: UnixMs,
    cert_lifetime_ms: i64,
    revoked: bool,
    policy: Option<Current>,
    events_per_sec: u32,
    /// The next store work fails (a full disk, a locked database).
    fail_next: bool,
    /// Commit the next batch, then lose the connection before the ack.
    drop_after_commit: bool,
    heartbeats: Vec<i64>,
    skews: Vec<i64>,
}

impl Registry {
    fn perform(&mut self, work: Work, now: i64) -> Outcome {
        if std::mem::take(&mut self.fail_next) {
            return Outcome::Failed;
        }
        match work {
            Work::Ingest { events } => {
                let before = self.committed.len();
                for e in events {
                    if !self.committed.contains(&e.seq) {
                        self.committed.push(e.seq);
                    }
                }
                Outcome::Ingested {
                    new: self.committed.len() - before,
                }
            }
            Work::Heartbeat { beat } => {
                self.heartbeats.push(now);
                self.skews.push(beat.skew_ms);
                Outcome::Synced {
                    through_seq: self.committed.iter().copied().max().unwrap_or(0),
                    policy: self.policy.clone(),
                    edm: None,
                    orders: Vec::new(),
                }
            }
            Work::Renew { csr_der } if csr_der.is_empty() => {
                Outcome::Renewed(Err("empty CSR".into()))
            }
            Work::Renew { .. } => {
                self.cert_generation += 1;
                self.cert_issued_ms = UnixMs(now);
                Outcome::Renewed(Ok(vec![self.cert_generation as u8]))
            }
            Work::EdmChunk { .. } => Outcome::Chunk(None),
            Work::Receipt { .. } => Outcome::Receipted(false),
        }
    }
}

/// Why an exchange did not bring an answer.
#[derive(Debug, PartialEq)]
enum Lost {
    /// The request does not fit a frame (the agent's codec refused it).
    TooLarge,
    /// The collector closed the connection with this code.
    Closed(u32),
    /// There was no connection.
    Down,
}

struct Pair {
    session: AgentSession,
    spool: Vec<SealedEvent>,
    next_seq: u64,
    /// Body bytes per event (large bodies make batches that do not fit a frame).
    body_size: usize,
    policy_version: String,
    cert_generation: u32,
    /// The agent's clock minus the collector's.
    skew_ms: i64,
    conn: Option<CollectorSession>,
    registry: Registry,
    now: i64,
    connects: Vec<i64>,
    closes: Vec<(i64, u32)>,
}

impl Pair {
    /// Events 1..=`n` were committed once each, in order, the spool is empty, and the agent
    /// connected at the times `connects` (ms).
    fn assert_delivered(&self, n: u64, connects: &[i64]) {
        assert_eq!(self.registry.committed, (1..=n).collect::<Vec<_>>());
        assert!(
            self.spool.is_empty(),
            "{} left in the spool",
            self.spool.len()
        );
        assert_eq!(self.connects, connects);
    }

    fn new(heartbeat_ms: u64) -> Pair {
        Pair {
            session: AgentSession::new(Timing::with_heartbeat(heartbeat_ms), UnixMs(0)),
            spool: Vec::new(),
            next_seq: 1,
            body_size: 16,
            policy_version: String::new(),
            cert_generation: 0,
            skew_ms: 0,
            conn: None,
            registry: Registry {
                committed: Vec::new(),
                cert_generation: 0,
                cert_issued_ms: UnixMs(0),
                cert_lifetime_ms: 3_600_000,
                revoked: false,
                policy: None,
                events_per_sec: 1_000_000,
                fail_next: false,
                drop_after_commit: false,
                heartbeats: Vec::new(),
                skews: Vec::new(),
            },
            now: 0,
            connects: Vec::new(),
            closes: Vec::new(),
        }
    }

    fn spool(&mut self, n: u64) {
        for _ in 0..n {
            self.spool.push(SealedEvent {
                seq: self.next_seq,
                time_ms: UnixMs(self.now),
                user: "alice".into(),
                prev_hash: vec![0; 32],
                body: vec![7; self.body_size],
            });
            self.next_seq += 1;
        }
        self.session.spooled();
    }

    /// The collector runs its revocation checks that fell due.
    fn revocation_checks(&mut self) {
        while let Some(conn) = self.conn.as_mut() {
            if conn.next_check_ms() > UnixMs(self.now) {
                return;
            }
            let at = conn.next_check_ms();
            if let Some((code, _)) = conn.checked(at, self.registry.revoked) {
                self.conn = None;
                self.closes.push((at.ms(), code));
            }
        }
    }

    /// One request and its answer, both through the frame codec.
    fn exchange(&mut self, request: &Message) -> Result<Message, Lost> {
        let bytes = wire::encode(request).map_err(|_| Lost::TooLarge)?;
        self.revocation_checks();
        let conn = self.conn.as_mut().ok_or(Lost::Down)?;
        let decided = conn.request(
            wire::decode(&bytes).map_err(|e| e.to_string()),
            UnixMs(self.now),
        );
        let answer = match decided {
            Decision::Answer(answer) => answer,
            Decision::Close { code, .. } => {
                self.conn = None;
                self.closes.push((self.now, code));
                return Err(Lost::Closed(code));
            }
            Decision::Do { work, at_ms } => {
                // Over its rate, the agent simply waits longer for its answer.
                self.now = self.now.max(at_ms.ms());
                let batch = matches!(work, Work::Ingest { .. });
                let outcome = self.registry.perform(work, self.now);
                if batch && std::mem::take(&mut self.registry.drop_after_commit) {
                    self.conn = None;
                    return Err(Lost::Down);
                }
                conn.done(outcome, UnixMs(self.now))
            }
        };
        let bytes = wire::encode(&answer).map_err(|_| Lost::TooLarge)?;
        wire::decode(&bytes).map_err(|_| Lost::Down)
    }

    fn connect(&mut self) {
        self.connects.push(self.now);
        if self.registry.revoked {
            self.session.lost(UnixMs(self.now), 0.5);
            return;
        }
        let cert = Cert {
            presented_is_current: self.cert_generation == self.registry.cert_generation,
            issued_ms: self.registry.cert_issued_ms,
            expires_ms: self.registry.cert_issued_ms + self.registry.cert_lifetime_ms,
        };
        self.conn = Some(CollectorSession::new(
            cert,
            self.registry.events_per_sec,
            UnixMs(self.now),
        ));
        self.session.connected(UnixMs(self.now));
    }

    /// A heartbeat, its updates applied, a renewal when asked: whether the agent renewed.
    fn heartbeat(&mut self) -> Result<bool, Lost> {
        let beat = Message::Heartbeat {
            agent_version: "1".into(),
            hostname: "laptop".into(),
            os: "linux".into(),
            policy_version: self.policy_version.clone(),
            time_ms: UnixMs(self.now + self.skew_ms),
            spool_backlog: self.spool.len() as u64,
            edm_version: String::new(),
            coverage: None,
            health: Vec::new(),
        };
        let Message::Sync { renew, updates, .. } = self.exchange(&beat)? else {
            return Err(Lost::Down);
        };
        for u in updates {
            if let Ok(body) = u.decode_unverified() {
                self.policy_version = body.version;
            }
        }
        if !renew {
            return Ok(false);
        }
        match self.exchange(&Message::RenewRequest {
            csr_der: vec![1, 2, 3],
        })? {
            Message::RenewResponse { cert_der } => {
                self.cert_generation = u32::from(cert_der[0]);
                Ok(true)
            }
            _ => Err(Lost::Down),
        }
    }

    fn send_batch(&mut self, limit: usize) -> Result<(), Lost> {
        let batch: Vec<SealedEvent> = self.spool.iter().take(limit).cloned().collect();
        let (Some(first), Some(last)) = (batch.first().map(|e| e.seq), batch.last().map(|e| e.seq))
        else {
            self.session.idle();
            return Ok(());
        };
        self.session.sent(first, last);
        match self.exchange(&Message::EventBatch { events: batch }) {
            Err(Lost::TooLarge) if self.session.too_large() => Ok(()),
            Err(e) => Err(e),
            Ok(Message::Ack { through_seq }) => {
                if let Some(done) = self.session.acked(through_seq) {
                    self.spool.retain(|e| !done.contains(&e.seq));
                }
                Ok(())
            }
            Ok(_) => Err(Lost::Down),
        }
    }

    /// Runs both sides until `until` (simulated ms).
    fn run(&mut self, until: i64) {
        let mut steps = 0;
        while self.now < until {
            steps += 1;
            assert!(steps < 1_000_000, "the session loops without waiting");
            let result = match self.session.poll(UnixMs(self.now)) {
                Step::Connect => {
                    self.connect();
                    Ok(())
                }
                Step::Heartbeat => self.heartbeat().map(|renewed| {
                    if renewed {
                        self.conn = None;
                    }
                    self.session.synced(UnixMs(self.now), renewed);
                }),
                Step::SendBatch { limit } => self.send_batch(limit),
                Step::WaitUntil(t) => {
                    // A wait ends early when the collector closes the connection.
                    let check = self
                        .conn
                        .as_ref()
                        .map_or(i64::MAX, |c| c.next_check_ms().ms());
                    self.now = t.ms().min(until).min(check).max(self.now + 1);
                    self.revocation_checks();
                    if self.conn.is_none() && self.session.is_up() {
                        Err(Lost::Down)
                    } else {
                        Ok(())
                    }
                }
            };
            if result.is_err() {
                self.conn = None;
                self.session.lost(UnixMs(self.now), 0.5);
            }
        }
    }
}

fn policy(version: &str) -> Current {
    let body = SignedBody {
        kind: crate::signed::kind::POLICY.into(),
        version: version.into(),
        issued_ms: UnixMs(1),
        payload: Vec::new(),
    };
    let signed = Signed {
        body: rmp_serde::to_vec_named(&body).unwrap(),
        signature: vec![0; 64],
    };
    Current {
        version: version.into(),
        signed: signed.to_bytes().unwrap(),
        size: 0,
    }
}

#[test]
fn everything_spooled_arrives_once_in_order_and_is_deleted_only_after_its_ack() {
    let mut p = Pair::new(10_000);
    p.spool(2_000);
    p.registry.fail_next = true;
    p.run(5_000);
    // The first heartbeat met a failing store: the agent reconnected (within its 3 s spread)
    // and sent everything once, in order.
    p.assert_delivered(2_000, &[0, 1_500]);
}

#[test]
fn a_connection_lost_after_a_commit_resends_and_nothing_is_doubled() {
    let mut p = Pair::new(10_000);
    p.run(100);
    p.registry.drop_after_commit = true;
    p.spool(10);
    p.run(10_000);
    // Committed before the drop, kept in the spool (no ack), sent again after the reconnect
    // (within the 3 s spread) and stored once: the registry is idempotent on the sequence
    // number, and the spool deletes only after the ack.
    p.assert_delivered(10, &[0, 1_600]);
}

#[test]
fn a_refused_agent_backs_off_to_the_cap_loses_nothing_and_starts_small_again() {
    let mut p = Pair::new(10_000);
    p.registry.revoked = true;
    p.spool(50);
    p.run(120_000);
    let gaps =
        |connects: &[i64]| -> Vec<i64> { connects.windows(2).map(|w| w[1] - w[0]).collect() };
    // Draws of 0.5: each wait is the backoff itself, doubling from 250 ms to 30 s.
    assert_eq!(
        &gaps(&p.connects)[..9],
        &[250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
    );
    assert_eq!(p.spool.len(), 50, "kept while the collector refuses");
    // Accepted again (the device restored): all of it arrives.
    p.registry.revoked = false;
    p.run(200_000);
    assert_eq!(p.registry.committed.len(), 50);
    // Cut off once more: the first retry comes within the reconnect spread, the failures after
    // it from the smallest backoff again.
    p.registry.revoked = true;
    let before = p.connects.len();
    p.run(210_000);
    let (closed_at, code) = *p.closes.last().unwrap();
    assert_eq!(code, wire::close::REVOKED);
    assert_eq!(p.connects[before] - closed_at, 1_500);
    assert_eq!(&gaps(&p.connects[before..])[..3], &[250, 500, 1_000]);
}

#[test]
fn an_agent_over_its_rate_waits_for_its_acks_and_loses_nothing() {
    let mut p = Pair::new(60_000);
    p.registry.events_per_sec = 500;
    p.spool(2_012);
    let mut emptied_at = None;
    while p.now < 10_000 {
        let now = p.now;
        p.run(now + 1);
        if p.spool.is_empty() && emptied_at.is_none() {
            emptied_at = Some(p.now);
        }
    }
    assert_eq!(p.registry.committed, (1..=2_012).collect::<Vec<_>>());
    // The burst (one batch of 512) passed at once; the other 1,500 were paced at 500/s: the
    // last ack came 3 s in, not at once and not later, on the one connection.
    assert_eq!(emptied_at, Some(3_000));
    assert_eq!(p.connects, vec![0]);
}

#[test]
fn a_batch_that_does_not_fit_a_frame_is_halved_and_everything_arrives() {
    let mut p = Pair::new(10_000);
    // 20 kB bodies: 512 of them are 10 MB, over the 4 MiB frame; 128 fit.
    p.body_size = 20_000;
    p.spool(1_000);
    p.run(1_000);
    assert_eq!(p.registry.committed, (1..=1_000).collect::<Vec<_>>());
    assert_eq!(p.connects, vec![0], "halving needs no reconnect");
}

#[test]
fn a_device_revoked_while_connected_is_cut_off_within_a_second_and_keeps_its_events() {
    let mut p = Pair::new(10_000);
    p.run(2_500);
    p.registry.revoked = true;
    p.spool(10);
    p.run(60_000);
    // The check at 3 s closed the connection. The 10 events had been committed before (the
    // revocation came after they were sent), so nothing is left; what comes later stays.
    assert_eq!(p.closes, vec![(3_000, wire::close::REVOKED)]);
    p.spool(5);
    p.run(120_000);
    assert_eq!(
        p.spool.len(),
        5,
        "a revoked device's events stay on the device"
    );
    assert_eq!(p.registry.committed.len(), 10);
    assert!(p.connects.len() > 3, "it keeps trying, backing off");
}

#[test]
fn a_certificate_past_two_thirds_is_renewed_and_the_agent_reconnects_with_it() {
    let mut p = Pair::new(1_000);
    p.registry.cert_lifetime_ms = 3_000;
    p.run(10_000);
    // Heartbeats at 0 and 1 s: not due. At 2 s: renewed, reconnected at once; the new
    // certificate (issued at 2 s) is due again at 4 s, and so on.
    assert_eq!(p.connects, vec![0, 2_000, 4_000, 6_000, 8_000]);
    assert_eq!(p.cert_generation, p.registry.cert_generation);
    assert_eq!(p.cert_generation, 4);
    // An old certificate presented again (a restored backup of the agent's identity) is told
    // to renew on its first heartbeat.
    p.cert_generation = 1;
    p.registry.cert_lifetime_ms = 3_600_000;
    p.conn = None;
    p.session.lost(UnixMs(p.now), 0.5);
    let before = p.registry.cert_generation;
    p.run(20_000);
    assert_eq!(p.registry.cert_generation, before + 1);
    assert_eq!(p.cert_generation, before + 1);
}

#[test]
fn a_new_policy_is_sent_until_the_agent_reports_it_and_skew_is_measured() {
    let mut p = Pair::new(1_000);
    p.skew_ms = -4_000;
    p.registry.policy = Some(policy("v1"));
    p.run(500);
    assert_eq!(p.policy_version, "v1");
    p.registry.policy = Some(policy("v2"));
    p.run(2_500);
    assert_eq!(p.policy_version, "v2");
    assert!(p.registry.skews.iter().all(|&s| s == -4_000));
}

#[test]
fn requests_outside_the_protocol_close_the_connection() {
    let cert = Cert {
        presented_is_current: true,
        issued_ms: UnixMs(0),
        expires_ms: UnixMs(1_000_000),
    };
    let close = |msg: Result<Message, String>| {
        let mut s = CollectorSession::new(cert, 1_000, UnixMs(0));
        match s.request(msg, UnixMs(0)) {
            Decision::Close { answer, code, .. } => match answer {
                Message::Error { code: c, .. } => (c, code),
                other => panic!("not an error answer: {other:?}"),
            },
            other => panic!("not closed: {other:?}"),
        }
    };
    let batch = |n: usize| Message::EventBatch {
        events: (1..=n as u64)
            .map(|seq| SealedEvent {
                seq,
                time_ms: UnixMs(0),
                user: String::new(),
                prev_hash: Vec::new(),
                body: Vec::new(),
            })
            .collect(),
    };
    assert_eq!(
        close(Ok(batch(super::collector::MAX_ACCEPTED_BATCH + 1))),
        ("bad_batch".into(), wire::close::PROTOCOL)
    );
    assert_eq!(
        close(Ok(Message::Ack { through_seq: 3 })),
        ("protocol".into(), wire::close::PROTOCOL)
    );
    assert_eq!(
        close(Err("truncated frame".into())),
        ("bad_frame".into(), wire::close::PROTOCOL)
    );
    // A well-formed batch of the largest accepted size is work, not a close; its ack names
    // its highest sequence number whatever the order.
    let mut s = CollectorSession::new(cert, 1_000_000, UnixMs(0));
    assert!(matches!(
        s.request(Ok(batch(super::collector::MAX_ACCEPTED_BATCH)), UnixMs(0)),
        Decision::Do {
            at_ms: UnixMs(0),
            ..
        }
    ));
    assert_eq!(
        s.done(Outcome::Ingested { new: 3 }, UnixMs(0)),
        Message::Ack {
            through_seq: super::collector::MAX_ACCEPTED_BATCH as u64
        }
    );
    // An answer without a request, or one of the wrong kind, is an internal error, not a
    // wrong ack.
    assert!(matches!(
        s.done(Outcome::Ingested { new: 1 }, UnixMs(0)),
        Message::Error { .. }
    ));
    s.request(
        Ok(Message::EdmChunkRequest {
            version: "v".into(),
            offset: 0,
        }),
        UnixMs(0),
    );
    assert!(matches!(
        s.done(Outcome::Receipted(true), UnixMs(0)),
        Message::Error { code, .. } if code == "internal"
    ));
}

#[test]
fn a_ping_is_answered_at_once_with_the_collectors_clock() {
    let cert = Cert {
        presented_is_current: true,
        issued_ms: UnixMs(0),
        expires_ms: UnixMs(1_000_000),
    };
    let mut s = CollectorSession::new(cert, 1_000, UnixMs(0));
    let ping = Message::Ping { time_ms: UnixMs(5) };
    match s.request(Ok(ping), UnixMs(42)) {
        Decision::Answer(Message::Pong { time_ms }) => assert_eq!(time_ms, UnixMs(42)),
        other => panic!("not answered with the clock: {other:?}"),
    }
    // Nothing was in progress: a stray `done` is an error, not an answer.
    assert!(matches!(
        s.done(Outcome::Receipted(true), UnixMs(50)),
        Message::Error { .. }
    ));
}
