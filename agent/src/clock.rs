//! The agent's one clock: everything in the agent that needs "now" asks here (and tests can
//! pass values).
//!
//! `HOLDFAST_CLOCK_SKEW_MS` shifts the reported time, so end-to-end tests can run an agent
//! whose clock is hours off without root. It changes nothing a local admin could not do by
//! setting the system clock, and the collector flags the skew either way.

use holdfast_shared::time::UnixMs;
use std::sync::OnceLock;

/// The test-only clock offset, read once.
fn skew_ms() -> i64 {
    static SKEW: OnceLock<i64> = OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("HOLDFAST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Milliseconds since the Unix epoch, as the agent reports them (shifted by the test-only
/// skew); 0 if the system clock is before 1970.
pub fn now_ms() -> UnixMs {
    holdfast_io::clock::now_ms() + skew_ms()
}
