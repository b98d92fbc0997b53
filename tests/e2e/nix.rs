//! Running real Nix: the flake with the offline package set standing in for
//! nixpkgs, and expressions of the tests' own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Settings every Nix call gets: offline, flakes on, builds as the calling
/// user, and the sandbox as asked.
fn nix_config(sandbox: &str) -> String {
    format!(
        "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = {sandbox}\nwarn-dirty = false\n"
    )
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn command(program: &str, sandbox: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("NIX_CONFIG", nix_config(sandbox))
        .current_dir(repo());
    command
}

fn check(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `nix build --json` on flake attributes of this repository, with the
/// offline package set as nixpkgs; returns the `out` paths.
fn flake_build(attrs: &[&str], sandbox: &str) -> Vec<PathBuf> {
    let mut command = command("nix", sandbox);
    command.args([
        "build",
        "--no-link",
        "--json",
        "--override-input",
        "nixpkgs",
        "path:./tests/offline-nixpkgs",
    ]);
    command.args(attrs.iter().map(|attr| format!(".#{attr}")));
    let output = check(
        command.output().expect("nix runs"),
        &format!("nix build {attrs:?}"),
    );
    let built: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("nix build --json output");
    built
        .as_array()
        .unwrap()
        .iter()
        .map(|b| PathBuf::from(b["outputs"]["out"].as_str().unwrap()))
        .collect()
}

/// Builds what needs the host outside the sandbox (the executable, compiled
/// with the machine's cargo; the package set's host binaries), once.
fn prerequisites() -> &'static PathBuf {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        let helper = flake_build(&["default"], "relaxed").remove(0);
        let mut command = command("nix-build", "relaxed");
        command.args([
            "--no-out-link",
            "tests/offline-nixpkgs",
            "-A",
            "hello",
            "-A",
            "bash",
            "-A",
            "busybox",
        ]);
        check(
            command.output().expect("nix-build runs"),
            "building the package set's host tools",
        );
        helper
    })
}

/// The nix2container executable as the flake builds it.
pub fn helper() -> PathBuf {
    prerequisites().clone()
}

/// Builds flake attributes with the sandbox on (layer and image
/// derivations must build there, as they do for users).
pub fn build(attrs: &[&str]) -> Vec<PathBuf> {
    prerequisites();
    flake_build(attrs, "true")
}

/// Builds a Nix expression in the sandbox; the expression sees
/// `t = { pkgs, buildImage, buildLayer }` (tests/nix/default.nix).
pub fn build_expr(expr: &str) -> PathBuf {
    let output = check(
        expr_command("nix-build", expr)
            .output()
            .expect("nix-build runs"),
        expr,
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Builds a Nix expression as `build_expr` does, expecting the build (not
/// the evaluation) to fail; returns the error output.
pub fn build_error(expr: &str) -> String {
    let output = expr_command("nix-build", expr)
        .output()
        .expect("nix-build runs");
    assert!(!output.status.success(), "building {expr} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Evaluates a Nix expression as `build_expr` does, expecting failure;
/// returns the error output.
pub fn eval_error(expr: &str) -> String {
    let output = expr_command("nix-instantiate", expr)
        .output()
        .expect("nix-instantiate runs");
    assert!(!output.status.success(), "evaluation of {expr} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The derivations `nix-build --dry-run` says it would build for `expr`.
pub fn would_build(expr: &str) -> Vec<String> {
    let mut command = expr_command("nix-build", expr);
    command.arg("--dry-run");
    let output = check(command.output().expect("nix-build runs"), expr);
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("/nix/store/") && l.ends_with(".drv"))
        .map(str::to_owned)
        .collect()
}

fn expr_command(program: &str, expr: &str) -> Command {
    let helper = helper();
    let mut command = command(program, "true");
    let full = format!(
        "let t = import ./tests/nix {{ helper = \"{}\"; }}; in {expr}",
        helper.display()
    );
    if program == "nix-instantiate" {
        command.args(["--eval", "--read-write-mode", "-E", &full]);
    } else {
        command.args(["--no-out-link", "-E", &full]);
    }
    command
}

/// Rebuilds `drv`'s output and fails if it differs from the existing one.
pub fn check_reproducible(path: &Path, umask: u32) -> Output {
    let drv = check(
        Command::new("nix-store")
            .args(["-q", "--deriver"])
            .arg(path)
            .output()
            .unwrap(),
        "nix-store -q --deriver",
    );
    let drv = String::from_utf8(drv.stdout).unwrap();
    let mut command = command("sh", "true");
    command.args([
        "-c",
        &format!(
            "umask {umask:03o} && exec nix-store --realise --check {}",
            drv.trim()
        ),
    ]);
    command.output().expect("nix-store runs")
}

/// `nix run` of a flake attribute (sandbox as for builds), with extra
/// environment variables; returns the output.
pub fn run(attr: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    prerequisites();
    let mut command = command("nix", "true");
    command.args([
        "run",
        "--override-input",
        "nixpkgs",
        "path:./tests/offline-nixpkgs",
        &format!(".#{attr}"),
        "--",
    ]);
    command.args(args).envs(env.iter().copied());
    check(
        command.output().expect("nix runs"),
        &format!("nix run .#{attr}"),
    )
}

/// Evaluates a flake attribute to a string.
pub fn eval_raw(attr: &str) -> String {
    let mut command = command("nix", "true");
    command.args([
        "eval",
        "--raw",
        "--override-input",
        "nixpkgs",
        "path:./tests/offline-nixpkgs",
        &format!(".#{attr}"),
    ]);
    let output = check(
        command.output().expect("nix runs"),
        &format!("nix eval .#{attr}"),
    );
    String::from_utf8(output.stdout).unwrap()
}
