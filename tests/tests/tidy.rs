//! Tidy: the invariants ARCHITECTURE.md states about the code, checked on the source tree.
//! Every file says what it owns, the pure crate touches no operating system, each I/O edge
//! sits in its one module, modules form no cycles, the paths the architecture names exist,
//! and files stay short enough to read (with named exceptions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir` (relative to the root), `target/` excluded, sorted.
fn rust_files(dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "target" || n == ".git") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), &mut out);
    out.sort();
    out
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap()
}

/// The code of a file without its comments and without its unit tests (a trailing
/// `#[cfg(test)]` module): what the crate is built from.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files (under `dirs`) whose code mentions `needle`, except those in `allowed`.
fn offenders(dirs: &[&str], needle: &str, allowed: &[&str]) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| rust_files(d))
        .filter(|f| !allowed.iter().any(|a| f.starts_with(a)))
        .filter(|f| mentions(&code(&read(f)), needle))
        .collect()
}

/// Whether `code` uses the path `needle` (e.g. `notify::`) as a path of its own, not as the
/// tail of a longer name (`fanotify::`).
fn mentions(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn every_file_opens_by_saying_what_it_owns() {
    let missing: Vec<String> = ["shared", "agent", "collector", "tests", "fuzz"]
        .iter()
        .flat_map(|d| rust_files(d))
        .filter(|f| !read(f).starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` line: {missing:?}"
    );
}

#[test]
fn each_io_edge_sits_in_its_one_module() {
    // The pure crate: values, bytes and a `now` passed in.
    for needle in [
        "std::fs",
        "std::net",
        "std::env",
        "SystemTime::now",
        "tokio",
    ] {
        let found = offenders(&["shared/src"], needle, &[]);
        assert!(found.is_empty(), "`{needle}` in the pure crate: {found:?}");
    }
    let rules: [(&str, &[&str]); 5] = [
        // SQL: the collector's store and the agent's spool (tests may open a database to
        // tamper with it, as an attacker would).
        // The SQL form of a moment (`UnixMs` as an INTEGER column) lives with the type, behind
        // the `sql` feature only the stores' crates turn on.
        (
            "rusqlite",
            &[
                "collector/src/store/",
                "agent/src/spool.rs",
                "shared/src/time.rs",
            ],
        ),
        // The file watcher's library: only the watcher.
        ("notify::", &["agent/src/watch.rs"]),
        // Kernel read monitoring: only its module.
        ("sys::fanotify", &["agent/src/fanotify.rs"]),
        // Processes started as another user (a phone mount's owner): only the phones.
        ("CommandExt", &["agent/src/phones.rs"]),
        // Descriptors passed between processes: only the phones and their watcher.
        ("ScmRights", &["agent/src/phones.rs"]),
    ];
    for (needle, allowed) in rules {
        let found = offenders(
            &["shared/src", "agent/src", "collector/src"],
            needle,
            allowed,
        );
        assert!(
            found.is_empty(),
            "`{needle}` outside {allowed:?}: {found:?}"
        );
    }
}

#[test]
fn markup_is_built_only_by_the_escaping_type() {
    // Pages are `Html`, which only `html!` (escaping its arguments) builds: no markup made by
    // `format!`, `write!` or `push_str` in the HTTP layer, where one forgotten escape is a
    // stored cross-site script.
    let mut found = Vec::new();
    for f in rust_files("collector/src/http") {
        if f.ends_with("html.rs") {
            continue;
        }
        let code = code(&read(&f));
        for (n, line) in code.lines().enumerate() {
            let builds = ["format!(", "write!(", "push_str("]
                .iter()
                .any(|m| line.contains(m));
            let next = code.lines().nth(n + 1).unwrap_or("");
            let markup = |l: &str| l.contains("\"<") || l.contains("r#\"<");
            if builds && (markup(line) || markup(next)) {
                found.push(format!("{f}:{}", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "markup built outside `html!`: {found:?}");
}

/// A crate's modules, each a file: its path as module names (`["classify", "record"]`).
fn modules(src: &str) -> BTreeMap<Vec<String>, String> {
    rust_files(src)
        .into_iter()
        .filter(|f| !f.ends_with("/main.rs") && !f.contains("/bin/"))
        .map(|f| {
            let rel = f.strip_prefix(&format!("{src}/")).unwrap().to_string();
            let mut parts: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_string)
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            (parts, f)
        })
        .collect()
}

/// The module paths `code` names: `crate::a::b…`, `super::a…`, and a child's name.
fn references(code: &str, me: &[String], known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    // Expands `p::{a, b::c}` groups into paths (one level of braces).
    let mut paths: Vec<(Vec<String>, &str)> = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].chars().next_back().is_some_and(ident) {
            continue;
        }
        paths.push((Vec::new(), &code[i + "crate::".len()..]));
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0
            && code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| ident(c) || c == ':')
        {
            continue;
        }
        let mut base = me.to_vec();
        base.pop();
        paths.push((base, &code[i + "super::".len()..]));
    }
    // A child module named by its bare name from its parent.
    for m in known
        .iter()
        .filter(|m| m.len() == me.len() + 1 && m.starts_with(me))
    {
        let name = format!("{}::", m[me.len()]);
        if mentions(code, &name) {
            out.insert(m.clone());
        }
    }
    for (base, rest) in paths {
        let mut heads = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            heads.extend(group[..end].split(',').map(str::trim));
        } else {
            heads.push(rest);
        }
        for head in heads {
            let mut path = base.clone();
            for seg in head.split("::") {
                let seg: String = seg.chars().take_while(|&c| ident(c)).collect();
                if seg.is_empty() {
                    break;
                }
                path.push(seg);
                if !known.contains(&path) {
                    path.pop();
                    break;
                }
            }
            out.insert(path);
        }
    }
    out
}

/// The cycles among a crate's modules (each strongly connected group of two or more). A
/// module using what its ancestors define is the shape of Rust modules, not a cycle.
fn cycles(src: &str) -> Vec<Vec<String>> {
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.keys().cloned().collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, file) in &mods {
        let refs = references(&code(&read(file)), m, &known);
        let to = refs
            .into_iter()
            .filter(|r| r != m && !m.starts_with(r))
            .collect();
        edges.insert(m.clone(), to);
    }
    // Tarjan's strongly connected components.
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &Vec<String>) {
            self.index.insert(v.clone(), self.next);
            self.low.insert(v.clone(), self.next);
            self.next += 1;
            self.stack.push(v.clone());
            self.on.insert(v.clone());
            for w in self.edges.get(v).cloned().unwrap_or_default() {
                if !self.edges.contains_key(&w) {
                    continue;
                }
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let l = self.low[&v.clone()].min(self.low[&w]);
                    self.low.insert(v.clone(), l);
                } else if self.on.contains(&w) {
                    let l = self.low[v].min(self.index[&w]);
                    self.low.insert(v.clone(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(&w);
                    let done = &w == v;
                    group.push(if w.is_empty() {
                        "(root)".into()
                    } else {
                        w.join("::")
                    });
                    if done {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for m in edges.keys() {
        if !walk.index.contains_key(m) {
            walk.visit(m);
        }
    }
    walk.found
}

#[test]
fn modules_form_no_cycles() {
    let mut all = Vec::new();
    for src in ["shared/src", "shared/io/src", "agent/src", "collector/src"] {
        for c in cycles(src) {
            all.push(format!("{src}: {}", c.join(" ⇄ ")));
        }
    }
    assert!(all.is_empty(), "module cycles:\n{}", all.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let known: BTreeSet<Vec<String>> = [vec![], vec!["a".into()], vec!["b".into()]]
        .into_iter()
        .collect();
    let me = vec!["a".to_string()];
    let refs = references(
        "use crate::{b::X, c};\nfn f() { super::b::y(); crate::a::z() }",
        &me,
        &known,
    );
    assert_eq!(
        refs,
        [vec![], vec!["a".to_string()], vec!["b".to_string()]]
            .into_iter()
            .collect()
    );
    assert!(mentions("use notify::Event;", "notify::"));
    assert!(!mentions("nix::sys::fanotify::Fanotify", "notify::"));
}

#[test]
fn every_path_the_architecture_names_exists() {
    let root = root();
    let text = read("ARCHITECTURE.md");
    let tops = [
        "shared/",
        "agent/",
        "collector/",
        "tests/",
        "policies/",
        "fuzz/",
        ".ci/",
    ];
    let mut missing = Vec::new();
    for (i, piece) in text.split('`').enumerate() {
        // Inside backticks: odd pieces.
        if i % 2 == 0 || piece.contains(' ') || !tops.iter().any(|t| piece.starts_with(t)) {
            continue;
        }
        let path = piece.trim_end_matches(['.', ',', ':']);
        // `dir/{a,b}.rs` names several.
        let names: Vec<String> = match (path.find('{'), path.find('}')) {
            (Some(a), Some(b)) if a < b => path[a + 1..b]
                .split(',')
                .map(|n| format!("{}{}{}", &path[..a], n.trim(), &path[b + 1..]))
                .collect(),
            _ => vec![path.to_string()],
        };
        for n in names {
            if !n.contains('*') && !n.contains('<') && !root.join(&n).exists() {
                missing.push(n);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

/// Files longer than this are hard to hold in one's head; the exceptions say why they are
/// longer for now.
const MAX_LINES: usize = 1000;
const LONGER: &[(&str, &str)] = &[];

#[test]
fn files_stay_within_the_length_budget() {
    let mut over = Vec::new();
    for dir in ["shared", "agent", "collector", "tests", "fuzz"] {
        for f in rust_files(dir) {
            let n = read(&f).lines().count();
            if n > MAX_LINES && !LONGER.iter().any(|(p, _)| *p == f) {
                over.push(format!("{f}: {n} lines"));
            }
        }
    }
    assert!(over.is_empty(), "over {MAX_LINES} lines: {over:?}");
}
