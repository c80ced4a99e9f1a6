//! The Holdfast endpoint agent as a library: the binary in `main.rs` only parses flags and
//! wires these modules together, and the collector's `quickstart` embeds the same daemon.
//!
//! Each I/O edge sits behind one module: `watch` (notify), `spool` (SQLite), `uplink`
//! (QUIC), `clock` (time), `safe_fs` (every operation on the user's files, by descriptor), `scan`
//! (reading one file). Decisions come from `holdfast-shared`.

pub mod access;
pub mod clock;
pub mod config;
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod doctor;
pub mod enroll;
#[cfg(target_os = "linux")]
pub mod fanotify;
pub mod gap;
pub mod health;
pub mod identity;
pub mod lineage;
pub mod mounts;
pub mod orders;
#[cfg(target_os = "linux")]
pub mod phones;
pub mod pipeline;
pub mod print;
pub mod reads;
pub mod rescan;
pub mod safe_fs;
pub mod scan;
pub mod spool;
pub mod tls;
pub mod tree;
pub mod updates;
pub mod uplink;
pub mod watch;
pub mod workers;

/// The agent's version, reported to the collector.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
