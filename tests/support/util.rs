//! Helpers shared by the test binaries: running the executable under test
//! and the tools that read its output, and checking how they ended.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

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

/// Panics unless `output`, of the run `what`, is a success; the message
/// has the exit status and both streams.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Standard output of a run that must succeed.
pub fn stdout_of(output: &Output) -> String {
    assert_success(output, "the command");
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Standard error of a run that must succeed.
pub fn stderr_of(output: &Output) -> String {
    assert_success(output, "the command");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `command`, which must succeed, and returns its output.
pub fn run_ok(command: &mut Command) -> Output {
    let what = command_line(command);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(&output, &what);
    output
}

/// Standard output of `command`, which must succeed.
pub fn stdout_ok(command: &mut Command) -> String {
    String::from_utf8(run_ok(command).stdout).expect("UTF-8 output")
}

/// Runs a tool that must succeed, and returns its standard output.
pub fn tool(program: &str, args: &[&str]) -> String {
    stdout_ok(Command::new(program).args(args))
}

/// `program arg…`, for messages.
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The JSON document at `path`.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `path` as a string, for command lines.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The time since the Unix epoch.
pub fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}
