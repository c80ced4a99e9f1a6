//! The session between an agent and its collector, as two state machines with no I/O: the
//! agent's ([`agent::AgentSession`]: connect, back off, heartbeat, batch, delete on ack) and
//! the collector's for each connection ([`collector::CollectorSession`]: what a device may
//! ask, its rate, what a heartbeat answers, revocation checks). Inputs are messages, timer
//! expiries and a `now` in milliseconds; the uplink and the ingest drive them over QUIC. The
//! `pair` tests run both sides together through the real frame codec in simulated time.

pub mod agent;
pub mod collector;
#[cfg(test)]
mod pair;

pub use agent::{retry_delay_ms, AgentSession, Step, Timing};
