//! The Holdfast collector as a library: `main.rs` parses flags; these modules do the work.
//!
//! `ingest` owns the QUIC socket, `store` owns every SQL statement, `pki` owns the CA key.

pub mod config;
pub mod ingest;
pub mod pki;
pub mod quickstart;
pub mod store;
pub mod tokens;

/// Milliseconds since the Unix epoch: the collector's one clock.
pub fn now_ms() -> i64 {
    holdfast_agent::clock::now_ms()
}
