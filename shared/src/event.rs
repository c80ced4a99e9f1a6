//! The event model: what the agent reports about file activity, and what the collector stores.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Severity of a rule, and of the alert it raises. Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The lowercase name used in policy files, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Modified,
    /// Opened or read, where the platform reports it.
    Opened,
    Renamed,
    Deleted,
}

impl Action {
    /// All actions, in a stable order (for validation messages).
    pub const ALL: [Action; 5] = [
        Action::Created,
        Action::Modified,
        Action::Opened,
        Action::Renamed,
        Action::Deleted,
    ];

    /// The lowercase name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Modified => "modified",
            Action::Opened => "opened",
            Action::Renamed => "renamed",
            Action::Deleted => "deleted",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What the classifiers found in a file's content. Counts only: never the content itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSummary {
    /// The detected file type (`csv`, `tsv`, `text`, `binary`, ...).
    #[serde(default)]
    pub file_type: String,
    /// Rows or entries holding at least one customer identifier.
    #[serde(default)]
    pub records: u64,
    /// Identifier count per classifier, e.g. `{"email": 120, "phone": 118}`.
    #[serde(default)]
    pub findings: BTreeMap<String, u64>,
    /// True when the classifier stopped early at its byte budget.
    #[serde(default)]
    pub truncated: bool,
}

/// A rule that an event matched, as carried on the wire and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    pub id: String,
    pub severity: Severity,
}

/// File activity seen by an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileActivity {
    pub action: Action,
    pub path: String,
    /// The previous path, for renames.
    #[serde(default)]
    pub old_path: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// Hex SHA-256 of the content; absent when the file is gone or unreadable.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub summary: Option<ContentSummary>,
    /// Why the content could not be read, when it could not.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleMatch>,
}

/// Something the agent reports about itself (dropped events, watch trouble).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentNotice {
    /// A stable machine-readable kind, e.g. `watch_overflow`.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub count: u64,
}

/// The body of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    File(FileActivity),
    Notice(AgentNotice),
}

/// One event from one device. `(device_id, seq)` identifies it exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub device_id: String,
    pub user: String,
    /// Per-device monotonic sequence number, starting at 1.
    pub seq: u64,
    /// Device time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub body: EventBody,
}

impl Event {
    /// The file activity, when this is a file event.
    pub fn file(&self) -> Option<&FileActivity> {
        match &self.body {
            EventBody::File(f) => Some(f),
            EventBody::Notice(_) => None,
        }
    }
}

/// Why a stored event body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event body: {0}")]
pub struct BodyCodecError(String);

impl EventBody {
    /// The compact stored form (the same MessagePack the wire uses).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BodyCodecError> {
        rmp_serde::to_vec_named(self).map_err(|e| BodyCodecError(e.to_string()))
    }

    /// Reads the stored form back.
    pub fn from_bytes(bytes: &[u8]) -> Result<EventBody, BodyCodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| BodyCodecError(e.to_string()))
    }
}
