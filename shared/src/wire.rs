//! The wire protocol: versioned, length-prefixed frames carrying MessagePack-encoded messages.
//!
//! A frame is `u32 length (big endian) | u8 version | body`, where `length` counts the version
//! byte and the body. Bodies are MessagePack maps with named fields, so a peer ignores fields
//! it does not know. A frame larger than [`MAX_FRAME`] is refused before it is buffered.
//! Decoding never panics: every failure is a [`DecodeError`].

use crate::event::SealedEvent;
use crate::signed::Signed;
use crate::time::UnixMs;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Hard upper bound on one frame (header excluded), in bytes.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Size of the frame header (length prefix).
pub const HEADER: usize = 4;
/// ALPN for enrolled agents (client certificate required).
pub const ALPN_AGENT: &[u8] = b"holdfast/1";
/// ALPN for enrollment (no client certificate yet; only [`Message::EnrollRequest`] accepted).
pub const ALPN_ENROLL: &[u8] = b"holdfast-enroll/1";
/// Most events an agent puts in one batch.
pub const MAX_BATCH: usize = 512;

/// QUIC application close codes.
pub mod close {
    /// Normal shutdown.
    pub const OK: u32 = 0;
    /// No client certificate, or a certificate the collector does not know.
    pub const UNAUTHENTICATED: u32 = 0x10;
    /// The device was revoked.
    pub const REVOKED: u32 = 0x11;
    /// A frame could not be decoded, or a message came that is not allowed here.
    pub const PROTOCOL: u32 = 0x12;
    /// The collector failed internally.
    pub const INTERNAL: u32 = 0x13;
}

/// Every message either side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Agent → collector, on the enrollment ALPN: a one-time token and a CSR for the agent's key.
    EnrollRequest {
        token_secret: String,
        #[serde(with = "serde_bytes")]
        csr_der: Vec<u8>,
        hostname: String,
        os: String,
        agent_version: String,
        /// The sequence number this identity's events start at (the spool may already have
        /// used lower ones under an earlier enrollment).
        #[serde(default = "one")]
        first_seq: u64,
    },
    /// Collector → agent: the signed device certificate, the CA to trust and the key that
    /// signs policies and orders.
    EnrollResponse {
        device_id: String,
        user: String,
        #[serde(with = "serde_bytes")]
        cert_der: Vec<u8>,
        #[serde(with = "serde_bytes")]
        ca_der: Vec<u8>,
        /// Ed25519 public key for [`crate::signed::Signed`] envelopes.
        #[serde(with = "serde_bytes")]
        signing_key: Vec<u8>,
    },
    /// Agent → collector: sealed events in ascending `seq` order.
    EventBatch { events: Vec<SealedEvent> },
    /// Collector → agent: every event up to and including `through_seq` is committed.
    Ack { through_seq: u64 },
    /// Agent → collector, first on every connection and then periodically: alive, what it
    /// runs, its clock and its backlog. Answered by [`Message::Sync`].
    Heartbeat {
        agent_version: String,
        #[serde(default)]
        hostname: String,
        #[serde(default)]
        os: String,
        /// Version of the policy bundle the agent applies.
        #[serde(default)]
        policy_version: String,
        /// The device's clock, milliseconds since the epoch.
        #[serde(default)]
        time_ms: UnixMs,
        spool_backlog: u64,
        /// Version of the customer set the agent matches with (empty: none).
        #[serde(default)]
        edm_version: String,
        /// What the agent watches (absent from older agents).
        #[serde(default)]
        coverage: Option<crate::event::Coverage>,
        /// The agent's stages that are failing, as `stage: reason` (empty: healthy).
        #[serde(default)]
        health: Vec<String>,
    },
    /// Collector → agent, answering a heartbeat: what is committed, the collector's clock,
    /// whether to renew the certificate now, and signed updates to apply.
    Sync {
        through_seq: u64,
        time_ms: UnixMs,
        #[serde(default)]
        renew: bool,
        #[serde(default)]
        updates: Vec<Signed>,
        /// A newer customer set to fetch with [`Message::EdmChunkRequest`] (it is too large
        /// for one frame).
        #[serde(default)]
        edm: Option<EdmOffer>,
        /// Signed revocation orders for this device not yet receipted (kind `order`).
        #[serde(default)]
        orders: Vec<Signed>,
    },
    /// Agent → collector: how each action of an order went. Sent again until acknowledged;
    /// the collector records the first and acknowledges every copy.
    OrderReceipt {
        order_id: String,
        receipts: Vec<crate::order::ActionReceipt>,
    },
    /// Collector → agent: the receipt for `order_id` is committed.
    ReceiptAck { order_id: String },
    /// Agent → collector: the next piece of the customer set `version`, from `offset`.
    EdmChunkRequest { version: String, offset: u64 },
    /// Collector → agent: a piece of the signed customer set (a [`Signed`] in stored form).
    EdmChunk {
        version: String,
        offset: u64,
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Agent → collector: a new CSR for the same key, before the certificate expires.
    RenewRequest {
        #[serde(with = "serde_bytes")]
        csr_der: Vec<u8>,
    },
    /// Collector → agent: the renewed certificate.
    RenewResponse {
        #[serde(with = "serde_bytes")]
        cert_der: Vec<u8>,
    },
    /// Either way: a request failed. `code` is stable, `message` is for people.
    Error { code: String, message: String },
    /// Agent → collector: are you there, and what is your clock (`holdfast-agent doctor`;
    /// unlike a heartbeat it records nothing).
    Ping { time_ms: UnixMs },
    /// Collector → agent: the answer to [`Message::Ping`], with the collector's clock.
    Pong { time_ms: UnixMs },
}

