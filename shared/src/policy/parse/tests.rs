//! Tests of the policy parser: each mistake reported once, at its line, and what parses.

use super::*;

/// Compiles `src` as `p.toml` and expects exactly one error rendered as `want`.
fn check(src: &str, want: &str) {
    let errs = compile(&[("p.toml", src)], "/home/u").unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].to_string(), want);
}

#[test]
fn offboard_targets_are_validated() {
    let ok = PolicySet::compile(
        &[(
            "o.toml",
            "[offboard]\nstrip_access = [\"~/Customers\"]\npurge = [\"/var/cache/crm\"]\nquarantine_min_records = 5\n",
        )],
        "/home/kim",
    )
    .unwrap();
    assert_eq!(ok.offboard.strip_access, ["~/Customers"]);
    assert_eq!(ok.offboard.quarantine_min_records, 5);
    assert!(ok.offboard.quarantine);
    check(
        "[offboard]\npurge = [\"~/\"]\n",
        "p.toml:2:10: offboard.purge: `~/` is too broad: name a folder inside the home or two levels below `/`",
    );
    check(
        "[offboard]\npurge = [\"~/a/../..\"]\n",
        "p.toml:2:10: offboard.purge: `~/a/../..` must not contain `..`",
    );
    check(
        "[offboard]\nstrip_access = [\"/home\"]\n",
        "p.toml:2:17: offboard.strip_access: `/home` is too broad: name a folder inside the home or two levels below `/`",
    );
    check(
        "[offboard]\nstrip_access = [\"Customers\"]\n",
        "p.toml:2:17: offboard.strip_access: `Customers` must be absolute or start with `~/`",
    );
    let twice = PolicySet::compile(
        &[
            ("a.toml", "[offboard]\n"),
            ("b.toml", "\n[offboard]\npurge = []\n"),
        ],
        "/h",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        twice,
        "b.toml:2:1: offboard: [offboard] is already defined at a.toml:1"
    );
}

#[test]
fn a_policy_folder_has_one_version_however_it_is_named_or_ordered() {
    let built_in = PolicySet::default_pack("/h").unwrap().version;
    let mut by_path: Vec<(String, &str)> = crate::policy::DEFAULT_PACK
        .iter()
        .map(|(n, s)| (format!("/etc/holdfast/policies/{n}"), *s))
        .collect();
    by_path.sort();
    let refs: Vec<(&str, &str)> = by_path.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    assert_eq!(compile(&refs, "/h").unwrap().version, built_in);
    // A changed byte is another version.
    let mut edited = refs.clone();
    let changed = format!("{}\n", edited[0].1);
    edited[0].1 = &changed;
    assert_ne!(compile(&edited, "/h").unwrap().version, built_in);
}

#[test]
fn each_root_cause_is_reported_once_without_its_echoes() {
    let rule = |id: &str, sup: &str| {
        format!("[[rule]]\nid = \"{id}\"\nseverity = \"high\"\nsupersedes = [{sup}]\n[rule.content]\nmin_records = 5\n")
    };
    let errors = |files: &[(&str, &str)]| -> Vec<String> {
        match compile(files, "/h") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    };
    let base = rule("base", "");
    let users = format!("{}{}", rule("a", "\"base\""), rule("b", "\"base\""));
    // A typo in the file that defines `base`: its one error, not the references to it.
    let typo = base.replace("min_records = 5", "min_records = \"five\"");
    assert_eq!(
        errors(&[("base.toml", &typo), ("users.toml", &users)]),
        ["base.toml:6:15: invalid type: string \"five\", expected u64"]
    );
    // `base` defined twice (the second meant as another id): the duplicate only.
    let twice = format!("{base}{}", rule("base", ""));
    assert_eq!(
        errors(&[("base.toml", &twice), ("users.toml", &users)]),
        ["base.toml:8:6: rule[1].id: duplicate rule id `base` (first defined at base.toml:1)"]
    );
    // A rule that really is missing: named once, with its other references counted.
    assert_eq!(
        errors(&[("users.toml", &users)]),
        ["users.toml:4:15: rule[0].supersedes: no rule `base` to supersede (named by 1 more supersedes)"]
    );
    assert!(errors(&[("base.toml", &base), ("users.toml", &users)]).is_empty());
}

