//! The policy language: TOML rule files, validated into a [`PolicySet`], and evaluated
//! against a file event as a pure function.
//!
//! A rule file holds `[[rule]]` tables:
//!
//! ```toml
//! [[rule]]
//! id = "crm-export.contacts"
//! description = "A file holding 50 or more customer contact records"
//! severity = "high"                      # low | medium | high | critical
//! actions = ["created", "modified", "renamed"]
//! file_types = ["csv", "tsv"]
//! paths = ["~/Downloads/**"]             # globs; empty means every watched place
//! exclude_paths = ["**/node_modules/**"]
//! [rule.recognise]                       # optional: the file name OR the headers match
//! file_names = ["report*.csv"]           # globs on the file name, case-insensitive
//! headers_any = ["Account Owner"]        # at least one of these column headers
//! headers_all = ["Email", "Phone"]       # every one of these column headers
//! [rule.content]
//! min_records = 50                       # rows carrying at least one identifier
//! min_findings = { email = 10 }          # per-classifier minimum counts
//! customer_table = true                  # the classifiers judged it a customer table
//! ```
//!
//! A rule may list `supersedes = ["other.rule"]`: when both match, only it is reported.
//! It may also raise its own severity with the content, so that one recognised export is one
//! alert at the right severity:
//!
//! ```toml
//! [[rule.escalate]]
//! severity = "critical"                  # above the rule's own
//! min_records = 5000                     # and/or min_findings = { edm = 20 }
//! ```
//!
//! Errors name the file, line, column and field at fault. Unknown fields are errors, so a
//! typo never silently disables a rule.

mod parse;

pub use parse::{line_col, locate, PolicyError, PolicyErrors};

use crate::event::{Action, ContentSummary, RuleMatch, Severity};
use globset::GlobSet;
use std::collections::BTreeMap;

/// The default policy pack, compiled into the binaries: `(file name, TOML source)`.
pub const DEFAULT_PACK: &[(&str, &str)] = &[
    (
        "crm-export.toml",
        include_str!("../../../policies/crm-export.toml"),
    ),
    (
        "offboard.toml",
        include_str!("../../../policies/offboard.toml"),
    ),
    (
        "destinations.toml",
        include_str!("../../../policies/destinations.toml"),
    ),
    ("reads.toml", include_str!("../../../policies/reads.toml")),
    (
        "uploads.toml",
        include_str!("../../../policies/uploads.toml"),
    ),
    ("print.toml", include_str!("../../../policies/print.toml")),
];

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub actions: Vec<Action>,
    pub file_types: Vec<String>,
    paths: Option<GlobSet>,
    exclude_paths: Option<GlobSet>,
    pub min_records: Option<u64>,
    pub min_findings: BTreeMap<String, u64>,
    pub customer_table: Option<bool>,
    pub recognise: Option<Recognise>,
    /// Rules this one replaces when both match (one alert per file, the most specific).
    pub supersedes: Vec<String>,
    /// The file must be in one of these kinds of place (`removable`, `cloud`, `network`).
    pub destinations: Vec<String>,
    /// Higher severities once the content reaches their thresholds (`[[rule.escalate]]`).
    pub escalate: Vec<Escalation>,
    /// Where the rule was defined, `file:line`.
    pub origin: String,
}

/// A severity a matched rule rises to when the content also reaches these thresholds.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub severity: Severity,
    pub min_records: Option<u64>,
    pub min_findings: BTreeMap<String, u64>,
}

/// How a rule recognises a product's export: by file name, or by its header set.
#[derive(Debug, Clone)]
pub struct Recognise {
    file_names: Option<GlobSet>,
    /// Normalised with [`crate::classify::record::header_key`].
    pub headers_any: Vec<String>,
    pub headers_all: Vec<String>,
}

impl Recognise {
    /// Which of the two ways matched: `Some("file name")`, `Some("headers")` or `None`.
    pub fn matched(&self, file_name: &str, headers: &[String]) -> Option<&'static str> {
        if self
            .file_names
            .as_ref()
            .is_some_and(|g| g.is_match(file_name))
        {
            return Some("file name");
        }
        let has = |h: &String| headers.contains(h);
        let any_ok = !self.headers_any.is_empty() && self.headers_any.iter().any(has);
        let all_ok = !self.headers_all.is_empty() && self.headers_all.iter().all(has);
        let ok = match (self.headers_any.is_empty(), self.headers_all.is_empty()) {
            (true, true) => false,
            (false, true) => any_ok,
            (true, false) => all_ok,
            (false, false) => any_ok && all_ok,
        };
        ok.then_some("headers")
    }
}

