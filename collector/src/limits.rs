//! Per-connection rate limiting: a token bucket that turns an agent sending faster than its
//! share into a wait (backpressure through delayed acks), never into dropped events. Pure:
//! the caller passes `now`.

use std::time::{Duration, Instant};

/// A token bucket of `rate` tokens per second holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` is one second's worth of `rate`, at least one batch.
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        let burst = rate.max(holdfast_shared::wire::MAX_BATCH as f64);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Spends `n` tokens and returns how long to wait before serving the request: zero while
    /// the bucket holds enough, otherwise the time to earn the shortfall.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: the waits a sequence of (offset ms, tokens) requests get.
    fn check(rate: u32, requests: &[(u64, u64)], want_ms: &[u64]) {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        let got: Vec<u64> = requests
            .iter()
            .map(|&(at, n)| b.take(n, t0 + Duration::from_millis(at)).as_millis() as u64)
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
    }
}
