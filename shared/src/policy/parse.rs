//! Parsing and validation of policy files, with errors that point at file:line:column.

use super::{PolicySet, Rule};
use crate::classify::FILE_TYPES;
use crate::event::{Action, Severity};
use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// One error in one policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The field at fault, e.g. `rule[2].paths`, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every error found while compiling a set of policy files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    offboard: Option<Spanned<RawOffboard>>,
    #[serde(default)]
    cloud: Vec<Spanned<RawCloud>>,
    #[serde(default)]
    bulk_read: Vec<Spanned<RawBulkRead>>,
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
}

/// `[[app]]`: a program that sends files off the device when it reads them (a browser, a
/// mail client, a chat app), recognised by its executable.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    kind: Spanned<String>,
    executables: Vec<Spanned<String>>,
}

/// `[[bulk_read]]`: many customer files opened in a short time by one process or user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkRead {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    severity: Severity,
    folders: Vec<Spanned<String>>,
    min_files: Spanned<u64>,
    within: Spanned<String>,
    #[serde(default)]
    by: Option<Spanned<String>>,
    #[serde(default)]
    exclude_executables: Vec<Spanned<RawExe>>,
}

/// An excluded executable: its whole absolute path (`*` within one folder name), or a
/// table that also pins the binary's SHA-256.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawExe {
    Path(String),
    Pinned { path: String, sha256: String },
}

/// Longest window a bulk-read rule may count over (the agent keeps its opens that long).
const MAX_BULK_WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);
/// Most files a bulk-read rule may wait for (the agent keeps one entry per file).
const MAX_BULK_FILES: u64 = 100_000;

/// `[[cloud]]`: a cloud-sync service and the folders it uploads from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    name: String,
    folders: Vec<Spanned<String>>,
}

/// Where a rule can require a file to be.
pub const DESTINATIONS: &[&str] = &["removable", "cloud", "network", "upload", "print", "phone"];

/// `[offboard]`: what a device does when its user is offboarded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffboard {
    quarantine: Option<bool>,
    #[serde(default)]
    quarantine_paths: Vec<Spanned<String>>,
    quarantine_min_records: Option<u64>,
    #[serde(default)]
    strip_access: Vec<Spanned<String>>,
    #[serde(default)]
    purge: Vec<Spanned<String>>,
    departing_raise: Option<u8>,
}

/// What a rule id may be made of.
const ID_RULE: &str = "must be non-empty and use only letters, digits, '.', '_' and '-'";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Why a folder cannot be an offboarding target; `None` when it can. Deleting or locking
/// `~` or `/` by a typo must be impossible, so a target is an absolute path or under `~/`,
/// at least two levels deep (one under `~`), without `..`.
fn unsafe_target(p: &str) -> Option<&'static str> {
    let rest = if let Some(r) = p.strip_prefix("~/") {
        r
    } else if let Some(r) = p.strip_prefix('/') {
        r
    } else {
        return Some("must be absolute or start with `~/`");
    };
    let parts: Vec<&str> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Some("must not contain `..`");
    }
    let min = if p.starts_with('~') { 1 } else { 2 };
    (parts.len() < min)
        .then_some("is too broad: name a folder inside the home or two levels below `/`")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    severity: Severity,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    file_types: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    exclude_paths: Vec<Spanned<String>>,
    #[serde(default)]
    content: Option<RawContent>,
    #[serde(default)]
    recognise: Option<RawRecognise>,
    #[serde(default)]
    supersedes: Vec<Spanned<String>>,
    #[serde(default)]
    destinations: Vec<Spanned<String>>,
    #[serde(default)]
    escalate: Vec<Spanned<RawEscalate>>,
}

