//! The agent's side of its session with the collector, as a state machine with no I/O: when
//! to connect and how long to back off, when a heartbeat is due, how large a batch to send
//! (halved when one does not fit a frame), what an acknowledgement allows to delete, and that
//! a renewed certificate means reconnecting at once.
//!
//! Inputs are what happened (`connected`, `lost`, `acked`, …) with a `now` in milliseconds
//! and, for retries, a uniform draw passed in; [`AgentSession::poll`] says what to do next.
//! The uplink runs it over QUIC and the spool; the tests below run it against a simulated
//! collector with simulated time (`Pair`).

use crate::time::UnixMs;
use crate::wire::MAX_BATCH;
use std::ops::RangeInclusive;

/// The session's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between heartbeats while connected.
    pub heartbeat_ms: u64,
    /// Backoff bounds between failed connection attempts.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// After an established connection is lost, the first retry is spread uniformly over this
    /// window: a collector restarting under 10,000 agents sees them return over seconds.
    pub reconnect_spread_ms: u64,
}

impl Timing {
    /// The agent's: a heartbeat every `heartbeat_ms`, backoff from 250 ms to 30 s, a lost
    /// connection retried within 3 s.
    pub fn with_heartbeat(heartbeat_ms: u64) -> Timing {
        Timing {
            heartbeat_ms,
            backoff_min_ms: 250,
            backoff_max_ms: 30_000,
            reconnect_spread_ms: 3_000,
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open a connection, then report [`AgentSession::connected`] or [`AgentSession::lost`].
    Connect,
    /// Send a heartbeat and apply its `Sync`; then [`AgentSession::synced`].
    Heartbeat,
    /// Send up to `limit` spooled events as one batch ([`AgentSession::sent`]), or say there
    /// were none ([`AgentSession::idle`]).
    SendBatch { limit: usize },
    /// Nothing to do until this time, unless events are spooled meanwhile
    /// ([`AgentSession::spooled`]) or the connection drops.
    WaitUntil(UnixMs),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not connected; try again at `retry_at`.
    Down { retry_at: UnixMs },
    /// Connected; the next heartbeat is due at `heartbeat_at`.
    Up { heartbeat_at: UnixMs },
}

/// The agent's side of the session.
#[derive(Debug, Clone)]
pub struct AgentSession {
    timing: Timing,
    state: State,
    /// The current wait between failed attempts.
    backoff_ms: u64,
    /// Events per batch: [`MAX_BATCH`], halved while a batch does not fit a frame.
    limit: usize,
    /// Spooled events may be waiting to be sent.
    pending: bool,
    /// The batch sent and not yet acknowledged: its first and last sequence numbers.
    in_flight: Option<(u64, u64)>,
}

impl AgentSession {
    /// A session that connects at once.
    pub fn new(timing: Timing, now_ms: UnixMs) -> AgentSession {
        AgentSession {
            timing,
            state: State::Down { retry_at: now_ms },
            backoff_ms: timing.backoff_min_ms,
            limit: MAX_BATCH,
            pending: true,
            in_flight: None,
        }
    }

    /// Whether a connection is up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// What to do now.
    pub fn poll(&mut self, now_ms: UnixMs) -> Step {
        match self.state {
            State::Down { retry_at } if now_ms >= retry_at => Step::Connect,
            State::Down { retry_at } => Step::WaitUntil(retry_at),
            State::Up { heartbeat_at } if now_ms >= heartbeat_at => {
                self.state = State::Up {
                    heartbeat_at: now_ms + self.timing.heartbeat_ms as i64,
                };
                Step::Heartbeat
            }
            State::Up { .. } if self.pending && self.in_flight.is_none() => {
                Step::SendBatch { limit: self.limit }
            }
            State::Up { heartbeat_at } => Step::WaitUntil(heartbeat_at),
        }
    }

    /// A connection is up: heartbeat first, then whatever is spooled.
    pub fn connected(&mut self, now_ms: UnixMs) {
        self.state = State::Up {
            heartbeat_at: now_ms,
        };
        self.backoff_ms = self.timing.backoff_min_ms;
        self.limit = MAX_BATCH;
        self.pending = true;
        self.in_flight = None;
    }

    /// The connection failed or could not be made. `u` is a uniform draw in `[0, 1]`: a lost
    /// connection is retried within the reconnect spread, a failed attempt after half to one
    /// and a half times the backoff, which then doubles (up to its maximum). What was in
    /// flight stays spooled and is sent again.
    pub fn lost(&mut self, now_ms: UnixMs, u: f64) {
        let was_up = self.is_up();
        let delay = retry_delay_ms(was_up, self.backoff_ms, self.timing.reconnect_spread_ms, u);
        if was_up {
            self.backoff_ms = self.timing.backoff_min_ms;
        } else {
            self.backoff_ms = (self.backoff_ms * 2).min(self.timing.backoff_max_ms);
        }
        self.state = State::Down {
            retry_at: now_ms + delay as i64,
        };
        self.in_flight = None;
        self.pending = true;
    }

    /// The heartbeat was answered. With `renewed`, the certificate was replaced: reconnect
    /// at once with the new one.
    pub fn synced(&mut self, now_ms: UnixMs, renewed: bool) {
        if renewed {
            self.state = State::Down { retry_at: now_ms };
            self.backoff_ms = self.timing.backoff_min_ms;
            self.in_flight = None;
        }
    }

    /// A batch of events `first..=last` was sent.
    pub fn sent(&mut self, first: u64, last: u64) {
        self.in_flight = Some((first, last.max(first)));
    }

    /// Nothing was spooled when asked.
    pub fn idle(&mut self) {
        self.pending = false;
    }

    /// Events were spooled: send them.
    pub fn spooled(&mut self) {
        self.pending = true;
    }

    /// The batch did not fit one frame: `false` when a single event does not (the batch
    /// cannot be sent), else the next one is half as large.
    pub fn too_large(&mut self) -> bool {
        self.in_flight = None;
        if self.limit <= 1 {
            return false;
        }
        self.limit = (self.limit / 2).max(1);
        true
    }

    /// The collector committed through `through_seq`: the events of the batch in flight up
    /// to there may be deleted (never any other, whatever the collector says), and the next
    /// batch is full size again.
    pub fn acked(&mut self, through_seq: u64) -> Option<RangeInclusive<u64>> {
        let (first, last) = self.in_flight.take()?;
        self.limit = MAX_BATCH;
        self.pending = true;
        let through = through_seq.min(last);
        (through >= first).then_some(first..=through)
    }
}

/// How long to wait before the next connection attempt, in milliseconds: after losing an
/// established connection, spread uniformly over `spread_ms`; after a failed attempt, between
/// half and one and a half times `backoff_ms`. `u` is a uniform draw, clamped to `[0, 1]`.
pub fn retry_delay_ms(was_connected: bool, backoff_ms: u64, spread_ms: u64, u: f64) -> u64 {
    let u = u.clamp(0.0, 1.0);
    if was_connected {
        (spread_ms as f64 * u) as u64
    } else {
        (backoff_ms as f64 * (0.5 + u)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 agents cut off by one collector restart: how many retry in the busiest 100 ms,
    /// for evenly spread draws (what a uniform random source gives on average).
    fn busiest_100ms(was_connected: bool, backoff_ms: u64) -> usize {
        let mut buckets = std::collections::BTreeMap::new();
        for i in 0..10_000 {
            let d = retry_delay_ms(
                was_connected,
                backoff_ms,
                3_000,
                (i as f64 + 0.5) / 10_000.0,
            );
            *buckets.entry(d / 100).or_insert(0usize) += 1;
        }
        buckets.values().copied().max().unwrap_or(0)
    }

    #[test]
    fn a_restart_under_10000_agents_is_not_a_herd() {
        // Spread over 3 s: no 100 ms window sees more than ~3.4 % of the fleet.
        assert!(busiest_100ms(true, 250) <= 340);
        // Later failures spread over a window as wide as the backoff itself.
        assert!(busiest_100ms(false, 8_000) <= 130);
        assert_eq!(retry_delay_ms(false, 2_000, 3_000, 0.0), 1_000);
        assert_eq!(retry_delay_ms(false, 2_000, 3_000, 7.0), 3_000);
        assert_eq!(retry_delay_ms(true, 30_000, 3_000, 1.0), 3_000);
    }

    /// A simulated collector: commits what it is sent (up to a frame's worth of events),
    /// answers heartbeats, can be unreachable (down, or refusing a revoked device), can ask
    /// for a renewal, and can lose the connection mid-batch after committing.
    #[derive(Debug, Default)]
    struct Collector {
        committed: Vec<u64>,
        /// Events that fit one frame.
        frame: usize,
        reachable: bool,
        renew_next: bool,
        /// Commit the next batch, then drop the connection before the ack.
        drop_after_commit: bool,
        heartbeats: Vec<i64>,
        connects: Vec<i64>,
    }

    /// The agent's session, its spool, and the collector, in simulated time.
    struct Pair {
        session: AgentSession,
        spool: Vec<u64>,
        next_seq: u64,
        collector: Collector,
        now: i64,
        /// The uniform draws for retries, in turn.
        draws: Vec<f64>,
    }

    impl Pair {
        fn new(heartbeat_ms: u64) -> Pair {
            Pair {
                session: AgentSession::new(Timing::with_heartbeat(heartbeat_ms), UnixMs(0)),
                spool: Vec::new(),
                next_seq: 1,
                collector: Collector {
                    frame: 512,
                    reachable: true,
                    ..Collector::default()
                },
                now: 0,
                draws: vec![0.5],
            }
        }

        fn spool(&mut self, n: u64) {
            for _ in 0..n {
                self.spool.push(self.next_seq);
                self.next_seq += 1;
            }
            self.session.spooled();
        }

        fn draw(&mut self) -> f64 {
            let d = self.draws.remove(0);
            self.draws.push(d);
            d
        }

        /// Runs the session until `until` (simulated ms), doing what it says.
        fn run(&mut self, until: i64) {
            let mut steps = 0;
            while self.now < until {
                steps += 1;
                assert!(steps < 1_000_000, "the session loops without waiting");
                match self.session.poll(UnixMs(self.now)) {
                    Step::Connect => {
                        self.collector.connects.push(self.now);
                        if self.collector.reachable {
                            self.session.connected(UnixMs(self.now));
                        } else {
                            let u = self.draw();
                            self.session.lost(UnixMs(self.now), u);
                        }
                    }
                    Step::Heartbeat => {
                        self.collector.heartbeats.push(self.now);
                        let renewed = std::mem::take(&mut self.collector.renew_next);
                        self.session.synced(UnixMs(self.now), renewed);
                    }
                    Step::SendBatch { limit } => {
                        let batch: Vec<u64> = self.spool.iter().take(limit).copied().collect();
                        let (Some(&first), Some(&last)) = (batch.first(), batch.last()) else {
                            self.session.idle();
                            continue;
                        };
                        self.session.sent(first, last);
                        if batch.len() > self.collector.frame {
                            assert!(self.session.too_large(), "one event did not fit");
                            continue;
                        }
                        for s in &batch {
                            if !self.collector.committed.contains(s) {
                                self.collector.committed.push(*s);
                            }
                        }
                        if std::mem::take(&mut self.collector.drop_after_commit) {
                            let u = self.draw();
                            self.session.lost(UnixMs(self.now), u);
                            continue;
                        }
                        if let Some(r) = self.session.acked(last) {
                            self.spool.retain(|s| !r.contains(s));
                        }
                    }
                    Step::WaitUntil(t) => self.now = t.ms().min(until).max(self.now + 1),
                }
            }
        }
    }

    #[test]
    fn everything_spooled_is_committed_once_in_order_and_deleted_after_its_ack() {
        let mut p = Pair::new(10_000);
        p.spool(1_300);
        p.run(1_000);
        assert_eq!(p.collector.committed, (1..=1_300).collect::<Vec<_>>());
        assert!(p.spool.is_empty());
        // Heartbeat first on connecting, then every 10 s.
        p.run(35_000);
        assert_eq!(p.collector.heartbeats, vec![0, 10_000, 20_000, 30_000]);
        assert_eq!(p.collector.connects, vec![0]);
    }

    #[test]
    fn a_lost_connection_resends_what_was_not_acknowledged_and_nothing_is_doubled() {
        let mut p = Pair::new(10_000);
        p.run(100);
        p.collector.drop_after_commit = true;
        p.spool(10);
        p.run(10_000);
        // Committed before the drop, kept in the spool (no ack), sent again after the
        // reconnect (within the 3 s spread) and committed once: the collector is idempotent
        // on the sequence number, and the spool deletes only after the ack.
        assert_eq!(p.collector.committed, (1..=10).collect::<Vec<_>>());
        assert!(p.spool.is_empty());
        assert_eq!(p.collector.connects, vec![0, 1_600]);
    }

    #[test]
    fn a_batch_too_large_for_a_frame_is_halved_then_full_size_again() {
        let mut p = Pair::new(10_000);
        p.collector.frame = 100;
        p.spool(1_000);
        p.run(1_000);
        assert_eq!(p.collector.committed, (1..=1_000).collect::<Vec<_>>());
        // 512 did not fit, nor 256 or 128; 64 did, and after each ack the limit went back to
        // 512 and was halved again: the limit is never left small.
        assert_eq!(p.session.limit, MAX_BATCH);
    }

    #[test]
    fn an_unreachable_or_revoked_agent_backs_off_to_the_cap_and_loses_nothing() {
        let mut p = Pair::new(10_000);
        p.collector.reachable = false;
        p.spool(50);
        p.run(120_000);
        let gaps: Vec<i64> = p
            .collector
            .connects
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        // Draws of 0.5: each wait is the backoff itself, doubling from 250 ms to 30 s.
        assert_eq!(
            &gaps[..9],
            &[250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(p.spool.len(), 50, "kept while the collector refuses");
        // Reachable again (a collector back, or the device restored): all of it arrives, and a
        // later failure starts from the smallest backoff.
        p.collector.reachable = true;
        p.run(200_000);
        assert_eq!(p.collector.committed.len(), 50);
        assert_eq!(p.session.backoff_ms, 250);
    }

    #[test]
    fn a_renewed_certificate_reconnects_at_once() {
        let mut p = Pair::new(1_000);
        p.run(500);
        p.collector.renew_next = true;
        p.run(1_500);
        // The heartbeat at 1 s renewed: the session went down and connected again at 1 s,
        // heartbeating first on the new connection.
        assert_eq!(p.collector.connects, vec![0, 1_000]);
        assert_eq!(p.collector.heartbeats, vec![0, 1_000, 1_000]);
    }

    #[test]
    fn an_ack_deletes_only_what_the_batch_carried() {
        let mut s = AgentSession::new(Timing::with_heartbeat(1_000), UnixMs(0));
        s.connected(UnixMs(0));
        assert_eq!(s.acked(5), None, "no batch in flight: nothing to delete");
        s.sent(10, 20);
        // A collector that says more than was sent (another agent on this identity, a spool
        // started over) cannot delete events it never received.
        assert_eq!(s.acked(99), Some(10..=20));
        s.sent(21, 30);
        assert_eq!(s.acked(25), Some(21..=25));
        s.sent(31, 40);
        assert_eq!(s.acked(3), None, "an ack below the batch deletes nothing");
        s.sent(1, 1);
        assert!(s.too_large() && s.too_large());
        for _ in 0..8 {
            s.too_large();
        }
        assert!(
            !s.too_large(),
            "one event that does not fit cannot be halved"
        );
    }
}
