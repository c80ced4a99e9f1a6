//! The event model: what the agent reports about file activity, and what the collector stores.

use crate::time::UnixMs;
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

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    /// This severity raised by `levels`, at most critical.
    pub fn raised(self, levels: u8) -> Severity {
        const ORDER: [Severity; 4] = [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        let i = ORDER.iter().position(|s| *s == self).unwrap_or(0);
        ORDER[(i + usize::from(levels)).min(3)]
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
    /// The classifiers judged the content a customer table or contact list.
    #[serde(default)]
    pub customer_table: bool,
    /// Column roles recognised in the header (`name`, `company`, `email`, ...): names of
    /// columns, never their values.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The text encoding read (`utf-8`, `utf-16le`, `gb18030`, ...), for text formats.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Set when the extension contradicts the content, e.g. `extension .jpg, content zip`.
    #[serde(default)]
    pub disguised: Option<String>,
}

/// A rule that an event matched, as carried on the wire and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    pub id: String,
    pub severity: Severity,
}

/// A place data leaves the device by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `removable`, `cloud`, `network`, `phone`, `upload` (read by a browser, mail client or
    /// chat app: the file is on its way out through it) or `print` (a print job).
    pub kind: String,
    /// The cloud service (`Dropbox`, `百度网盘`), or the volume's label (`KINGSTON`), or the
    /// share (`//nas/sales`), or the app (`Chromium`, `Thunderbird`, `企业微信`), or the
    /// printer's queue (`office-2f`), or the phone (`SAMSUNG_Android_R58M12345`).
    pub name: String,
    /// For an upload: the kind of app (`browser`, `mail`, `chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_kind: Option<String>,
    /// Where it is mounted (removable media and shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The file system's UUID, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The block device (`8:17`, and its serial number when the kernel knows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// For a print job: the account it came from, as the print system recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For a print job: the pages printed (so far, when it was reported before it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
}

impl Destination {
    /// How a file left by it, in words: `onto removable SANDISK`, `uploaded by Chromium
    /// (browser)`, `printed on office-2f by ivy (3 pages)`, `onto phone Pixel_7`, `sent over
    /// Bluetooth by obexd`.
    pub fn way_out(&self) -> String {
        match (self.kind.as_str(), &self.app_kind) {
            ("upload", Some(app)) => format!("uploaded by {} ({app})", self.name),
            ("upload", None) => format!("uploaded by {}", self.name),
            ("phone", Some(app)) if app == "bluetooth" => {
                format!("sent over Bluetooth by {}", self.name)
            }
            ("print", _) => {
                let by = self
                    .user
                    .as_ref()
                    .map(|u| format!(" by {u}"))
                    .unwrap_or_default();
                let pages = match self.pages {
                    Some(1) => " (1 page)".to_string(),
                    Some(n) => format!(" ({n} pages)"),
                    None => String::new(),
                };
                format!("printed on {}{by}{pages}", self.name)
            }
            _ => format!("onto {} {}", self.kind, self.name),
        }
    }
}

/// The earlier sighting of the same content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Where the content was first seen.
    pub path: String,
    /// When (device clock, milliseconds).
    pub time_ms: UnixMs,
    /// The first sighting's event sequence number on this device, when it was reported.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `copy` (the same bytes elsewhere) or `archive` (an entry of this archive).
    pub via: String,
    /// For an archive: the entry holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// The process that opened a file (read monitoring through fanotify).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// Real user id; absent when the platform did not say (the inotify fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The uid's user name, when the device knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The executable's path, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Whether the executable file is root's and nobody else can write it or its folder
    /// (only such a program may be excluded from read monitoring); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_trusted: Option<bool>,
    /// SHA-256 of the executable, when a policy pins exclusions to hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
}

/// Many customer files opened in a short time by one process or one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkRead {
    /// Distinct files opened within the window.
    pub files: u64,
    /// The window, in seconds.
    pub within_s: u64,
    /// `process` or `user`: who the files were counted for.
    pub by: String,
    /// The customer-data folder of the rule the files are under.
    pub folder: String,
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
    /// Where the file is, when that is somewhere data leaves by: removable media, a
    /// cloud-sync folder, a network share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Box<Destination>>,
    /// Where this content was first seen on the device, when it was elsewhere first (a copy,
    /// a rename, a file put into an archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Box<Origin>>,
    /// Who opened the file, for opens seen by read monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<Process>>,
    /// Set on the open that crossed a bulk-read rule's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<Box<BulkRead>>,
}

