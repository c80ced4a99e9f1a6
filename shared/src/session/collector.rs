//! The collector's side of one agent connection, as a state machine with no I/O: which
//! requests a device may make, how large a batch may be, the rate that turns into a wait
//! before the ack (backpressure, never loss), what a heartbeat records and what its `Sync`
//! carries (renewal due, newer policy and customer set, open orders), when to re-check for
//! revocation, and which errors close the connection.
//!
//! The driver (the collector's ingest) reads a request, hands it to
//! [`CollectorSession::request`], does the store [`Work`] it is given (after the wait, when
//! there is one), and sends what [`CollectorSession::done`] makes of the [`Outcome`].

use crate::event::{Coverage, SealedEvent};
use crate::order::ActionReceipt;
use crate::signed::Signed;
use crate::time::UnixMs;
use crate::wire::{close, EdmOffer, Message, EDM_CHUNK, MAX_BATCH};

/// How often a connection, busy or idle, re-checks whether its device was revoked.
pub const REVOCATION_CHECK_MS: i64 = 1_000;
/// The largest batch accepted: a well-behaved agent sends at most [`MAX_BATCH`].
pub const MAX_ACCEPTED_BATCH: usize = MAX_BATCH * 4;
/// Health lines kept from one heartbeat, and characters kept of each.
const HEALTH_LINES: usize = 16;
const HEALTH_CHARS: usize = 500;

/// A token bucket of `rate` tokens per second holding at most `burst`, on a clock passed in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: UnixMs,
}

impl TokenBucket {
    /// A full bucket. `burst` is one second's worth of `rate`, at least one batch.
    pub fn new(rate: u32, now_ms: UnixMs) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        let burst = rate.max(MAX_BATCH as f64);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last_ms: now_ms,
        }
    }

    /// Spends `n` tokens and returns how many milliseconds to wait before serving the request:
    /// zero while the bucket holds enough, otherwise the time to earn the shortfall.
    pub fn take(&mut self, n: u64, now_ms: UnixMs) -> i64 {
        let elapsed = now_ms.since(self.last_ms).max(0) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            0
        } else {
            (-self.tokens / self.rate * 1000.0).ceil() as i64
        }
    }
}

/// The device's certificate as registered, and whether it is the one the connection presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cert {
    /// The connection presented the device's current certificate (not one it renewed from).
    pub presented_is_current: bool,
    pub issued_ms: UnixMs,
    pub expires_ms: UnixMs,
}

impl Cert {
    /// Whether to renew now: past two thirds of its lifetime, or the connection presented a
    /// certificate the device already renewed from.
    pub fn renew_due(&self, now_ms: UnixMs) -> bool {
        if !self.presented_is_current {
            return true;
        }
        let life = self.expires_ms - self.issued_ms;
        life > 0 && now_ms >= self.issued_ms + life / 3 * 2
    }
}

/// What a heartbeat reports, cleaned for the store (health bounded, skew against our clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub agent_version: String,
    pub hostname: String,
    pub os: String,
    pub policy_version: String,
    /// Version of the customer set the agent matches with (empty: none).
    pub edm_version: String,
    /// Device clock minus collector clock.
    pub skew_ms: i64,
    pub backlog: u64,
    pub coverage: Option<Coverage>,
    /// The agent's failing stages, as `stage: reason` (empty: healthy).
    pub health: Vec<String>,
}

/// Store work a request needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Commit these events (idempotent on their sequence numbers).
    Ingest { events: Vec<SealedEvent> },
    /// Record the heartbeat; report the device's committed sequence, the current policy and
    /// customer set, and the orders due ([`Outcome::Synced`]).
    Heartbeat { beat: Beat },
    /// Read up to `max` bytes of customer set `version` from `offset`.
    EdmChunk {
        version: String,
        offset: u64,
        max: usize,
    },
    /// Sign a renewed certificate for this CSR and record it.
    Renew { csr_der: Vec<u8> },
    /// Record an order's receipt (the first copy; later copies are acknowledged too).
    Receipt {
        order_id: String,
        receipts: Vec<ActionReceipt>,
    },
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Do the work, not before `at_ms` (later than now when the device is over its rate),
    /// then send what [`CollectorSession::done`] returns.
    Do { work: Work, at_ms: UnixMs },
    /// Send this answer at once; nothing to store.
    Answer(Message),
    /// Send this answer, then close the connection with `code`.
    Close {
        answer: Message,
        code: u32,
        reason: &'static str,
    },
}

