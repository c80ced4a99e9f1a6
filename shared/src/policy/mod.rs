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
//! [rule.content]
//! min_records = 50                       # rows carrying at least one identifier
//! min_findings = { email = 10 }          # per-classifier minimum counts
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
pub const DEFAULT_PACK: &[(&str, &str)] = &[(
    "crm-export.toml",
    include_str!("../../../policies/crm-export.toml"),
)];

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
    /// Where the rule was defined, `file:line`.
    pub origin: String,
}

/// A validated set of rules from one or more files.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
    /// SHA-256 over the sources, so agent and collector can tell which version runs.
    pub version: String,
}

/// What a rule is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub action: Action,
    pub path: &'a str,
    pub summary: Option<&'a ContentSummary>,
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
                severity: r.severity,
            })
            .collect();
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Looks a rule up by id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

impl Rule {
    fn matches(&self, s: &Subject<'_>) -> bool {
        if !self.actions.is_empty() && !self.actions.contains(&s.action) {
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
        let needs_content = !self.file_types.is_empty()
            || self.min_records.is_some()
            || !self.min_findings.is_empty();
        if !needs_content {
            return true;
        }
        let Some(summary) = s.summary else {
            return false;
        };
        if !self.file_types.is_empty() && !self.file_types.contains(&summary.file_type) {
            return false;
        }
        if self.min_records.is_some_and(|min| summary.records < min) {
            return false;
        }
        self.min_findings
            .iter()
            .all(|(k, min)| summary.findings.get(k).copied().unwrap_or(0) >= *min)
    }
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
        let export = summary("csv", 200, 200);
        let roster = summary("csv", 5, 5);
        let p = "/home/ada/Downloads/contacts.csv";
        assert!(!set
            .evaluate(&Subject {
                action: Action::Created,
                path: p,
                summary: Some(&export)
            })
            .is_empty());
        assert!(set
            .evaluate(&Subject {
                action: Action::Created,
                path: p,
                summary: Some(&roster)
            })
            .is_empty());
        assert!(set
            .evaluate(&Subject {
                action: Action::Created,
                path: p,
                summary: Some(&summary("csv", 0, 0))
            })
            .is_empty());
    }
}
