//! The agent CLI's error messages: each names the flag, file or field at fault.
//! (Being an integration test of this package also makes `cargo test` build the binary.)
#![allow(clippy::expect_used)]

use holdfast_io::testing::expect_exit_line as check;

const EXE: &str = env!("CARGO_BIN_EXE_holdfast-agent");

#[test]
fn errors_name_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().display();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = \"/x\"\nsettle_ms = \"soon\"\n").expect("write");
    std::fs::create_dir_all(tmp.path().join("policies")).expect("mkdir");
    for (args, want) in [
        ("scan".to_string(), "required"),
        (
            format!("enroll --collector 127.0.0.1:1 --token nope --data-dir {d}"),
            "--token: token must look like hf1.",
        ),
        (
            format!("run --config {d}/missing.toml"),
            "missing.toml: No such file",
        ),
        (
            format!("run --config {}", bad.display()),
            "bad.toml:2:13: invalid type: string \"soon\", expected u64",
        ),
        (
            format!("scan --policies {d}/policies {d}"),
            "policies: no .toml policy files in this directory",
        ),
        (format!("status --data-dir {d}"), "not enrolled"),
    ] {
        check(EXE, &args, 2, want);
    }
}
