//! The agent's side of its session with the collector, as a state machine with no I/O: when
//! to connect and how long to back off, when a heartbeat is due, how large a batch to send
//! (halved when one does not fit a frame), what an acknowledgement allows to delete, and that
//! a renewed certificate means reconnecting at once.
//!
//! Inputs are what happened (`connected`, `lost`, `acked`, …) with a `now` in milliseconds
//! and, for retries, a uniform draw passed in; [`AgentSession::poll`] says what to do next.
//! The uplink runs it over QUIC and the spool; `super::pair` runs it against the collector's
//! machine in simulated time.

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