#[test]
fn bulk_read_rules_are_validated() {
    let head = "[[bulk_read]]\nid = \"r\"\nseverity = \"high\"\nfolders = [\"/srv/c\"]\n";
    check(
        &format!("{head}min_files = 1\nwithin = \"10m\"\n"),
        "p.toml:5:13: bulk_read[0].min_files: must be between 2 and 100000",
    );
    check(
        &format!("{head}min_files = 50\nwithin = \"48h\"\n"),
        "p.toml:6:10: bulk_read[0].within: must be between 1s and 24h",
    );
    check(
        &format!("{head}min_files = 50\nwithin = \"1h\"\nby = \"host\"\n"),
        "p.toml:7:6: bulk_read[0].by: unknown `host`, expected `process` or `user`",
    );
    check(
        &format!(
            "{head}min_files = 50\nwithin = \"1h\"\n[[rule]]\nid = \"r\"\nseverity = \"low\"\n"
        ),
        "p.toml:8:6: rule[0].id: duplicate rule id `r` (first defined at p.toml:1)",
    );
    let ok = PolicySet::compile(
        &[(
            "p.toml",
            &format!(
                "{head}min_files = 50\nwithin = \"1h\"\nexclude_executables = [\"/usr/sbin/clamd\", \"/opt/av/*\", {{ path = \"/usr/bin/restic\", sha256 = \"HASH\" }}]\n"
            ).replace("HASH", &"A".repeat(64)),
        )],
        "/home/u",
    )
    .unwrap();
    let r = &ok.bulk_reads[0];
    assert_eq!(r.folder_of("/srv/c/x/a.csv"), Some("/srv/c"));
    assert_eq!(r.folder_of("/srv/cx/a.csv"), None);
    let p = |exe: &str, trusted: Option<bool>, sha: Option<&str>| crate::event::Process {
        pid: 1,
        uid: Some(0),
        user: None,
        exe: Some(exe.into()),
        exe_trusted: trusted,
        exe_sha256: sha.map(str::to_string),
    };
    let hash = "a".repeat(64);
    assert!(r.excludes(&p("/usr/sbin/clamd", Some(true), None)));
    assert!(r.excludes(&p("/opt/av/scan", Some(true), None)));
    // `*` stays within its folder; a copy elsewhere, or one the user can write, is not it.
    assert!(!r.excludes(&p("/opt/av/x/scan", Some(true), None)));
    assert!(!r.excludes(&p("/home/u/usr/sbin/clamd", Some(true), None)));
    assert!(!r.excludes(&p("/usr/sbin/clamd", Some(false), None)));
    assert!(!r.excludes(&p("/usr/bin/cat", Some(true), None)));
    // A pinned binary must have its hash.
    assert!(r.pins_sha256());
    assert!(r.excludes(&p("/usr/bin/restic", Some(true), Some(&hash))));
    assert!(!r.excludes(&p("/usr/bin/restic", Some(true), Some(&"b".repeat(64)))));
    assert!(!r.excludes(&p("/usr/bin/restic", Some(true), None)));
    // Patterns that would match anywhere are refused, naming the field.
    check(
        &format!("{head}min_files = 50\nwithin = \"1h\"\nexclude_executables = [\"*/restic\"]\n"),
        "p.toml:7:24: bulk_read[0].exclude_executables: `*/restic`: an excluded executable must be a whole absolute path such as `/usr/bin/restic` (a pattern like `*/restic` matches a copy of the program anywhere, the user's home included)",
    );
    check(
        &format!("{head}min_files = 50\nwithin = \"1h\"\nexclude_executables = [{{ path = \"/usr/bin/x\", sha256 = \"12\" }}]\n"),
        "p.toml:7:24: bulk_read[0].exclude_executables: `/usr/bin/x`: sha256 must be 64 hexadecimal digits",
    );
}

#[test]
fn errors_point_at_the_fault() {
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"high\"\nactoins = [\"created\"]\n",
        "p.toml:4:1: unknown field `actoins`, expected one of `id`, `description`, `severity`, `actions`, `file_types`, `paths`, `exclude_paths`, `content`, `recognise`, `supersedes`, `destinations`, `escalate`",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"hihg\"\n",
        "p.toml:3:12: unknown variant `hihg`, expected one of `low`, `medium`, `high`, `critical`",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"low\"\nactions = [\"copied\"]\n",
        "p.toml:4:12: unknown variant `copied`, expected one of `created`, `modified`, `opened`, `renamed`, `deleted`",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"low\"\npaths = [\"~/x/[\"]\n",
        "p.toml:4:10: rule[0].paths: bad glob: error parsing glob '/home/u/x/[': unclosed character class; missing ']'",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"low\"\nfile_types = [\"cvs\"]\n",
        "p.toml:4:15: rule[0].file_types: unknown file type `cvs`, expected one of: csv, tsv, text, json, vcf, xlsx, xls, zip, pdf, binary, empty",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"low\"\n[[rule]]\nid = \"a\"\nseverity = \"low\"\n",
        "p.toml:5:6: rule[1].id: duplicate rule id `a` (first defined at p.toml:1)",
    );
    check(
        "[[rule]]\nid = \"a\"\nseverity = \"low\"\n[rule.content]\nmin_findings = { emial = 3 }\n",
        "p.toml:5:18: rule[0].content.min_findings: unknown classifier `emial`, expected one of: email, phone, edm, cn_id, card, disguised, zip_bomb, encrypted, nested_too_deep, nested_too_large, damaged_entry, damaged_part, undefined_entity, unreadable, cpu_limit, byte_limit",
    );
    check(
        "[[rule]\n",
        "p.toml:1:7: invalid table header\nexpected `.`, `]]`",
    );
    check(
        "[[rule]]\nseverity = \"low\"\n",
        "p.toml:1:1: missing field `id`",
    );
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    assert_eq!(line_col("", 0), (1, 1));
    assert_eq!(line_col("abc", 99), (1, 4));
}

#[test]
fn home_expansion() {
    assert_eq!(
        expand_home("~/Downloads/**", "/home/u/"),
        "/home/u/Downloads/**"
    );
    assert_eq!(expand_home("~bob/x", "/home/u"), "~bob/x");
    assert_eq!(expand_home("/abs/**", "/home/u"), "/abs/**");
}
