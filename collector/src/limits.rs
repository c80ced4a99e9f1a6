//! The per-address guard on failed logins, pure (the caller passes `now`). The per-connection
//! event rate is the session's (`holdfast_shared::session::collector::TokenBucket`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
