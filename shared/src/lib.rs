//! Holdfast's sans-IO core: what agent and collector both speak and compute.
//!
//! Nothing in this crate opens a socket, a file or reads a clock: it is handed bytes,
//! values and a `now`, and returns values. That keeps every rule testable without I/O.

pub mod classify;
pub mod country;
pub mod edm;
pub mod event;
pub mod ident;
pub mod order;
pub mod policy;
pub mod print;
pub mod reads;
pub mod session;
pub mod signed;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;
pub mod token;
pub mod wire;

/// Hex-encoded SHA-256 of `bytes`: the one digest helper both sides use.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
