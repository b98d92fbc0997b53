//! Helpers shared by the test binaries.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The executable under test.
pub fn nix2container() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nix2container"))
}

/// Runs the executable in `dir` with `args`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    nix2container()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the executable runs")
}

/// Standard output of a run that must succeed.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed with {}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}
