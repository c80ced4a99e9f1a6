//! The collector CLI's error messages: each names the flag, file or field at fault.
//! (Being an integration test of this package also makes `cargo test` build the binary.)
#![allow(clippy::expect_used)]

use std::process::Command;

fn check(args: &[&str], code: i32, stderr_has: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-collector"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running holdfast-collector");
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
            "token",
            "create",
            "--user",
            "ada",
            "--ttl",
            "0s",
            "--data-dir",
            &d,
        ],
        2,
        "--ttl: must be between 1s and 30 days",
    );
    check(
        &[
            "token",
            "create",
            "--user",
            "ada",
            "--ttl",
            "soon",
            "--data-dir",
            &d,
        ],
        2,
        "--ttl `soon`",
    );
    check(
        &["token", "create", "--user", " ", "--data-dir", &d],
        2,
        "--user: must not be empty",
    );
    let empty = tmp.path().join("empty").display().to_string();
    check(
        &["alerts", "list", "--data-dir", &empty],
        2,
        "no collector database here",
    );
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "listen = \"localhost\"\n").expect("write");
    check(
        &["serve", "--config", &cfg.display().to_string()],
        2,
        "c.toml: listen: `localhost` is not an IP:PORT socket address",
    );
    check(
        &["quickstart", "--listen", "nowhere"],
        2,
        "--listen: `nowhere`",
    );
}