/// `[[rule.escalate]]`: a higher severity once the content reaches these thresholds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalate {
    severity: Spanned<Severity>,
    min_records: Option<u64>,
    #[serde(default)]
    min_findings: BTreeMap<Spanned<String>, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecognise {
    #[serde(default)]
    file_names: Vec<Spanned<String>>,
    #[serde(default)]
    headers_any: Vec<String>,
    #[serde(default)]
    headers_all: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContent {
    min_records: Option<u64>,
    #[serde(default)]
    min_findings: BTreeMap<Spanned<String>, u64>,
    customer_table: Option<bool>,
}

/// Classifier names a `min_findings` table may use.
const CLASSIFIERS: &[&str] = &[
    "email",
    "phone",
    "edm",
    "cn_id",
    "card",
    "disguised",
    "zip_bomb",
    "encrypted",
    "nested_too_deep",
    "nested_too_large",
    "damaged_entry",
    "damaged_part",
    "undefined_entity",
    "unreadable",
    "cpu_limit",
    "byte_limit",
];

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    errors: &'a mut Vec<PolicyError>,
}

impl Ctx<'_> {
    /// Checks a rule id (its characters, and that no rule of any kind has it yet) and
    /// records where it is defined, `file:line` of `at`; returns it trimmed.
    fn claim_id(
        &mut self,
        id: &Spanned<String>,
        field: String,
        at: usize,
        seen: &mut HashMap<String, String>,
    ) -> (String, String, bool) {
        let trimmed = id.get_ref().trim().to_string();
        let mut clean = valid_id(&trimmed);
        if !clean {
            self.error(Some(id.span()), Some(field.clone()), ID_RULE.into());
        }
        let origin = format!("{}:{}", self.file, line_col(self.src, at).0);
        if let Some(first) = seen.get(&trimmed) {
            let message = format!("duplicate rule id `{trimmed}` (first defined at {first})");
            self.error(Some(id.span()), Some(field), message);
            clean = false;
        } else {
            seen.insert(trimmed.clone(), origin.clone());
        }
        (trimmed, origin, clean)
    }

    fn error(&mut self, span: Option<Range<usize>>, field: Option<String>, message: String) {
        let (line, column) = line_col(self.src, span.map(|s| s.start).unwrap_or(0));
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            column,
            field,
            message,
        });
    }

    /// A `min_findings` table, each classifier name checked.
    fn findings(
        &mut self,
        field: String,
        raw: BTreeMap<Spanned<String>, u64>,
    ) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            if !CLASSIFIERS.contains(&k.get_ref().as_str()) {
                self.error(
                    Some(k.span()),
                    Some(field.clone()),
                    format!(
                        "unknown classifier `{}`, expected one of: {}",
                        k.get_ref(),
                        CLASSIFIERS.join(", ")
                    ),
                );
            }
            out.insert(k.into_inner(), v);
        }
        out
    }

    /// Excluded executables: whole absolute paths (never `~`, never a leading `*`, which
    /// would match a copy of the program anywhere, such as the user's own), `*` not crossing
    /// a `/`, and an optional SHA-256 pin.
    fn executables(&mut self, field: String, raw: &[Spanned<RawExe>]) -> Vec<super::ExeExclusion> {
        let mut out = Vec::new();
        for e in raw {
            let (path, sha256) = match e.get_ref() {
                RawExe::Path(p) => (p.as_str(), None),
                RawExe::Pinned { path, sha256 } => (path.as_str(), Some(sha256.as_str())),
            };
            let bytes = path.as_bytes();
            let absolute = path.starts_with('/')
                || (bytes.len() > 2
                    && bytes[0].is_ascii_alphabetic()
                    && bytes[1] == b':'
                    && matches!(bytes[2], b'\\' | b'/'));
            if !absolute {
                self.error(
                    Some(e.span()),
                    Some(field.clone()),
                    format!("`{path}`: an excluded executable must be a whole absolute path such as `/usr/bin/restic` (a pattern like `*/restic` matches a copy of the program anywhere, the user's home included)"),
                );
                continue;
            }
            if let Some(h) = sha256 {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.error(
                        Some(e.span()),
                        Some(field.clone()),
                        format!("`{path}`: sha256 must be 64 hexadecimal digits"),
                    );
                    continue;
                }
            }
            match globset::GlobBuilder::new(path)
                .literal_separator(true)
                .build()
            {
                Ok(glob) => out.push(super::ExeExclusion {
                    glob: glob.compile_matcher(),
                    sha256: sha256.map(str::to_ascii_lowercase),
                }),
                Err(err) => self.error(
                    Some(e.span()),
                    Some(field.clone()),
                    format!("`{path}`: bad pattern: {err}"),
                ),
            }
        }
        out
    }

    fn globs(&mut self, field: String, raw: &[Spanned<String>], home: &str) -> Option<GlobSet> {
        self.globs_with(field, raw, home, false)
    }

    /// Executable patterns: `*` stays within one folder name.
    fn exe_globs(&mut self, field: String, raw: &[Spanned<String>]) -> Option<GlobSet> {
        self.glob_set(field, raw, |g| {
            globset::GlobBuilder::new(g).literal_separator(true).build()
        })
    }

    /// The glob set of `raw`, each built by `build`; a pattern that does not build is an
    /// error on its field.
    fn glob_set(
        &mut self,
        field: String,
        raw: &[Spanned<String>],
        build: impl Fn(&str) -> Result<globset::Glob, globset::Error>,
    ) -> Option<GlobSet> {
        if raw.is_empty() {
            return None;
        }
        let mut b = GlobSetBuilder::new();
        for g in raw {
            match build(g.get_ref()) {
                Ok(glob) => {
                    b.add(glob);
                }
                Err(e) => self.error(
                    Some(g.span()),
                    Some(field.clone()),
                    format!("bad glob: {e}"),
                ),
            }
        }
        b.build().ok()
    }

    fn globs_with(
        &mut self,
        field: String,
        raw: &[Spanned<String>],
        home: &str,
        case_insensitive: bool,
    ) -> Option<GlobSet> {
        self.glob_set(field, raw, |g| {
            globset::GlobBuilder::new(&expand_home(g, home))
                .case_insensitive(case_insensitive)
                .build()
        })
    }
}

