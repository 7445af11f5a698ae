//! Helpers for the cross-process tests: find (or build) the `elchain` binary and run it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `elchain` binary of this workspace, built on first use if it is not there yet.
pub fn elchain_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test executables live in target/<profile>/deps; the binary in target/<profile>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile> directory");
        let bin = profile_dir.join(format!("elchain{}", std::env::consts::EXE_SUFFIX));
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "elchain", "--bin", "elchain"]);
        if release {
            build.arg("--release");
        }
        // Always ask cargo: it rebuilds only when sources changed, so the binary is never stale.
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the elchain binary failed");
        assert!(bin.is_file(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Run `elchain` with `args`, capturing output.
pub fn elchain(args: &[&str]) -> Output {
    Command::new(elchain_bin()).args(args).env("NO_COLOR", "1").output().expect("elchain runs")
}

/// Run `elchain` with `args` in directory `dir` (relative paths resolve there).
pub fn elchain_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(elchain_bin()).args(args).current_dir(dir).env("NO_COLOR", "1").output().expect("elchain runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub mod deployment;
pub mod history;
