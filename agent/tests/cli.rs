//! The agent CLI's error messages: each names the flag, file or field at fault.
//! (Being an integration test of this package also makes `cargo test` build the binary.)
#![allow(clippy::expect_used)]

use holdfast_io::testing::expect_exit_line as check;

const EXE: &str = env!("CARGO_BIN_EXE_holdfast-agent");

#[test]
fn errors_name_what_is_wrong() {
    check(EXE, "scan", 2, "required");
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().display();
    check(
        EXE,
        &format!("enroll --collector 127.0.0.1:1 --token nope --data-dir {d}"),
        2,
        "--token: token must look like hf1.",
    );
    check(
        EXE,
        &format!("run --config {d}/missing.toml"),
        2,
        "missing.toml: No such file",
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = \"/x\"\nsettle_ms = \"soon\"\n").expect("write");
    check(
        EXE,
        &format!("run --config {}", bad.display()),
        2,
        "bad.toml:2:13: invalid type: string \"soon\", expected u64",
    );
    std::fs::create_dir_all(tmp.path().join("policies")).expect("mkdir");
    check(
        EXE,
        &format!("scan --policies {d}/policies {d}"),
        2,
        "policies: no .toml policy files in this directory",
    );
    check(EXE, &format!("status --data-dir {d}"), 2, "not enrolled");
}