impl FileActivity {
    /// `action` on `path`, with nothing else known yet (no content, rules or context).
    pub fn new(action: Action, path: impl Into<String>) -> FileActivity {
        FileActivity {
            action,
            path: path.into(),
            old_path: None,
            size: None,
            sha256: None,
            summary: None,
            error: None,
            rules: Vec::new(),
            destination: None,
            origin: None,
            process: None,
            bulk: None,
        }
    }
}

/// Notice kinds the collector acts on (besides counting them).
pub mod notice {
    /// The agent was not running (stopped or crashed): from when to when, and what the
    /// catch-up at its next start found (`counts`: `from_ms`, `to_ms`, `files`,
    /// `customer_files`, `deleted`, `crashed`).
    pub const AGENT_GAP: &str = "agent_gap";
    /// The agent is stopping on a signal; the message names the signal and its sender.
    pub const AGENT_STOPPED: &str = "agent_stopped";
    /// The agent is being removed or disabled for good (its package removed, its service
    /// disabled); the message says how. Its device is `agent_removed` until it reports
    /// again.
    pub const AGENT_REMOVED: &str = "agent_removed";
}

/// Something the agent reports about itself (dropped events, watch trouble).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentNotice {
    /// A stable machine-readable kind, e.g. `watch_overflow`.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub count: u64,
    /// Counts by sub-kind, e.g. what a full spool dropped: `{"created/low": 812}`.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

/// What an agent watches, polls and knows of, as it reports in heartbeats: a device
/// watching less than its policy asks shows here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Roots watched through the kernel.
    #[serde(default)]
    pub watched_roots: u32,
    /// Roots scanned periodically instead (configured, or left out by the watch limit).
    #[serde(default)]
    pub polled_roots: u32,
    /// Roots that could not be watched or scanned at all (missing, no permission).
    #[serde(default)]
    pub failed_roots: u32,
    /// Directories under the roots.
    #[serde(default)]
    pub dirs: u64,
    /// Files in the agent's index.
    #[serde(default)]
    pub files: u64,
    /// The kernel's limit on watches was reached.
    #[serde(default)]
    pub limit_reached: bool,
    /// The index is full: files beyond it are not tracked for rescans.
    #[serde(default)]
    pub index_full: bool,
    /// How reads are monitored (`fanotify: …`, `inotify fallback: …`, `off (…)`).
    #[serde(default)]
    pub reads: String,
    /// Reads of customer files lost since the agent started (a full queue or channel).
    #[serde(default)]
    pub reads_dropped: u64,
    /// Customer folders not monitored for reads because the limit on marks was reached.
    #[serde(default)]
    pub reads_unmarked: u64,
}

/// The body of an event.
// Bodies are built one at a time and serialized at once; a notice's few unused bytes cost
// nothing, and boxing the common variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
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
    pub time_ms: UnixMs,
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
    /// A notice of `kind` saying `message`, about `count` things (no per-kind counts).
    pub fn notice(kind: &str, message: impl Into<String>, count: u64) -> EventBody {
        EventBody::Notice(AgentNotice {
            kind: kind.into(),
            message: message.into(),
            count,
            counts: BTreeMap::new(),
        })
    }

    /// The compact stored form (the same MessagePack the wire uses).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BodyCodecError> {
        rmp_serde::to_vec_named(self).map_err(|e| BodyCodecError(e.to_string()))
    }

    /// Reads the stored form back.
    pub fn from_bytes(bytes: &[u8]) -> Result<EventBody, BodyCodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| BodyCodecError(e.to_string()))
    }
}

