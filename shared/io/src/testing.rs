//! Test support for the crates above (feature `testing`): the scratch folder most file tests
//! open with.

use std::path::PathBuf;

/// A fresh temporary folder and the path `name` inside it (not created). The folder is
/// removed when the returned guard drops, so keep it alive as long as the path is used.
///
/// # Panics
/// When no temporary folder can be made: only tests call this.
#[allow(clippy::expect_used)]
pub fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join(name);
    (dir, path)
}

/// [`expect_exit`] with the arguments of `line`, split at spaces.
pub fn expect_exit_line(exe: &str, line: &str, code: i32, stderr_has: &str) {
    let args: Vec<&str> = line.split(' ').collect();
    expect_exit(exe, &args, code, stderr_has);
}

/// Runs the program `exe` with `args` (`NO_COLOR` set) and asserts that it exits with `code`
/// and says `stderr_has` on stderr: the check behind the CLIs' error-message tests.
///
/// # Panics
/// When the program cannot run, or exits otherwise, or says something else.
#[allow(clippy::expect_used)]
pub fn expect_exit(exe: &str, args: &[&str], code: i32, stderr_has: &str) {
    let out = std::process::Command::new(exe)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running the program under test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{exe} {args:?}: {err}");
    assert!(
        err.contains(stderr_has),
        "{exe} {args:?}: expected {stderr_has:?} in {err}"
    );
}
