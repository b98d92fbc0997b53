//! Running real Nix: the flake with the offline package set standing in for
//! nixpkgs, and expressions of the tests' own; and reading what it built
//! (store paths of the package set, closures, image JSON).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{assert_success, run_ok, stdout_ok, tool};

/// The system the examples are built for.
const SYSTEM: &str = "x86_64-linux";

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

/// `nix SUBCOMMAND` on this repository's flake, with the offline package
/// set as nixpkgs; the installable (`.#ATTR`) comes next.
fn flake_command(subcommand: &[&str], sandbox: &str) -> Command {
    let mut command = command("nix", sandbox);
    command.args(subcommand).args([
        "--override-input",
        "nixpkgs",
        "path:./tests/offline-nixpkgs",
    ]);
    command
}

/// `nix build --json` on flake attributes; returns the `out` paths.
fn flake_build(attrs: &[&str], sandbox: &str) -> Vec<PathBuf> {
    let mut command = flake_command(&["build", "--no-link", "--json"], sandbox);
    command.args(attrs.iter().map(|attr| format!(".#{attr}")));
    let built: Value =
        serde_json::from_slice(&run_ok(&mut command).stdout).expect("nix build --json output");
    built
        .as_array()
        .unwrap()
        .iter()
        .map(|b| PathBuf::from(b["outputs"]["out"].as_str().unwrap()))
        .collect()
}

/// `nix-build` of attributes of the offline package set, outside the
/// sandbox (its host binaries need the host); returns the store paths.
fn package_set_build(names: &[&str]) -> Vec<String> {
    let mut command = command("nix-build", "relaxed");
    command.args(["--no-out-link", "tests/offline-nixpkgs"]);
    for name in names {
        command.args(["-A", name]);
    }
    stdout_ok(&mut command).lines().map(str::to_owned).collect()
}

/// Builds what needs the host outside the sandbox (the executable, compiled
/// with the machine's cargo; the package set's host binaries), once.
fn prerequisites() -> &'static PathBuf {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        let helper = flake_build(&["default"], "relaxed").remove(0);
        package_set_build(&["hello", "bash", "busybox"]);
        helper
    })
}

/// The nix2container package as the flake builds it.
pub fn helper() -> PathBuf {
    prerequisites().clone()
}

/// The nix2container executable as the flake builds it.
pub fn nix2container() -> Command {
    Command::new(helper().join("bin/nix2container"))
}

/// `nix2container copy IMAGE DESTINATION --quiet` with the flake's
/// executable and extra environment variables; it must succeed.
pub fn copy(image: &Path, destination: &str, env: &[(&str, &str)]) {
    run_ok(
        nix2container()
            .arg("copy")
            .arg(image)
            .arg(destination)
            .arg("--quiet")
            .envs(env.iter().copied()),
    );
}

/// Builds flake attributes with the sandbox on (layer and image
/// derivations must build there, as they do for users).
pub fn build(attrs: &[&str]) -> Vec<PathBuf> {
    prerequisites();
    flake_build(attrs, "true")
}

/// The flake attribute of the example `name`.
pub fn example_attr(name: &str) -> String {
    format!("legacyPackages.{SYSTEM}.examples.{name}")
}

/// Builds an example as users do, through the flake.
pub fn example(name: &str) -> PathBuf {
    build(&[&example_attr(name)]).remove(0)
}

/// The package set's attribute `name` as a store path.
pub fn package(name: &str) -> String {
    package_set_build(&[name]).remove(0)
}

/// The closure of `paths`, as Nix knows it.
pub fn closure(paths: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["-qR"];
    args.extend_from_slice(paths);
    tool("nix-store", &args)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The derivation that built `path`.
pub fn deriver(path: &Path) -> String {
    stdout_ok(
        Command::new("nix-store")
            .args(["-q", "--deriver"])
            .arg(path),
    )
    .trim()
    .to_owned()
}

/// The store paths of a layer object of an image JSON, as `(path,
/// relocated to /)`.
pub fn layer_paths(layer: &Value) -> Vec<(String, bool)> {
    layer["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_owned(),
                p.get("rewrite").is_some(),
            )
        })
        .collect()
}

/// The store paths of a layer object, relocated or not.
pub fn layer_store_paths(layer: &Value) -> BTreeSet<String> {
    layer_paths(layer).into_iter().map(|(p, _)| p).collect()
}

/// Builds a Nix expression in the sandbox; the expression sees
/// `t = { pkgs, buildImage, buildLayer }` (tests/nix/default.nix).
pub fn build_expr(expr: &str) -> PathBuf {
    PathBuf::from(stdout_ok(&mut expr_command("nix-build", expr)).trim())
}

/// Builds a Nix expression as `build_expr` does, expecting the build (not
/// the evaluation) to fail; returns the error output.
pub fn build_error(expr: &str) -> String {
    expr_error("nix-build", expr, "building")
}

/// Evaluates a Nix expression as `build_expr` does, expecting failure;
/// returns the error output.
pub fn eval_error(expr: &str) -> String {
    expr_error("nix-instantiate", expr, "evaluating")
}

/// Asserts that evaluating the derivation of `expr` fails with `message`.
pub fn assert_eval_fails_with(expr: &str, message: &str) {
    let error = eval_error(&format!("({expr}).drvPath"));
    assert!(
        error.contains(message),
        "{expr}\nexpected {message:?} in:\n{error}"
    );
}

fn expr_error(program: &str, expr: &str, doing: &str) -> String {
    let output = expr_command(program, expr)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(!output.status.success(), "{doing} {expr} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The derivations `nix-build --dry-run` says it would build for `expr`.
pub fn would_build(expr: &str) -> Vec<String> {
    let mut command = expr_command("nix-build", expr);
    command.arg("--dry-run");
    let output = run_ok(&mut command);
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

/// Rebuilds the derivation of `path` under `umask` and fails, naming
/// `what`, if its output differs from the existing one.
pub fn assert_reproducible(path: &Path, umask: u32, what: &str) {
    let check = command("sh", "true")
        .args([
            "-c",
            &format!(
                "umask {umask:03o} && exec nix-store --realise --check {}",
                deriver(path)
            ),
        ])
        .output()
        .expect("nix-store runs");
    assert_success(
        &check,
        &format!("{what}: rebuilding under umask {umask:03o}"),
    );
}

/// `nix run` of a flake attribute (sandbox as for builds), with extra
/// environment variables; returns the output.
pub fn run(attr: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    prerequisites();
    let mut command = flake_command(&["run"], "true");
    command
        .arg(format!(".#{attr}"))
        .arg("--")
        .args(args)
        .envs(env.iter().copied());
    run_ok(&mut command)
}

/// Evaluates a flake attribute to a string.
pub fn eval_raw(attr: &str) -> String {
    stdout_ok(flake_command(&["eval", "--raw"], "true").arg(format!(".#{attr}")))
}