/// The `prev_hash` of a device's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// An event as the agent spools and sends it: header fields, the SHA-256 of the event before
/// it, and the body exactly as stored. The collector hashes these bytes, never a
/// re-encoding, so a newer agent's extra fields cannot break the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEvent {
    pub seq: u64,
    pub time_ms: UnixMs,
    pub user: String,
    /// [`SealedEvent::hash`] of the event with `seq - 1` ([`GENESIS`] for the first).
    #[serde(with = "serde_bytes")]
    pub prev_hash: Vec<u8>,
    /// [`EventBody::to_bytes`] output.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl SealedEvent {
    /// Seals a body: the one place an event's chain hash input is laid out.
    pub fn seal(
        seq: u64,
        time_ms: UnixMs,
        user: &str,
        prev_hash: [u8; 32],
        body: &EventBody,
    ) -> Result<SealedEvent, BodyCodecError> {
        Ok(SealedEvent {
            seq,
            time_ms,
            user: user.to_string(),
            prev_hash: prev_hash.to_vec(),
            body: body.to_bytes()?,
        })
    }

    /// SHA-256 over a domain tag and every field, each length-delimited. Editing any field
    /// of a spooled event changes this value and breaks the next event's link.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"holdfast-event-v1\0");
        h.update(self.seq.to_be_bytes());
        h.update(self.time_ms.ms().to_be_bytes());
        for part in [self.user.as_bytes(), &self.prev_hash, &self.body] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Decodes the body into an [`Event`] of `device_id` (the authenticated peer).
    pub fn open(&self, device_id: &str) -> Result<Event, BodyCodecError> {
        Ok(Event {
            device_id: device_id.to_string(),
            user: self.user.clone(),
            seq: self.seq,
            time_ms: self.time_ms,
            body: EventBody::from_bytes(&self.body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(n: u64) -> EventBody {
        EventBody::notice("t", format!("n{n}"), n)
    }

    /// One `check()` per module: sealing then opening gives the event back, and changing any
    /// field changes the hash.
    fn check(seq: u64, time_ms: UnixMs, user: &str, prev: [u8; 32], body: EventBody) {
        let sealed = SealedEvent::seal(seq, time_ms, user, prev, &body).unwrap();
        let opened = sealed.open("dev").unwrap();
        assert_eq!(
            (
                opened.seq,
                opened.time_ms,
                opened.user.as_str(),
                &opened.body
            ),
            (seq, time_ms, user, &body)
        );
        let h = sealed.hash();
        let mut edits = vec![sealed.clone(); 5];
        edits[0].seq = edits[0].seq.wrapping_add(1);
        edits[1].time_ms += 1;
        edits[2].user.push('x');
        edits[3].prev_hash[0] ^= 1;
        edits[4].body.push(0);
        for e in edits {
            assert_ne!(e.hash(), h, "{e:?}");
        }
    }

    #[test]
    fn seal_open_and_hash() {
        check(1, UnixMs(0), "ada", GENESIS, notice(1));
        check(u64::MAX, UnixMs(-5), "", [7; 32], notice(2));
        // Length-delimited: moving a byte between user and body is not the same event.
        let a = SealedEvent {
            seq: 1,
            time_ms: UnixMs(0),
            user: "ab".into(),
            prev_hash: vec![],
            body: vec![b'c'],
        };
        let b = SealedEvent {
            user: "a".into(),
            body: b"bc".to_vec(),
            ..a.clone()
        };
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn a_way_out_says_where_in_words() {
        let d = |kind: &str, name: &str| Destination {
            kind: kind.into(),
            name: name.into(),
            ..Destination::default()
        };
        let cases = [
            (d("removable", "SANDISK"), "onto removable SANDISK"),
            (d("phone", "Pixel_7"), "onto phone Pixel_7"),
            (
                Destination {
                    app_kind: Some("browser".into()),
                    ..d("upload", "Chromium")
                },
                "uploaded by Chromium (browser)",
            ),
            (d("print", "pdf"), "printed on pdf"),
            (
                Destination {
                    app_kind: Some("bluetooth".into()),
                    ..d("phone", "obexd")
                },
                "sent over Bluetooth by obexd",
            ),
            (
                Destination {
                    user: Some("ivy".into()),
                    pages: Some(3),
                    ..d("print", "office-2f")
                },
                "printed on office-2f by ivy (3 pages)",
            ),
            (
                Destination {
                    pages: Some(1),
                    ..d("print", "pdf")
                },
                "printed on pdf (1 page)",
            ),
        ];
        for (dest, want) in cases {
            assert_eq!(dest.way_out(), want);
        }
    }
}