/// The current policy or customer set, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub version: String,
    /// A [`Signed`] in stored form (for a customer set, its manifest).
    pub signed: Vec<u8>,
    /// For a customer set, its size in bytes.
    pub size: u64,
}

/// How the store work went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The batch is committed; `new` of its events were not already stored.
    Ingested { new: usize },
    /// The heartbeat is recorded.
    Synced {
        through_seq: u64,
        policy: Option<Current>,
        edm: Option<Current>,
        /// Signed orders due, in stored form.
        orders: Vec<Vec<u8>>,
    },
    /// A piece of the customer set and its total size, or `None`: that set is no longer current.
    Chunk(Option<(u64, Vec<u8>)>),
    /// The renewed certificate, or why the CSR was refused.
    Renewed(Result<Vec<u8>, String>),
    /// Whether the order was one of this device's.
    Receipted(bool),
    /// The store failed; the agent will ask again.
    Failed,
}

/// The collector's side of one agent connection.
#[derive(Debug, Clone)]
pub struct CollectorSession {
    cert: Cert,
    bucket: TokenBucket,
    next_check_ms: UnixMs,
    /// The request being served, for [`CollectorSession::done`].
    serving: Option<Serving>,
}

#[derive(Debug, Clone)]
enum Serving {
    Batch {
        through_seq: u64,
    },
    Heartbeat {
        policy: String,
        edm: String,
        renew: bool,
    },
    Chunk {
        version: String,
        offset: u64,
    },
    Renew,
    Receipt {
        order_id: String,
    },
}

impl CollectorSession {
    /// A connection from an enrolled, unrevoked device presenting `cert`, allowed
    /// `events_per_sec`.
    pub fn new(cert: Cert, events_per_sec: u32, now_ms: UnixMs) -> CollectorSession {
        CollectorSession {
            cert,
            bucket: TokenBucket::new(events_per_sec, now_ms),
            next_check_ms: now_ms + REVOCATION_CHECK_MS,
            serving: None,
        }
    }

    /// When the next revocation check is due.
    pub fn next_check_ms(&self) -> UnixMs {
        self.next_check_ms
    }

    /// The revocation check ran: `Some` closes the connection (a device revoked while connected
    /// is cut off within [`REVOCATION_CHECK_MS`]).
    pub fn checked(&mut self, now_ms: UnixMs, revoked: bool) -> Option<(u32, &'static str)> {
        self.next_check_ms = now_ms + REVOCATION_CHECK_MS;
        revoked.then_some((close::REVOKED, "device revoked"))
    }

