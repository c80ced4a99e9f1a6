//! The wall clock, read in one place: milliseconds since the Unix epoch.

use holdfast_shared::time::UnixMs;
/// Milliseconds since the Unix epoch; 0 if the system clock is before 1970.
pub fn now_ms() -> UnixMs {
    UnixMs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}