fn expand_home(pattern: &str, home: &str) -> String {
    match pattern.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{}", home.trim_end_matches('/'), rest)
        }
        _ => pattern.to_string(),
    }
}

/// 1-based line and character column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Where a TOML error points in `src`: `(line, column, message)`. Shared by every TOML file
/// the binaries read, so all of them name their errors the same way.
pub fn locate(src: &str, err: &toml::de::Error) -> (usize, usize, String) {
    let (line, column) = line_col(src, err.span().map(|s| s.start).unwrap_or(0));
    (line, column, err.message().trim().to_string())
}

pub(super) fn compile(files: &[(&str, &str)], home: &str) -> Result<PolicySet, PolicyErrors> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut offboard: Option<(super::OffboardPlan, String)> = None;
    let mut cloud: Vec<super::CloudService> = Vec::new();
    let mut bulk_reads: Vec<super::BulkReadRule> = Vec::new();
    let mut apps: Vec<super::App> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    // (file, line, column, field, id): superseded ids are checked once every file is read.
    let mut superseded: Vec<(String, usize, usize, String, String)> = Vec::new();
    // Whether some rule id is unknown: a file that did not parse, or an id refused (invalid,
    // a duplicate). A reference to a missing rule is then likely that error's echo, so it is
    // not reported: each root cause once, no cascade.
    let mut ids_in_doubt = false;
    for (file, src) in files {
        let mut cx = Ctx {
            file,
            src,
            errors: &mut errors,
        };
        let raw: RawFile = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                cx.error(e.span(), None, e.message().trim().to_string());
                ids_in_doubt = true;
                continue;
            }
        };
        if let Some(o) = raw.offboard {
            let span = o.span();
            let o = o.into_inner();
            let (line, _) = line_col(src, span.start);
            if let Some((_, first)) = &offboard {
                cx.error(
                    Some(span),
                    Some("offboard".into()),
                    format!("[offboard] is already defined at {first}"),
                );
            } else {
                let mut check = |field: &str, v: &[Spanned<String>]| -> Vec<String> {
                    for p in v {
                        if let Some(why) = unsafe_target(p.get_ref()) {
                            cx.error(
                                Some(p.span()),
                                Some(format!("offboard.{field}")),
                                format!("`{}` {why}", p.get_ref()),
                            );
                        }
                    }
                    v.iter().map(|p| p.get_ref().clone()).collect()
                };
                let plan = super::OffboardPlan {
                    quarantine: o.quarantine.unwrap_or(true),
                    quarantine_paths: check("quarantine_paths", &o.quarantine_paths),
                    quarantine_min_records: o.quarantine_min_records.unwrap_or(10),
                    strip_access: check("strip_access", &o.strip_access),
                    purge: check("purge", &o.purge),
                    departing_raise: o.departing_raise.unwrap_or(1).min(3),
                };
                offboard = Some((plan, format!("{file}:{line}")));
            }
        }
        for (i, c) in raw.cloud.into_iter().enumerate() {
            let span = c.span();
            let c = c.into_inner();
            let field = format!("cloud[{i}].folders");
            if c.name.trim().is_empty() || c.folders.is_empty() {
                cx.error(
                    Some(span),
                    Some(format!("cloud[{i}]")),
                    "needs a name and at least one folder".into(),
                );
                continue;
            }
            for f in &c.folders {
                if let Some(why) = unsafe_target(f.get_ref()) {
                    cx.error(
                        Some(f.span()),
                        Some(field.clone()),
                        format!("`{}` {why}", f.get_ref()),
                    );
                }
            }
            let under: Vec<Spanned<String>> = c
                .folders
                .iter()
                .map(|f| {
                    Spanned::new(
                        f.span(),
                        format!("{}/**", f.get_ref().trim_end_matches('/')),
                    )
                })
                .collect();
            if let Some(matcher) = cx.globs_with(field, &under, home, true) {
                cloud.push(super::CloudService {
                    name: c.name.trim().to_string(),
                    folders: c.folders.iter().map(|f| f.get_ref().clone()).collect(),
                    matcher,
                });
            }
        }
        for (i, a) in raw.app.into_iter().enumerate() {
            let span = a.span();
            let a = a.into_inner();
            if a.name.trim().is_empty() || a.executables.is_empty() {
                cx.error(
                    Some(span),
                    Some(format!("app[{i}]")),
                    "needs a name and at least one executable".into(),
                );
                continue;
            }
            let Some(kind) = super::AppKind::parse(a.kind.get_ref()) else {
                cx.error(
                    Some(a.kind.span()),
                    Some(format!("app[{i}].kind")),
                    format!(
                        "unknown kind `{}`, expected one of: {}",
                        a.kind.get_ref(),
                        super::AppKind::ALL.map(super::AppKind::as_str).join(", ")
                    ),
                );
                continue;
            };
            let field = format!("app[{i}].executables");
            for e in &a.executables {
                if !e.get_ref().starts_with('/') {
                    cx.error(
                        Some(e.span()),
                        Some(field.clone()),
                        format!("`{}`: an executable is an absolute path (`*` within one folder name, `**` across folders)", e.get_ref()),
                    );
                }
            }
            if let Some(matcher) = cx.exe_globs(field, &a.executables) {
                apps.push(super::App {
                    name: a.name.trim().to_string(),
                    kind,
                    matcher,
                });
            }
        }
        for (i, spanned) in raw.bulk_read.into_iter().enumerate() {
            let span = spanned.span();
            let r = spanned.into_inner();
            let at = |f: &str| Some(format!("bulk_read[{i}].{f}"));
            let (id, _, clean) =
                cx.claim_id(&r.id, format!("bulk_read[{i}].id"), span.start, &mut seen);
            ids_in_doubt |= !clean;
            if r.folders.is_empty() {
                cx.error(
                    Some(span.clone()),
                    at("folders"),
                    "needs at least one folder".into(),
                );
            }
            for f in &r.folders {
                if let Some(why) = unsafe_target(f.get_ref()) {
                    cx.error(
                        Some(f.span()),
                        at("folders"),
                        format!("`{}` {why}", f.get_ref()),
                    );
                }
            }
            let min_files = *r.min_files.get_ref();
            if !(2..=MAX_BULK_FILES).contains(&min_files) {
                cx.error(
                    Some(r.min_files.span()),
                    at("min_files"),
                    format!("must be between 2 and {MAX_BULK_FILES}"),
                );
            }
            let within = match humantime::parse_duration(r.within.get_ref()) {
                Ok(d) if d >= std::time::Duration::from_secs(1) && d <= MAX_BULK_WINDOW => d,
                Ok(_) => {
                    cx.error(
                        Some(r.within.span()),
                        at("within"),
                        "must be between 1s and 24h".into(),
                    );
                    MAX_BULK_WINDOW
                }
                Err(e) => {
                    cx.error(
                        Some(r.within.span()),
                        at("within"),
                        format!("`{}` is not a duration like `10m`: {e}", r.within.get_ref()),
                    );
                    MAX_BULK_WINDOW
                }
            };
            let by = match r.by.as_ref().map(|b| b.get_ref().as_str()) {
                None | Some("process") => super::ReadsBy::Process,
                Some("user") => super::ReadsBy::User,
                Some(other) => {
                    cx.error(
                        r.by.as_ref().map(Spanned::span),
                        at("by"),
                        format!("unknown `{other}`, expected `process` or `user`"),
                    );
                    super::ReadsBy::Process
                }
            };
            let exclude = cx.executables(
                format!("bulk_read[{i}].exclude_executables"),
                &r.exclude_executables,
            );
            bulk_reads.push(super::BulkReadRule {
                id,
                description: r.description,
                severity: r.severity,
                folders: r
                    .folders
                    .iter()
                    .map(|f| {
                        expand_home(f.get_ref(), home)
                            .trim_end_matches('/')
                            .to_string()
                    })
                    .collect(),
                min_files,
                within,
                by,
                exclude,
            });
        }
        for (i, spanned) in raw.rule.into_iter().enumerate() {
            let rule_span = spanned.span();
            let r = spanned.into_inner();
            let at = |f: &str| Some(format!("rule[{i}].{f}"));
            let (id, origin, clean) =
                cx.claim_id(&r.id, format!("rule[{i}].id"), rule_span.start, &mut seen);
            ids_in_doubt |= !clean;
            for t in &r.file_types {
                if !FILE_TYPES.contains(&t.get_ref().as_str()) {
                    cx.error(
                        Some(t.span()),
                        at("file_types"),
                        format!(
                            "unknown file type `{}`, expected one of: {}",
                            t.get_ref(),
                            FILE_TYPES.join(", ")
                        ),
                    );
                }
            }
            for d in &r.destinations {
                if !DESTINATIONS.contains(&d.get_ref().as_str()) {
                    cx.error(
                        Some(d.span()),
                        at("destinations"),
                        format!(
                            "unknown destination `{}`, expected one of: {}",
                            d.get_ref(),
                            DESTINATIONS.join(", ")
                        ),
                    );
                }
            }
            let paths = cx.globs(format!("rule[{i}].paths"), &r.paths, home);
            let exclude_paths =
                cx.globs(format!("rule[{i}].exclude_paths"), &r.exclude_paths, home);
            let recognise = r.recognise.map(|rc| {
                let file_names = cx.globs_with(
                    format!("rule[{i}].recognise.file_names"),
                    &rc.file_names,
                    home,
                    true,
                );
                if file_names.is_none() && rc.headers_any.is_empty() && rc.headers_all.is_empty() {
                    cx.error(
                        Some(rule_span.clone()),
                        at("recognise"),
                        "needs file_names, headers_any or headers_all".into(),
                    );
                }
                let keys = |v: Vec<String>| -> Vec<String> {
                    v.iter()
                        .map(|h| crate::classify::record::header_key(h))
                        .collect()
                };
                super::Recognise {
                    file_names,
                    headers_any: keys(rc.headers_any),
                    headers_all: keys(rc.headers_all),
                }
            });
            let mut min_findings = BTreeMap::new();
            let mut min_records = None;
            let mut customer_table = None;
            if let Some(c) = r.content {
                min_records = c.min_records;
                customer_table = c.customer_table;
                min_findings =
                    cx.findings(format!("rule[{i}].content.min_findings"), c.min_findings);
            }
            let mut escalate = Vec::new();
            for (j, e) in r.escalate.into_iter().enumerate() {
                let span = e.span();
                let e = e.into_inner();
                let field = format!("rule[{i}].escalate[{j}]");
                if e.min_records.is_none() && e.min_findings.is_empty() {
                    cx.error(
                        Some(span),
                        Some(field.clone()),
                        "needs min_records or min_findings".into(),
                    );
                }
                if *e.severity.get_ref() <= r.severity {
                    cx.error(
                        Some(e.severity.span()),
                        Some(format!("{field}.severity")),
                        format!(
                            "`{}` is not above the rule's own `{}`",
                            e.severity.get_ref().as_str(),
                            r.severity.as_str()
                        ),
                    );
                }
                escalate.push(super::Escalation {
                    severity: e.severity.into_inner(),
                    min_records: e.min_records,
                    min_findings: cx.findings(format!("{field}.min_findings"), e.min_findings),
                });
            }
            rules.push(Rule {
                id,
                description: r.description,
                severity: r.severity,
                actions: r.actions,
                file_types: r.file_types.into_iter().map(Spanned::into_inner).collect(),
                paths,
                exclude_paths,
                min_records,
                min_findings,
                customer_table,
                recognise,
                supersedes: r.supersedes.iter().map(|s| s.get_ref().clone()).collect(),
                destinations: r.destinations.iter().map(|d| d.get_ref().clone()).collect(),
                escalate,
                origin,
            });
            for s in &r.supersedes {
                let (line, column) = line_col(src, s.span().start);
                superseded.push((
                    file.to_string(),
                    line,
                    column,
                    format!("rule[{i}].supersedes"),
                    s.get_ref().clone(),
                ));
            }
        }
    }
    // Each missing rule once, where it is first named, with how often else it is.
    let mut missing: Vec<(PolicyError, String, usize)> = Vec::new();
    for (file, line, column, field, id) in superseded {
        if ids_in_doubt || seen.contains_key(&id) {
            continue;
        }
        match missing.iter_mut().find(|(_, m, _)| *m == id) {
            Some((_, _, more)) => *more += 1,
            None => missing.push((
                PolicyError {
                    file,
                    line,
                    column,
                    field: Some(field),
                    message: String::new(),
                },
                id,
                0,
            )),
        }
    }
    for (mut e, id, more) in missing {
        e.message = match more {
            0 => format!("no rule `{id}` to supersede"),
            n => format!("no rule `{id}` to supersede (named by {n} more supersedes)"),
        };
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    // The version is the files' bare names and contents in name order: the same folder has
    // one version whether it is checked by path, published as a bundle or built in.
    let mut named: Vec<(&str, &str)> = files
        .iter()
        .map(|(f, s)| (f.rsplit('/').next().unwrap_or(f), *s))
        .collect();
    named.sort_unstable();
    let mut digest_input = Vec::new();
    for (file, src) in named {
        digest_input.extend_from_slice(file.as_bytes());
        digest_input.push(0);
        digest_input.extend_from_slice(src.as_bytes());
        digest_input.push(0);
    }
    Ok(PolicySet {
        rules,
        cloud,
        bulk_reads,
        apps,
        offboard: offboard.map(|(plan, _)| plan).unwrap_or_default(),
        version: crate::sha256_hex(&digest_input)[..16].to_string(),
    })
}

#[cfg(test)]
mod tests;