    /// A request arrived (or could not be read: `Err` with why).
    pub fn request(&mut self, msg: Result<Message, String>, now_ms: UnixMs) -> Decision {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return closing("bad_frame", e, close::PROTOCOL, "bad frame"),
        };
        let (work, serving, at_ms) = match msg {
            Message::EventBatch { events } => {
                if events.len() > MAX_ACCEPTED_BATCH {
                    return closing("bad_batch", "batch too large", close::PROTOCOL, "bad batch");
                }
                let wait = self.bucket.take(events.len() as u64, now_ms);
                let through_seq = events.iter().map(|e| e.seq).max().unwrap_or(0);
                (
                    Work::Ingest { events },
                    Serving::Batch { through_seq },
                    now_ms + wait,
                )
            }
            Message::Heartbeat {
                agent_version,
                hostname,
                os,
                policy_version,
                time_ms,
                spool_backlog,
                edm_version,
                coverage,
                health,
            } => {
                let serving = Serving::Heartbeat {
                    policy: policy_version.clone(),
                    edm: edm_version.clone(),
                    renew: self.cert.renew_due(now_ms),
                };
                let beat = Beat {
                    agent_version,
                    hostname,
                    os,
                    policy_version,
                    edm_version,
                    skew_ms: time_ms.since(now_ms),
                    backlog: spool_backlog,
                    coverage,
                    health: health
                        .into_iter()
                        .take(HEALTH_LINES)
                        .map(|h| h.chars().take(HEALTH_CHARS).collect())
                        .collect(),
                };
                (Work::Heartbeat { beat }, serving, now_ms)
            }
            Message::EdmChunkRequest { version, offset } => (
                Work::EdmChunk {
                    version: version.clone(),
                    offset,
                    max: EDM_CHUNK,
                },
                Serving::Chunk { version, offset },
                now_ms,
            ),
            Message::RenewRequest { csr_der } => (Work::Renew { csr_der }, Serving::Renew, now_ms),
            Message::Ping { .. } => return Decision::Answer(Message::Pong { time_ms: now_ms }),
            Message::OrderReceipt { order_id, receipts } => (
                Work::Receipt {
                    order_id: order_id.clone(),
                    receipts,
                },
                Serving::Receipt { order_id },
                now_ms,
            ),
            _ => {
                return closing(
                    "protocol",
                    "unexpected message",
                    close::PROTOCOL,
                    "unexpected message",
                )
            }
        };
        self.serving = Some(serving);
        Decision::Do { work, at_ms }
    }

    /// The store work for the last request is done: the answer to send.
    pub fn done(&mut self, outcome: Outcome, now_ms: UnixMs) -> Message {
        let Some(serving) = self.serving.take() else {
            return error("internal", "no request in progress");
        };
        match (serving, outcome) {
            (_, Outcome::Failed) => error("internal", "store error"),
            (Serving::Batch { through_seq }, Outcome::Ingested { .. }) => {
                Message::Ack { through_seq }
            }
            (
                Serving::Heartbeat { policy, edm, renew },
                Outcome::Synced {
                    through_seq,
                    policy: current_policy,
                    edm: current_edm,
                    orders,
                },
            ) => Message::Sync {
                through_seq,
                time_ms: now_ms,
                renew,
                updates: current_policy
                    .filter(|p| p.version != policy)
                    .and_then(|p| Signed::from_bytes(&p.signed).ok())
                    .into_iter()
                    .collect(),
                edm: current_edm.filter(|e| e.version != edm).and_then(|e| {
                    Some(EdmOffer {
                        manifest: Some(Signed::from_bytes(&e.signed).ok()?),
                        version: e.version,
                        size: e.size,
                    })
                }),
                orders: orders
                    .iter()
                    .filter_map(|b| Signed::from_bytes(b).ok())
                    .collect(),
            },
            (Serving::Chunk { version, offset }, Outcome::Chunk(Some((total, bytes)))) => {
                Message::EdmChunk {
                    version,
                    offset,
                    total,
                    bytes,
                }
            }
            (Serving::Chunk { .. }, Outcome::Chunk(None)) => {
                error("edm_changed", "that customer set is no longer current")
            }
            (Serving::Renew, Outcome::Renewed(Ok(cert_der))) => {
                // This connection's certificate is now the one renewed from: a later heartbeat
                // on it says to renew (the agent reconnects with the new one first).
                self.cert.presented_is_current = false;
                Message::RenewResponse { cert_der }
            }
            (Serving::Renew, Outcome::Renewed(Err(why))) => error("bad_csr", why),
            (Serving::Receipt { order_id }, Outcome::Receipted(true)) => {
                Message::ReceiptAck { order_id }
            }
            (Serving::Receipt { .. }, Outcome::Receipted(false)) => {
                error("unknown_order", "no such order for this device")
            }
            _ => error("internal", "store answer does not fit the request"),
        }
    }
}

