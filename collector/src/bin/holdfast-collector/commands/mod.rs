//! One module per command: each its `Args` (flags and subcommands) and its `exec`.

pub mod alerts;
pub mod api_token;
pub mod audit;
pub mod connectors;
pub mod devices;
pub mod edm;
pub mod events;
pub mod hr;
pub mod offboard;
pub mod policy;
#[cfg(feature = "quickstart")]
pub mod quickstart;
pub mod serve;
pub mod token;
pub mod users;
