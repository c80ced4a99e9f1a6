//! What one file's reading may cost, shared by every reader of containers (ZIP archives,
//! workbooks): bounds on depth, entries, bytes and ratio, the cancel flag the agent raises at
//! the CPU limit, and the findings that say a part could not be read.

/// The finding counted, besides its own kind, for every part that could not be read.
pub const UNREADABLE: &str = "unreadable";

/// Bounds on what one archive or workbook may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Archives inside archives inside … up to this depth (the outer archive is depth 1).
    pub max_depth: u32,
    /// Entries looked at, over all levels.
    pub max_entries: u64,
    /// Uncompressed bytes read, over all levels.
    pub max_total: u64,
    /// Uncompressed / compressed ratio beyond which an entry is a bomb (checked once an
    /// entry has produced more than 1 MiB).
    pub max_ratio: u64,
    /// Largest nested archive or spreadsheet held in memory to be opened.
    pub max_nested: u64,
    /// Raised from outside when the work has used its time (the agent's CPU limit): the
    /// readers look at it between records, entries and chunks and stop, keeping what they
    /// found, with a `cpu_limit` finding.
    pub cancel: Option<Cancel>,
}

/// A flag raised from outside to stop a classification (see [`Limits::cancel`]). Only read
/// here: the crate keeps no clock.
#[derive(Debug, Clone, Copy)]
pub struct Cancel(pub &'static std::sync::atomic::AtomicBool);

impl Cancel {
    /// Whether the work must stop now.
    pub fn raised(self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Cancel) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Cancel {}

impl Limits {
    /// Whether the work must stop now (the cancel flag is raised).
    pub fn cancelled(&self) -> bool {
        self.cancel.is_some_and(Cancel::raised)
    }
}

/// The finding for work stopped by [`Limits::cancel`].
pub const CPU_LIMIT: &str = "cpu_limit";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 3,
            max_entries: 10_000,
            max_total: 1 << 30,
            max_ratio: 200,
            max_nested: 32 << 20,
            cancel: None,
        }
    }
}