/// A customer set on offer: its version, size in bytes, and the signed manifest of its
/// pieces ([`crate::edm::manifest::Manifest`]; absent from collectors before it, whose
/// offers an agent does not take).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdmOffer {
    pub version: String,
    pub size: u64,
    #[serde(default)]
    pub manifest: Option<Signed>,
}

/// Largest piece of a customer set in one frame.
pub const EDM_CHUNK: usize = 2 * 1024 * 1024;
/// Largest customer set an agent accepts, in bytes.
pub const MAX_EDM: u64 = 256 * 1024 * 1024;

fn one() -> u64 {
    1
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The message serialized to more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The serializer failed (should not happen for our types).
    #[error("cannot serialize message: {0}")]
    Serialize(String),
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The length prefix is zero: there is not even a version byte.
    #[error("empty frame")]
    Empty,
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The input ended in the middle of a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
}

/// Encodes one message as a complete frame.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let body = rmp_serde::to_vec_named(msg).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    let len = body.len() + 1;
    if len > MAX_FRAME {
        return Err(EncodeError::TooLarge(len));
    }
    let mut out = Vec::with_capacity(HEADER + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(VERSION);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the length prefix of a frame, checking it against [`MAX_FRAME`].
pub fn frame_len(header: [u8; HEADER]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_FRAME {
        return Err(DecodeError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (version byte and message, without the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, DecodeError> {
    let (&version, rest) = body.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    rmp_serde::from_slice(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// Decodes exactly one complete frame, which must fill `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut d = Decoder::default();
    d.push(bytes)?;
    match d.next_message()? {
        Some(m) if d.buffered() == 0 => Ok(m),
        Some(_) => Err(DecodeError::Malformed("trailing bytes after frame".into())),
        None => {
            let expected = bytes
                .get(..HEADER)
                .and_then(|h| <[u8; HEADER]>::try_from(h).ok())
                .map(|h| u32::from_be_bytes(h) as usize + HEADER)
                .unwrap_or(HEADER);
            Err(DecodeError::Truncated {
                expected,
                got: bytes.len(),
            })
        }
    }
}

/// Incremental decoder: push bytes as they arrive, pull whole messages out.
/// It buffers at most one frame plus its header.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes. Fails early when a buffered header announces an oversized frame.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(bytes);
        if let Some(h) = self.header() {
            frame_len(h)?;
        }
        Ok(())
    }

    /// Bytes buffered and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn header(&self) -> Option<[u8; HEADER]> {
        self.buf.get(..HEADER).and_then(|h| h.try_into().ok())
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        let Some(h) = self.header() else {
            return Ok(None);
        };
        let len = frame_len(h)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let msg = decode_body(&self.buf[HEADER..HEADER + len]);
        self.buf.drain(..HEADER + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_fits_the_frame_it_travels_in() {
        assert_eq!(crate::signed::MAX_SIGNED, MAX_FRAME);
    }
    use crate::event::{Action, ContentSummary, EventBody, FileActivity, GENESIS};

    fn sample_event(seq: u64) -> SealedEvent {
        let body = EventBody::File(FileActivity {
            size: Some(1234),
            sha256: Some("ab".repeat(32)),
            summary: Some(ContentSummary {
                file_type: "csv".into(),
                records: 3,
                findings: [("email".to_string(), 3)].into_iter().collect(),
                truncated: false,
                ..Default::default()
            }),
            ..FileActivity::new(Action::Created, "/home/alice/Downloads/contacts.csv")
        });
        SealedEvent::seal(seq, UnixMs(1_700_000_000_000), "alice", GENESIS, &body).unwrap()
    }

    /// One `check()` per module: encode, decode, compare.
    fn check(msg: Message) {
        let bytes = encode(&msg).unwrap();
        assert_eq!(decode(&bytes).unwrap(), msg);
        // Byte-at-a-time through the incremental decoder gives the same message.
        let mut d = Decoder::default();
        let mut out = None;
        for b in &bytes {
            d.push(&[*b]).unwrap();
            if let Some(m) = d.next_message().unwrap() {
                out = Some(m);
            }
        }
        assert_eq!(out, Some(msg));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn round_trips() {
        check(Message::Ack { through_seq: 42 });
        check(Message::EventBatch {
            events: vec![sample_event(1), sample_event(2)],
        });
        check(Message::Error {
            code: "x".into(),
            message: "y".into(),
        });
        check(Message::Heartbeat {
            agent_version: "0.1.0".into(),
            hostname: "h".into(),
            os: "linux".into(),
            policy_version: "abc".into(),
            time_ms: UnixMs(-1),
            spool_backlog: 7,
            edm_version: "e1".into(),
            coverage: Some(crate::event::Coverage {
                watched_roots: 2,
                files: 10,
                limit_reached: true,
                ..Default::default()
            }),
            health: vec!["pipeline: spool database: readonly".into()],
        });
        check(Message::Sync {
            through_seq: 9,
            time_ms: UnixMs(1),
            renew: true,
            updates: vec![Signed {
                body: vec![1, 2],
                signature: vec![3; 64],
            }],
            edm: Some(EdmOffer {
                version: "e2".into(),
                size: 10,
                manifest: Some(Signed {
                    body: b"manifest".to_vec(),
                    signature: vec![7; 64],
                }),
            }),
            orders: vec![Signed {
                body: vec![4],
                signature: vec![5; 64],
            }],
        });
        check(Message::OrderReceipt {
            order_id: "ord-1".into(),
            receipts: vec![crate::order::ActionReceipt {
                action: "quarantine".into(),
                ok: false,
                items: 2,
                bytes: 300,
                detail: "a: denied".into(),
            }],
        });
        check(Message::Ping {
            time_ms: UnixMs(1_700_000_000_000),
        });
        check(Message::Pong {
            time_ms: UnixMs(1_700_000_000_500),
        });
        check(Message::ReceiptAck {
            order_id: "ord-1".into(),
        });
        check(Message::EdmChunkRequest {
            version: "e2".into(),
            offset: 4,
        });
        check(Message::EdmChunk {
            version: "e2".into(),
            offset: 4,
            total: 10,
            bytes: vec![9; 6],
        });
        check(Message::RenewRequest {
            csr_der: vec![0; 300],
        });
        check(Message::RenewResponse { cert_der: vec![] });
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut d = Decoder::default();
        let header = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert_eq!(d.push(&header), Err(DecodeError::TooLarge(MAX_FRAME + 1)));
    }

    #[test]
    fn bad_inputs_are_values_not_panics() {
        assert_eq!(decode(&[0, 0, 0, 0]), Err(DecodeError::Empty));
        assert_eq!(decode(&[0, 0, 0, 2, 9, 0]), Err(DecodeError::Version(9)));
        assert!(matches!(
            decode(&[0, 0, 0, 3, VERSION, 0xc1, 0xc1]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 9, VERSION]),
            Err(DecodeError::Truncated {
                expected: 13,
                got: 5
            })
        ));
        // Every prefix and every single-byte corruption of a valid frame decodes to a value.
        let good = encode(&Message::EventBatch {
            events: vec![sample_event(9)],
        })
        .unwrap();
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
            let mut bad = good.clone();
            bad[n] ^= 0xA5;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        // A newer peer adds a field to Ack: this build still reads it.
        #[derive(Serialize)]
        enum Newer {
            #[serde(rename = "ack")]
            Ack { through_seq: u64, extra: String },
        }
        let body = rmp_serde::to_vec_named(&Newer::Ack {
            through_seq: 5,
            extra: "future".into(),
        })
        .unwrap();
        let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(VERSION);
        frame.extend_from_slice(&body);
        assert_eq!(decode(&frame).unwrap(), Message::Ack { through_seq: 5 });
    }
}
