//! Storage: the only module that writes SQL. One SQLite file (WAL) holds tokens, devices,
//! events, alerts and published policies. Ingest is idempotent on `(device_id, seq)` and one
//! batch is one transaction, so an acknowledged batch is durable and a resent one changes
//! nothing. Ingest also checks each device's hash chain: a gap, an edited event or an event
//! resent with other content raises an alert.

use rusqlite::Connection;
use std::path::Path;

/// Builds a row struct from a result row, reading its fields from the row's columns in the
/// order they are written, which is the SELECT's order:
/// `from_columns!(r, Note { id, time_ms, author, text })`. A field written `name: f` reads the
/// type `f` takes and stores what `f` returns. The one place a query's columns meet a struct's
/// fields, so that a column added to both cannot be read at the wrong index.
macro_rules! from_columns {
    ($row:expr, $ty:ident { $($field:ident $(: $convert:expr)?),* $(,)? }) => {{
        let row: &rusqlite::Row<'_> = $row;
        let mut column = 0usize;
        let mut next = || {
            column += 1;
            column - 1
        };
        Ok($ty { $($field: from_columns!(@read row, next() $(, $convert)?)),* })
    }};
    (@read $row:ident, $i:expr) => {
        $row.get($i)?
    };
    (@read $row:ident, $i:expr, $convert:expr) => {
        ($convert)($row.get($i)?)
    };
}

/// A JSON column read back, or nothing when it is empty or no longer parses.
fn json_column<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// A JSON list or map column read back (empty when absent or unreadable).
fn json_or_empty<T: serde::de::DeserializeOwned + Default>(text: Option<String>) -> T {
    json_column(text).unwrap_or_default()
}

mod alerts;
mod connector_runs;
pub mod correlate;
mod crm;
mod devices;
mod events;
#[cfg(test)]
pub(crate) mod fixtures;
mod ingest;
mod offboard;
mod schema;
mod tokens;
mod triage;
mod updates;
use alerts::{
    alert_row, alert_row_at, notice_alerts, severity_rank, span, system_hit, upsert_alert, Hit,
    ALERT_COLUMNS,
};
pub use alerts::{system_rules, Alert, AlertStatus};
pub use connector_runs::{AfterAttempt, ConnectorRun, HandedCustomer, LastAttempt, RunStatus};
use correlate::Ingested;
pub use crm::{CrmEvent, CrmPoll};
pub use devices::{Beat, Device};
pub use events::StoredEvent;
use events::{events_where_in, stored_hash};
use offboard::{audit_in, audit_row};
pub use offboard::{AuditEntry, NewOrder, OffboardRow, OrderRow, UserRow};
use schema::{ADDED_COLUMNS, INDEXES, SCHEMA};
pub use tokens::TokenRefusal;
pub use triage::{
    AlertChange, AlertCursor, AlertFilter, AlertOrder, ApiToken, BySeverity, EventFilter, Note,
    RiskSignals, Scope, Session,
};
pub use updates::{CustomerSetInfo, NewCustomerSet, PublishedPolicy};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, locked beyond the busy timeout, corrupt file).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A value could not be serialized for storage.
    #[error("encoding: {0}")]
    Encode(String),
}

/// One connection to the collector database.
pub struct Store {
    conn: Connection,
    correlation: correlate::Correlation,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
            // Events, sessions and CSRF tokens are the collector's alone.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut conn = Connection::open(path)?;
        // Every transaction takes the write lock when it begins. A deferred one that reads and
        // then writes gets SQLITE_BUSY at once, busy timeout or not, when another connection
        // (the running collector, a CLI command) committed in between.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        for file in [
            path.to_path_buf(),
            path.with_extension("db-wal"),
            path.with_extension("db-shm"),
        ] {
            if file.exists() {
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            }
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, decl) in ADDED_COLUMNS {
            let exists: bool = conn.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )?;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        conn.execute_batch(INDEXES)?;
        Ok(Store {
            conn,
            correlation: correlate::Correlation::default(),
        })
    }

    /// Sets how ingest correlates (collector.toml `[correlation]`).
    pub fn set_correlation(&mut self, c: correlate::Correlation) {
        self.correlation = c;
    }
}
