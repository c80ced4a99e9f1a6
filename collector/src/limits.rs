//! Rate limits, pure (the caller passes `now`): the per-connection token bucket that turns
//! an agent sending faster than its share into a wait (backpressure through delayed acks),
//! never into dropped events; and the per-address guard on failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins (console form or API bearer token) allowed from one address at once.
pub const LOGIN_BURST: f64 = 10.0;
/// One more failed login is allowed per this long.
pub const LOGIN_REFILL: Duration = Duration::from_secs(6);
/// Addresses followed at most; the one idle longest is forgotten first.
const LOGIN_ADDRESSES: usize = 4096;

/// Failed logins per address: each address may fail [`LOGIN_BURST`] times, then once per
/// [`LOGIN_REFILL`]; past that its attempts are refused unchecked until the bucket refills
/// (so guessing tokens runs at 10 a minute, not thousands a second).
#[derive(Debug, Default)]
pub struct LoginGuard {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl LoginGuard {
    fn level(&self, ip: IpAddr, now: Instant) -> f64 {
        match self.buckets.get(&ip) {
            None => LOGIN_BURST,
            Some(&(tokens, last)) => {
                let earned =
                    now.saturating_duration_since(last).as_secs_f64() / LOGIN_REFILL.as_secs_f64();
                (tokens + earned).min(LOGIN_BURST)
            }
        }
    }

    /// Whether `ip` may try now; otherwise how long until it may.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let level = self.level(ip, now);
        if level >= 1.0 {
            Ok(())
        } else {
            Err(LOGIN_REFILL.mul_f64(1.0 - level))
        }
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let level = self.level(ip, now);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= LOGIN_ADDRESSES {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
        self.buckets.insert(ip, ((level - 1.0).max(0.0), now));
    }
}

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
    fn failed_logins_are_limited_per_address_and_earned_back() {
        let t0 = Instant::now();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let mut g = LoginGuard::default();
        for _ in 0..10 {
            assert!(g.check(a, t0).is_ok());
            g.failed(a, t0);
        }
        assert_eq!(g.check(a, t0), Err(LOGIN_REFILL));
        assert!(g.check(b, t0).is_ok(), "another address is not held up");
        assert!(g.check(a, t0 + LOGIN_REFILL).is_ok());
        g.failed(a, t0 + LOGIN_REFILL);
        assert!(g.check(a, t0 + LOGIN_REFILL).is_err());
        // Bounded: the map forgets the longest idle.
        for i in 0..(LOGIN_ADDRESSES as u32 + 10) {
            g.failed(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_secs(100));
        }
        assert!(g.buckets.len() <= LOGIN_ADDRESSES);
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
