//! The I/O both binaries share, each behind one small adapter: the wall clock, atomic writes
//! and PEM files, the host name, process plumbing (logs, runtime, stop signals), the QUIC and
//! TLS settings both ends of a connection agree on, and reading policy files from disk.
//!
//! `holdfast-shared` stays pure (bytes, values and a `now` passed in); what touches the
//! operating system and is needed by both the agent and the collector lives here, so the
//! collector does not link the agent for it.

pub mod clock;
pub mod config_file;
pub mod fs;
pub mod host;
pub mod policy_files;
pub mod process;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
