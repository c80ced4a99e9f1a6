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
    /// As written (`~` kept).
    pub folders: Vec<String>,
    /// With `~` expanded, without a trailing `/`.
    pub expanded: Vec<String>,
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
        self.expanded
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
mod tests {
    use super::*;

    fn summary(ty: &str, records: u64, emails: u64) -> ContentSummary {
        ContentSummary {
            file_type: ty.into(),
            records,
            findings: [("email".to_string(), emails)].into_iter().collect(),
            truncated: false,
            ..Default::default()
        }
    }

    fn check(
        set: &PolicySet,
        action: Action,
        path: &str,
        s: Option<ContentSummary>,
        want: &[&str],
    ) {
        let got = set.evaluate(&Subject {
            action,
            path,
            summary: s.as_ref(),
            headers: &[],
            destination: None,
            origin_records: 0,
        });
        let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, want, "{action:?} {path}");
    }

    const RULES: &str = r#"
[[rule]]
id = "bulk"
severity = "high"
actions = ["created", "modified"]
file_types = ["csv"]
paths = ["~/Downloads/**"]
exclude_paths = ["**/cache/**"]
[rule.content]
min_records = 50
min_findings = { email = 10 }

[[rule]]
id = "any-delete"
severity = "low"
actions = ["deleted"]
"#;

    #[test]
    fn evaluates() {
        let set = PolicySet::compile(&[("t.toml", RULES)], "/home/ada").unwrap();
        let d = "/home/ada/Downloads/x.csv";
        check(
            &set,
            Action::Created,
            d,
            Some(summary("csv", 50, 10)),
            &["bulk"],
        );
        check(&set, Action::Created, d, Some(summary("csv", 49, 10)), &[]);
        check(&set, Action::Created, d, Some(summary("csv", 50, 9)), &[]);
        check(
            &set,
            Action::Created,
            d,
            Some(summary("tsv", 500, 500)),
            &[],
        );
        check(
            &set,
            Action::Renamed,
            d,
            Some(summary("csv", 500, 500)),
            &[],
        );
        check(&set, Action::Created, d, None, &[]);
        check(
            &set,
            Action::Created,
            "/home/bob/Downloads/x.csv",
            Some(summary("csv", 99, 99)),
            &[],
        );
        check(
            &set,
            Action::Created,
            "/home/ada/Downloads/cache/x.csv",
            Some(summary("csv", 99, 99)),
            &[],
        );
        check(&set, Action::Deleted, "/anywhere", None, &["any-delete"]);
    }

    #[test]
    fn default_pack_compiles_and_flags_exports_only() {
        let set = PolicySet::default_pack("/home/ada").unwrap();
        assert!(!set.rules.is_empty());
        let export = ContentSummary {
            customer_table: true,
            ..summary("csv", 200, 200)
        };
        let roster = ContentSummary {
            customer_table: true,
            ..summary("csv", 5, 5)
        };
        let flags = |summary: &ContentSummary| {
            !set.evaluate(&Subject {
                action: Action::Created,
                path: "/home/ada/Downloads/contacts.csv",
                summary: Some(summary),
                headers: &[],
                destination: None,
                origin_records: 0,
            })
            .is_empty()
        };
        assert!(flags(&export));
        assert!(!flags(&roster));
        assert!(!flags(&summary("csv", 0, 0)));
    }

    /// What `scan --explain` says of a file a rule was made for but did not raise.
    #[test]
    fn a_rule_says_which_threshold_a_file_missed() {
        let set = PolicySet::default_pack("/home/u").unwrap();
        let missed = |id: &str, records: u64, table: bool| {
            let s = ContentSummary {
                customer_table: table,
                ..summary("csv", records, records)
            };
            set.rule(id).unwrap().missed(&Subject {
                action: Action::Created,
                path: "/home/u/Downloads/list.csv",
                summary: Some(&s),
                headers: &[],
                destination: None,
                origin_records: 0,
            })
        };
        let bulk = "crm-export.bulk-contacts";
        assert_eq!(missed(bulk, 9, true).as_deref(), Some("9 records < 50"));
        assert_eq!(
            missed(bulk, 300, false).as_deref(),
            Some("not a customer table")
        );
        assert_eq!(missed(bulk, 300, true), None, "it matched");
        // A rule made for another product's exports says nothing.
        assert_eq!(missed("crm-export.salesforce", 9, false), None);
    }

    /// One export names one CRM: a HubSpot export's "Contact owner" is also a Salesforce
    /// header, but only the HubSpot rule speaks for it.
    #[test]
    fn a_hubspot_export_is_not_also_a_salesforce_one() {
        let set = PolicySet::default_pack("/home/u").unwrap();
        let s = ContentSummary {
            customer_table: true,
            ..summary("csv", 300, 300)
        };
        let rules = |headers: &[&str]| -> Vec<String> {
            let headers: Vec<String> = headers
                .iter()
                .map(|h| crate::classify::record::header_key(h))
                .collect();
            set.evaluate(&Subject {
                action: Action::Created,
                path: "/home/u/Downloads/contacts.csv",
                summary: Some(&s),
                headers: &headers,
                destination: None,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| m.id)
            .collect()
        };
        assert_eq!(
            rules(&[
                "Record ID",
                "First Name",
                "Email",
                "Contact owner",
                "Lifecycle Stage"
            ]),
            ["crm-export.hubspot"]
        );
        assert_eq!(
            rules(&[
                "First Name",
                "Last Name",
                "Email",
                "Contact Owner",
                "Mailing Street"
            ]),
            ["crm-export.salesforce"]
        );
        assert_eq!(
            rules(&[
                "Record Id",
                "First Name",
                "Email",
                "Contact Owner",
                "Created Time"
            ]),
            ["crm-export.zoho"]
        );
    }

    /// The default pack gives one alert per file, whose severity follows the content: a
    /// recognised export names its CRM and is critical as a whole customer base or when it
    /// holds real customers, wherever it is and whatever else would have matched.
    #[test]
    fn the_default_pack_gives_one_alert_per_file_at_the_contents_severity() {
        let set = PolicySet::default_pack("/home/u").unwrap();
        let check =
            |path: &str, dest: Option<&str>, records: u64, edm: u64, want: (&str, Severity)| {
                let mut s = ContentSummary {
                    customer_table: true,
                    ..summary("csv", records, records)
                };
                s.findings.insert("edm".into(), edm);
                let got: Vec<(String, Severity)> = set
                    .evaluate(&Subject {
                        action: Action::Created,
                        path,
                        summary: Some(&s),
                        headers: &[],
                        destination: dest,
                        origin_records: 0,
                    })
                    .into_iter()
                    .map(|m| (m.id, m.severity))
                    .collect();
                assert_eq!(
                    got,
                    [(want.0.to_string(), want.1)],
                    "{path} {records} records, edm {edm}"
                );
            };
        let sf = "/home/u/Downloads/report1700000000000.csv";
        check(sf, None, 300, 0, ("crm-export.salesforce", Severity::High));
        check(
            sf,
            None,
            6000,
            0,
            ("crm-export.salesforce", Severity::Critical),
        );
        check(
            sf,
            None,
            300,
            25,
            ("crm-export.salesforce", Severity::Critical),
        );
        let any = "/home/u/Downloads/list.csv";
        check(
            any,
            None,
            300,
            0,
            ("crm-export.bulk-contacts", Severity::High),
        );
        check(
            any,
            None,
            6000,
            0,
            ("crm-export.mass-contacts", Severity::Critical),
        );
        check(
            any,
            None,
            300,
            25,
            ("customer-data.real-customers", Severity::Critical),
        );
        let cloud = "/home/u/Dropbox/report1700000000000.csv";
        check(
            cloud,
            Some("cloud"),
            300,
            0,
            ("exfil.cloud-sync", Severity::High),
        );
        check(
            cloud,
            Some("cloud"),
            6000,
            0,
            ("exfil.cloud-sync", Severity::Critical),
        );
        check(
            cloud,
            Some("cloud"),
            300,
            25,
            ("exfil.cloud-sync", Severity::Critical),
        );
        check(
            "/mnt/sales/list.csv",
            Some("network"),
            6000,
            0,
            ("exfil.network-share", Severity::Critical),
        );
        check(
            "/media/u/KINGSTON/list.csv",
            Some("removable"),
            300,
            0,
            ("exfil.removable-media", Severity::Critical),
        );
        // A recognised export hidden under another extension: the disguise's alert alone.
        let hidden = |records: u64, edm: u64| {
            let mut s = ContentSummary {
                customer_table: true,
                ..summary("text", records, records)
            };
            s.findings.insert("edm".into(), edm);
            s.findings.insert("disguised".into(), 1);
            set.evaluate(&Subject {
                action: Action::Created,
                path: "/home/u/Downloads/report1700000000000.jpg",
                summary: Some(&s),
                headers: &["accountowner".to_string()],
                destination: None,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| (m.id, m.severity))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            hidden(300, 0),
            [("customer-data.disguised".to_string(), Severity::High)]
        );
        assert_eq!(
            hidden(300, 25),
            [("customer-data.disguised".to_string(), Severity::Critical)]
        );
    }

    #[test]
    fn destinations_and_cloud_folders() {
        let set = PolicySet::default_pack("/home/u").unwrap();
        let eval = |path: &str, dest: Option<&str>, s: &ContentSummary| -> Vec<String> {
            set.evaluate(&Subject {
                action: Action::Created,
                path,
                summary: Some(s),
                headers: &[],
                destination: dest,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| m.id)
            .collect()
        };
        let contacts = ContentSummary {
            customer_table: true,
            ..summary("csv", 80, 80)
        };
        let prices = summary("csv", 0, 0);
        // One alert per file, the destination's.
        assert_eq!(
            eval("/media/u/KINGSTON/x.csv", Some("removable"), &contacts),
            ["exfil.removable-media"]
        );
        assert_eq!(
            eval("/home/u/Dropbox/x.csv", Some("cloud"), &contacts),
            ["exfil.cloud-sync"]
        );
        assert_eq!(
            eval("/mnt/sales/x.csv", Some("network"), &contacts),
            ["exfil.network-share"]
        );
        assert_eq!(
            eval("/home/u/Downloads/x.csv", None, &contacts),
            ["crm-export.bulk-contacts"]
        );
        assert!(eval("/home/u/Dropbox/prices.csv", Some("cloud"), &prices).is_empty());
        let zip = ContentSummary {
            customer_table: true,
            ..summary("zip", 80, 80)
        };
        assert_eq!(
            eval("/home/u/Downloads/x.zip", None, &zip),
            ["exfil.archive"]
        );
        // Cloud folders, `*` within one folder name.
        assert_eq!(set.cloud_of("/home/u/Dropbox/a/b.csv"), Some("Dropbox"));
        assert_eq!(
            set.cloud_of("/home/u/Library/CloudStorage/OneDrive-Corp/b.csv"),
            Some("OneDrive")
        );
        assert_eq!(
            set.cloud_of(
                "/home/u/Documents/WeChat Files/wxid_9/FileStorage/File/2026-11/客户.xlsx"
            ),
            Some("WeChat")
        );
        assert_eq!(
            set.cloud_of("/home/u/BaiduNetdiskWorkspace/客户.csv"),
            Some("百度网盘")
        );
        assert_eq!(set.cloud_of("/home/u/Downloads/b.csv"), None);
        assert_eq!(set.cloud_of("/home/u/Dropboxx/b.csv"), None);
        let bad = "[[rule]]\nid = \"a\"\nseverity = \"low\"\ndestinations = [\"usb\"]\n";
        let err = PolicySet::compile(&[("p.toml", bad)], "/h")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "p.toml:4:17: rule[0].destinations: unknown destination `usb`, expected one of: removable, cloud, network");
        let bad = "[[cloud]]\nname = \"x\"\nfolders = [\"~\"]\n";
        let err = PolicySet::compile(&[("p.toml", bad)], "/h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud[0].folders: `~` "), "{err}");
    }

    #[test]
    fn a_rule_escalates_with_its_content_to_its_highest_tier_reached() {
        let src = "[[rule]]\nid = \"crm\"\nseverity = \"high\"\n[rule.content]\nmin_records = 50\n\
                   [[rule.escalate]]\nseverity = \"critical\"\nmin_records = 5000\n\
                   [[rule.escalate]]\nseverity = \"critical\"\nmin_findings = { edm = 20 }\n";
        let set = PolicySet::compile(&[("p.toml", src)], "/h").unwrap();
        let severity = |records: u64, edm: u64, origin_records: u64| {
            let mut s = summary("csv", records, records);
            s.findings.insert("edm".into(), edm);
            set.evaluate(&Subject {
                action: Action::Created,
                path: "/d/x.csv",
                summary: Some(&s),
                headers: &[],
                destination: None,
                origin_records,
            })
            .into_iter()
            .map(|m| (m.id, m.severity))
            .collect::<Vec<_>>()
        };
        let crm = |sev| vec![("crm".to_string(), sev)];
        assert_eq!(severity(49, 0, 0), vec![]);
        assert_eq!(severity(50, 0, 0), crm(Severity::High));
        assert_eq!(severity(4999, 19, 0), crm(Severity::High));
        assert_eq!(severity(5000, 0, 0), crm(Severity::Critical));
        assert_eq!(severity(60, 20, 0), crm(Severity::Critical));
        // A copy of a 6,000-record export is held to its origin's records.
        assert_eq!(severity(60, 0, 6000), crm(Severity::Critical));
        // Tiers are checked: thresholds needed, and only upwards, errors pointing at them.
        for (bad, want) in [
            (
                "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"critical\"\n",
                "p.toml:4:1: rule[0].escalate[0]: needs min_records or min_findings",
            ),
            (
                "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"medium\"\nmin_records = 5\n",
                "p.toml:5:12: rule[0].escalate[0].severity: `medium` is not above the rule's own `high`",
            ),
            (
                "[[rule]]\nid = \"a\"\nseverity = \"high\"\n[[rule.escalate]]\nseverity = \"critical\"\nmin_findings = { emd = 1 }\n",
                "p.toml:6:18: rule[0].escalate[0].min_findings: unknown classifier `emd`, expected one of: email, phone, edm, cn_id, card, disguised, zip_bomb, encrypted, nested_too_deep, nested_too_large, damaged_entry, damaged_part, undefined_entity, unreadable, cpu_limit, byte_limit",
            ),
        ] {
            let err = PolicySet::compile(&[("p.toml", bad)], "/h")
                .unwrap_err()
                .to_string();
            assert_eq!(err, want);
        }
    }

    #[test]
    fn recognise_supersede_and_customer_table() {
        let src = "[[rule]]\nid = \"generic\"\nseverity = \"high\"\n[rule.content]\nmin_records = 50\ncustomer_table = true\n\
                   [[rule]]\nid = \"acme\"\nseverity = \"high\"\nsupersedes = [\"generic\"]\n[rule.recognise]\nfile_names = [\"ACME-*.csv\"]\nheaders_all = [\"Acme ID\", \"E-mail\"]\n[rule.content]\nmin_records = 50\n";
        let set = PolicySet::compile(&[("p.toml", src)], "/h").unwrap();
        let table = ContentSummary {
            customer_table: true,
            ..summary("csv", 80, 80)
        };
        let eval = |path: &str, headers: &[&str], s: &ContentSummary| -> Vec<String> {
            let keys: Vec<String> = headers
                .iter()
                .map(|h| crate::classify::record::header_key(h))
                .collect();
            set.evaluate(&Subject {
                action: Action::Created,
                path,
                summary: Some(s),
                headers: &keys,
                destination: None,
                origin_records: 0,
            })
            .into_iter()
            .map(|m| m.id)
            .collect()
        };
        // By file name (case-insensitive), by the whole header set, or not at all.
        assert_eq!(eval("/d/acme-2024.csv", &[], &table), ["acme"]);
        assert_eq!(
            eval("/d/x.csv", &["acme_id", "email", "Name"], &table),
            ["acme"]
        );
        assert_eq!(eval("/d/x.csv", &["Acme ID"], &table), ["generic"]);
        // Not a customer table: the generic rule stays quiet; the recognised export does not.
        let plain = summary("csv", 80, 80);
        assert!(eval("/d/x.csv", &[], &plain).is_empty());
        assert_eq!(eval("/d/ACME-1.csv", &[], &plain), ["acme"]);
        let bad = "[[rule]]\nid = \"a\"\nseverity = \"low\"\nsupersedes = [\"nope\"]\n";
        let err = PolicySet::compile(&[("p.toml", bad)], "/h")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "p.toml:4:15: rule[0].supersedes: no rule `nope` to supersede"
        );
        let empty = "[[rule]]\nid = \"a\"\nseverity = \"low\"\n[rule.recognise]\n";
        let err = PolicySet::compile(&[("p.toml", empty)], "/h")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rule[0].recognise: needs file_names, headers_any or headers_all"),
            "{err}"
        );
    }
}
