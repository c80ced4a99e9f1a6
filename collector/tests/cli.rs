//! The collector CLI's error messages: each names the flag, file or field at fault.
//! (Being an integration test of this package also makes `cargo test` build the binary.)
#![allow(clippy::expect_used)]

use holdfast_io::testing::{expect_exit, expect_exit_line as check};

const EXE: &str = env!("CARGO_BIN_EXE_holdfast-collector");

#[test]
fn errors_name_the_flag_file_or_field_at_fault() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().display();
    check(
        EXE,
        &format!("token create --user ada --ttl 0s --data-dir {d}"),
        2,
        "--ttl: must be between 1s and 30 days",
    );
    check(
        EXE,
        &format!("token create --user ada --ttl soon --data-dir {d}"),
        2,
        "--ttl `soon`",
    );
    let blank = [
        "token",
        "create",
        "--user",
        " ",
        "--data-dir",
        &d.to_string(),
    ];
    expect_exit(EXE, &blank, 2, "--user: must not be empty");
    check(
        EXE,
        &format!("alerts list --data-dir {d}/empty"),
        2,
        "no collector database here",
    );
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "listen = \"localhost\"\n").expect("write");
    check(
        EXE,
        &format!("serve --config {}", cfg.display()),
        2,
        "c.toml: listen: `localhost` is not an IP:PORT socket address",
    );
    check(EXE, "quickstart --listen nowhere", 2, "--listen: `nowhere`");
}
