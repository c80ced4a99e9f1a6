//! The agent's one clock: everything that needs "now" asks here (and tests can pass values).

/// Milliseconds since the Unix epoch; 0 if the system clock is before 1970.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