/// A validated set of rules from one or more files.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
    /// Cloud-sync services and their folders (`[[cloud]]`).
    pub cloud: Vec<CloudService>,
    /// Bulk-read rules (`[[bulk_read]]`): their folders are where opens are monitored.
    pub bulk_reads: Vec<BulkReadRule>,
    /// Programs whose reads of a customer file are uploads (`[[app]]`).
    pub apps: Vec<App>,
    /// What a device does when its user is offboarded (`[offboard]`; defaults otherwise).
    pub offboard: OffboardPlan,
    /// SHA-256 over the sources, so agent and collector can tell which version runs.
    pub version: String,
}

/// Who a bulk-read rule counts opened files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsBy {
    /// One process (pid and executable).
    Process,
    /// One user (uid), whatever programs they use.
    User,
}

impl ReadsBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadsBy::Process => "process",
            ReadsBy::User => "user",
        }
    }
}

/// `[[bulk_read]]`: more than `min_files` distinct customer files (under `folders`) opened
/// within `within` by one process or one user, not counting excluded executables (indexers,
/// backup software, antivirus).
#[derive(Debug, Clone)]
pub struct BulkReadRule {
    /// Unique in the policy set; names the rule in alerts.
    pub id: String,
    /// Shown with its alerts.
    pub description: String,
    /// Of the alert it raises.
    pub severity: Severity,
    /// The folders watched, with `~` expanded and without a trailing `/`.
    pub folders: Vec<String>,
    /// Customer files opened within `within` that make a bulk read.
    pub min_files: u64,
    /// The sliding window the files are counted in.
    pub within: std::time::Duration,
    /// Whether one process or one user is counted.
    pub by: ReadsBy,
    exclude: Vec<ExeExclusion>,
}

/// One excluded executable of a bulk-read rule.
#[derive(Debug, Clone)]
pub struct ExeExclusion {
    glob: globset::GlobMatcher,
    /// When set, only the binary with this SHA-256 (lowercase hex) is excluded.
    sha256: Option<String>,
}

impl BulkReadRule {
    /// The folder (expanded) `path` is under, if any.
    pub fn folder_of(&self, path: &str) -> Option<&str> {
        self.folders
            .iter()
            .find(|f| {
                path.strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(String::as_str)
    }

    /// Whether opens by this process are not counted: its executable's whole path matches
    /// an exclusion, the agent did not find the file writable by anyone but root, and, where
    /// the exclusion pins a SHA-256, the binary has it.
    pub fn excludes(&self, p: &crate::event::Process) -> bool {
        let Some(exe) = p.exe.as_deref() else {
            return false;
        };
        if p.exe_trusted == Some(false) {
            return false;
        }
        self.exclude.iter().any(|x| {
            x.glob.is_match(exe)
                && x.sha256
                    .as_deref()
                    .is_none_or(|want| p.exe_sha256.as_deref() == Some(want))
        })
    }

    /// Whether some exclusion pins a binary's SHA-256 (the agent then hashes executables).
    pub fn pins_sha256(&self) -> bool {
        self.exclude.iter().any(|x| x.sha256.is_some())
    }
}

/// A cloud-sync service: files under its folders are uploaded off the device.
#[derive(Debug, Clone)]
pub struct CloudService {
    pub name: String,
    /// As written (`~` kept; `*` allowed in a segment): the agent watches those that exist.
    pub folders: Vec<String>,
    matcher: GlobSet,
}

/// What kind of program an [`App`] is: where a file it reads goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A web browser: an upload to a web page (webmail, a cloud's web page, an AI chat).
    Browser,
    /// A mail client: an attachment.
    Mail,
    /// A desktop chat app: a file sent in a chat.
    Chat,
    /// A Bluetooth file sender (BlueZ's `obexd` reads the file it pushes to a paired phone or
    /// computer over OBEX).
    Bluetooth,
}

impl AppKind {
    pub const ALL: [AppKind; 4] = [
        AppKind::Browser,
        AppKind::Mail,
        AppKind::Chat,
        AppKind::Bluetooth,
    ];

