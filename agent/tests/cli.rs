//! The agent CLI's error messages: each names the flag, file or field at fault.
//! (Being an integration test of this package also makes `cargo test` build the binary.)
#![allow(clippy::expect_used)]

use std::process::Command;

/// Runs the agent binary; returns (exit code, stderr).
fn check(args: &[&str], code: i32, stderr_has: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-agent"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running holdfast-agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(stderr_has),
        "{args:?}: expected {stderr_has:?} in {err}"
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().display().to_string();
    check(
        &[
            "enroll",
            "--collector",
            "127.0.0.1:1",
            "--token",
            "nope",
            "--data-dir",
            &d,
        ],
        2,
        "--token: token must look like hf1.",
    );
    let missing = tmp.path().join("missing.toml").display().to_string();
    check(
        &["run", "--config", &missing],
        2,
        "missing.toml: No such file",
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = \"/x\"\nsettle_ms = \"soon\"\n").expect("write");
    check(
        &["run", "--config", &bad.display().to_string()],
        2,
        "bad.toml:2:13: invalid type: string \"soon\", expected u64",
    );
    let empty = tmp.path().join("policies");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let e = empty.display().to_string();
    check(
        &["scan", "--policies", &e, &d],
        2,
        "policies: no .toml policy files in this directory",
    );
    check(&["status", "--data-dir", &d], 2, "not enrolled");
    check(&["scan"], 2, "required");
}