/// The facts an enrollment request gives, bounded for the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub token_secret: String,
    pub csr_der: Vec<u8>,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub first_seq: u64,
}

/// The one request a connection without a device certificate may make.
pub fn enrollment(msg: Result<Message, String>) -> Result<Enrollment, Box<Message>> {
    match msg {
        Ok(Message::EnrollRequest {
            token_secret,
            csr_der,
            hostname,
            os,
            agent_version,
            first_seq,
        }) => Ok(Enrollment {
            token_secret,
            csr_der,
            hostname: hostname.chars().take(255).collect(),
            os: os.chars().take(64).collect(),
            agent_version: agent_version.chars().take(64).collect(),
            first_seq: first_seq.clamp(1, i64::MAX as u64),
        }),
        Ok(_) => Err(Box::new(error(
            "protocol",
            "only enrollment is allowed without a device certificate",
        ))),
        Err(e) => Err(Box::new(error("bad_frame", e))),
    }
}

/// An error answer: `code` is stable, `message` for people.
pub fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error {
        code: code.into(),
        message: message.into(),
    }
}

fn closing(code: &str, message: impl Into<String>, close: u32, reason: &'static str) -> Decision {
    Decision::Close {
        answer: error(code, message),
        code: close,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: the waits a sequence of (offset ms, tokens) requests get.
    fn check(rate: u32, requests: &[(i64, u64)], want_ms: &[i64]) {
        let mut b = TokenBucket::new(rate, UnixMs(1_000));
        let got: Vec<i64> = requests
            .iter()
            .map(|&(at, n)| b.take(n, UnixMs(1_000 + at)))
            .collect();
        assert_eq!(got, want_ms);
    }

    #[test]
    fn waits_in_proportion_to_the_excess() {
        // 1000/s with a burst of 1000: the first 1000 pass, the next 500 wait 0.5 s.
        check(1000, &[(0, 1000), (0, 500)], &[0, 500]);
        // Earned back over time, never beyond the burst.
        check(
            1000,
            &[(0, 1000), (1000, 1000), (10_000, 1000), (10_000, 1)],
            &[0, 0, 0, 1],
        );
        // A tiny rate still admits one whole batch at once.
        check(1, &[(0, 512), (0, 1)], &[0, 1000]);
        // A clock that steps back earns nothing and is not a negative wait.
        check(1000, &[(0, 1000), (-5_000, 1)], &[0, 1]);
    }

    #[test]
    fn renewal_is_due_past_two_thirds_or_on_a_certificate_renewed_from() {
        let cert = Cert {
            presented_is_current: true,
            issued_ms: UnixMs(0),
            expires_ms: UnixMs(3_000),
        };
        assert!(!cert.renew_due(UnixMs(1_999)));
        assert!(cert.renew_due(UnixMs(2_000)));
        let old = Cert {
            presented_is_current: false,
            ..cert
        };
        assert!(old.renew_due(UnixMs(0)));
        let broken = Cert {
            expires_ms: UnixMs(0),
            ..cert
        };
        assert!(!broken.renew_due(UnixMs(10_000)), "no lifetime: never due");
    }

    #[test]
    fn enrollment_bounds_what_it_registers_and_refuses_anything_else() {
        let got = enrollment(Ok(Message::EnrollRequest {
            token_secret: "t".into(),
            csr_der: vec![1],
            hostname: "h".repeat(1_000),
            os: "o".repeat(100),
            agent_version: "1".into(),
            first_seq: 0,
        }))
        .unwrap();
        assert_eq!(
            (got.hostname.len(), got.os.len(), got.first_seq),
            (255, 64, 1)
        );
        let refused = enrollment(Ok(Message::Ack { through_seq: 1 })).unwrap_err();
        assert!(matches!(*refused, Message::Error { code, .. } if code == "protocol"));
        let junk = enrollment(Err("truncated".into())).unwrap_err();
        assert!(matches!(*junk, Message::Error { code, .. } if code == "bad_frame"));
    }
}