    /// The lowercase name used in policy files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Browser => "browser",
            AppKind::Mail => "mail",
            AppKind::Chat => "chat",
            AppKind::Bluetooth => "bluetooth",
        }
    }

    /// The destination kind of a file such an app reads: `upload` (a web page, a mail, a
    /// chat), or `phone` for Bluetooth, the way files reach phones without a cable.
    pub fn destination(self) -> &'static str {
        match self {
            AppKind::Browser | AppKind::Mail | AppKind::Chat => "upload",
            AppKind::Bluetooth => "phone",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<AppKind> {
        AppKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A program that sends files off the device when it reads them, by its executable's path.
#[derive(Debug, Clone)]
pub struct App {
    /// As events and the console name it (`Chromium`, `Thunderbird`, `企业微信`).
    pub name: String,
    pub kind: AppKind,
    matcher: GlobSet,
}

impl App {
    /// Whether `exe` (a process's executable, as `/proc/PID/exe` names it) is this app.
    pub fn runs(&self, exe: &str) -> bool {
        self.matcher.is_match(exe)
    }
}

/// The offboarding actions a policy pack configures. Paths keep their `~`: each device
/// expands it for its own user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffboardPlan {
    /// Quarantine customer files (default: yes).
    pub quarantine: bool,
    /// Where to look for them (empty: the agent's watched places).
    pub quarantine_paths: Vec<String>,
    /// A customer table with this many records is a customer file (default 10).
    pub quarantine_min_records: u64,
    /// Folders whose access is taken from the user.
    pub strip_access: Vec<String>,
    /// Caches deleted (CRM offline data and tokens).
    pub purge: Vec<String>,
    /// Severity levels a departing user's alerts rise by, from notice to the effective time
    /// (0 to 3; default 1: high becomes critical).
    pub departing_raise: u8,
}

impl Default for OffboardPlan {
    fn default() -> OffboardPlan {
        OffboardPlan {
            quarantine: true,
            quarantine_paths: Vec::new(),
            quarantine_min_records: 10,
            strip_access: Vec::new(),
            purge: Vec::new(),
            departing_raise: 1,
        }
    }
}

impl OffboardPlan {
    /// The order actions this plan asks of a device.
    pub fn actions(&self) -> Vec<crate::order::OrderAction> {
        use crate::order::OrderAction;
        let mut out = Vec::new();
        if self.quarantine {
            out.push(OrderAction::Quarantine {
                paths: self.quarantine_paths.clone(),
                min_records: self.quarantine_min_records,
            });
        }
        if !self.strip_access.is_empty() {
            out.push(OrderAction::StripAccess {
                paths: self.strip_access.clone(),
            });
        }
        if !self.purge.is_empty() {
            out.push(OrderAction::Purge {
                paths: self.purge.clone(),
            });
        }
        out
    }
}

/// What a rule is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub action: Action,
    pub path: &'a str,
    pub summary: Option<&'a ContentSummary>,
    /// The file's column headers as [`crate::classify::record::header_key`]s (device-only).
    pub headers: &'a [String],
    /// The kind of place the file is in (`removable`, `cloud`, `network`), if any.
    pub destination: Option<&'a str>,
    /// Customer records of the content this file came from (a copy, or an archive holding
    /// it), so a file is held to what it carries whatever it is called or packed in now.
    pub origin_records: u64,
}

impl PolicySet {
    /// Parses and validates rule files. `home` replaces a leading `~` in path globs.
    /// Every error in every file is reported, not only the first.
    pub fn compile(files: &[(&str, &str)], home: &str) -> Result<PolicySet, PolicyErrors> {
        parse::compile(files, home)
    }

    /// The default pack, compiled for `home`.
    pub fn default_pack(home: &str) -> Result<PolicySet, PolicyErrors> {
        PolicySet::compile(DEFAULT_PACK, home)
    }

    /// The rules that `subject` triggers, most severe first.
    pub fn evaluate(&self, subject: &Subject<'_>) -> Vec<RuleMatch> {
        let mut out: Vec<RuleMatch> = self
            .rules
            .iter()
            .filter(|r| r.matches(subject))
            .map(|r| RuleMatch {
                id: r.id.clone(),
                severity: r.escalation(subject).map_or(r.severity, |e| e.severity),
            })
            .collect();
        let replaced: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| !r.supersedes.is_empty() && out.iter().any(|m| m.id == r.id))
            .flat_map(|r| r.supersedes.iter().map(String::as_str))
            .collect();
        out.retain(|m| !replaced.contains(&m.id.as_str()));
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// The cloud-sync service whose folder holds `path`, if any.
    pub fn cloud_of(&self, path: &str) -> Option<&str> {
        self.cloud
            .iter()
            .find(|c| c.matcher.is_match(path))
            .map(|c| c.name.as_str())
    }

    /// The app whose executable `exe` is, if any.
    pub fn app_of(&self, exe: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.runs(exe))
    }

    /// Looks a rule up by id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

impl Rule {
    /// The highest escalation whose thresholds `s` reaches (for a rule that matched).
    pub fn escalation(&self, s: &Subject<'_>) -> Option<&Escalation> {
        let summary = s.summary?;
        self.escalate
            .iter()
            .filter(|e| reaches(e.min_records, &e.min_findings, summary, s.origin_records))
            .max_by_key(|e| e.severity)
    }

    /// Why this rule did not match a file it was otherwise made for (its actions, places,
    /// recognition, file types and findings fit): the record minimum or customer-table verdict
    /// the content missed, in words (`9 records < 50`, `not a customer table`). `None` when the
    /// rule matched, or did not get as far as those thresholds.
    pub fn missed(&self, s: &Subject<'_>) -> Option<String> {
        if self.matches(s) || (self.min_records.is_none() && self.customer_table.is_none()) {
            return None;
        }
        let summary = s.summary?;
        // Only the record minimum and the verdict are in question: a rule that also wants a
        // finding the file lacks (`disguised`) was not made for it.
        let bare = Rule {
            min_records: None,
            customer_table: None,
            ..self.clone()
        };
        let content = !self.file_types.is_empty();
        if !bare.matches(s) || (content && !self.file_types.contains(&summary.file_type)) {
            return None;
        }
        let mut why = Vec::new();
        if self.customer_table == Some(true) && !summary.customer_table {
            why.push("not a customer table".to_string());
        }
        if let Some(min) = self.min_records {
            let records = summary.records.max(s.origin_records);
            if records < min {
                why.push(format!("{records} records < {min}"));
            }
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    fn matches(&self, s: &Subject<'_>) -> bool {
        if !self.actions.is_empty() && !self.actions.contains(&s.action) {
            return false;
        }
        if !self.destinations.is_empty()
            && !s
                .destination
                .is_some_and(|d| self.destinations.iter().any(|x| x == d))
        {
            return false;
        }
        if let Some(paths) = &self.paths {
            if !paths.is_match(s.path) {
                return false;
            }
        }
        if let Some(ex) = &self.exclude_paths {
            if ex.is_match(s.path) {
                return false;
            }
        }
        if let Some(r) = &self.recognise {
            let name = s.path.rsplit(['/', '\\']).next().unwrap_or(s.path);
            if r.matched(name, s.headers).is_none() {
                return false;
            }
        }
        let needs_content = !self.file_types.is_empty()
            || self.min_records.is_some()
            || !self.min_findings.is_empty()
            || self.customer_table.is_some();
        if !needs_content {
            return true;
        }
        let Some(summary) = s.summary else {
            return false;
        };
        if !self.file_types.is_empty() && !self.file_types.contains(&summary.file_type) {
            return false;
        }
        if self
            .customer_table
            .is_some_and(|want| summary.customer_table != want)
        {
            return false;
        }
        reaches(
            self.min_records,
            &self.min_findings,
            summary,
            s.origin_records,
        )
    }
}

/// Whether the content reaches a record minimum (the file's own records or those of the
/// content it came from) and every per-classifier minimum.
fn reaches(
    min_records: Option<u64>,
    min_findings: &BTreeMap<String, u64>,
    summary: &ContentSummary,
    origin_records: u64,
) -> bool {
    min_records.is_none_or(|min| summary.records.max(origin_records) >= min)
        && min_findings
            .iter()
            .all(|(k, min)| summary.findings.get(k).copied().unwrap_or(0) >= *min)
}

#[cfg(test)]
mod tests;
