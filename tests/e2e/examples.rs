//! The examples, built by the flake exactly as users build them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::dockerd::dockerd;
use crate::nix;

const SYSTEM: &str = "x86_64-linux";

fn example(name: &str) -> PathBuf {
    nix::build(&[&format!("legacyPackages.{SYSTEM}.examples.{name}")]).remove(0)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn layer_paths(layer: &Value) -> BTreeSet<String> {
    layer["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect()
}

/// The closure of `paths`, as Nix knows it.
fn closure(paths: &[&str]) -> BTreeSet<String> {
    let output = Command::new("nix-store")
        .arg("-qR")
        .args(paths)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The package set's attribute `name` as a store path.
fn package(name: &str) -> String {
    let output = Command::new("nix-build")
        .env(
            "NIX_CONFIG",
            "substituters =\nbuild-users-group =\nsandbox = relaxed",
        )
        .current_dir(nix::repo())
        .args(["--no-out-link", "tests/offline-nixpkgs", "-A", name])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn hello_has_a_bash_and_hello_layer_then_a_script_layer() {
    let image = read_json(&example("hello"));
    let layers = image["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{image:#}");
    let (bash, hello) = (package("bash"), package("hello"));
    assert_eq!(layer_paths(&layers[0]), closure(&[&bash, &hello]));
    let top: Vec<_> = layer_paths(&layers[1]).into_iter().collect();
    assert_eq!(top.len(), 1, "{top:?}");
    assert!(top[0].ends_with("-conversation"), "{top:?}");
    assert_eq!(image["config"]["Entrypoint"][0], format!("{bash}/bin/bash"));
    for layer in layers {
        assert_eq!(
            layer["media_type"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_ne!(layer["digest"], layer["diff_id"]);
    }
}

/// The hello example with a script of the given text.
fn hello_with_script(text: &str) -> String {
    format!(
        r#"t.buildImage {{
             name = "hello";
             config.entrypoint = [ "${{t.pkgs.bash}}/bin/bash" (t.pkgs.writeScript "conversation" "{text}") ];
             isolatedDeps = [ (t.buildLayer {{ deps = [ t.pkgs.bash t.pkgs.hello ]; }}) ];
           }}"#
    )
}

#[test]
fn editing_the_script_rebuilds_only_the_top_layer() {
    // Texts never built before, so that the script itself is new each run.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (first_text, second_text) = (
        format!("echo first {nonce}"),
        format!("echo second {nonce}"),
    );
    let first = nix::build_expr(&hello_with_script(&first_text));
    let built = nix::would_build(&hello_with_script(&second_text));
    let names: Vec<&str> = built.iter().map(|d| d.split_once('-').unwrap().1).collect();
    let mut sorted = names.clone();
    sorted.sort();
    // The script, the config file, the top layer and the image; never the
    // bash+hello layer, whose derivation did not change.
    assert_eq!(
        sorted,
        [
            "config.json.drv",
            "conversation.drv",
            "image-hello.json.drv",
            "nix2container-layer.drv"
        ],
        "{built:#?}"
    );
    let second = nix::build_expr(&hello_with_script(&second_text));
    let (first, second) = (read_json(&first), read_json(&second));
    assert_eq!(first["layers"][0], second["layers"][0]);
    assert_ne!(first["layers"][1], second["layers"][1]);
}

#[test]
fn images_and_layers_rebuild_byte_for_byte() {
    let image = example("basic");
    for umask in [0o022, 0o077] {
        let check = nix::check_reproducible(&image, umask);
        assert!(
            check.status.success(),
            "umask {umask:03o}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let document = read_json(&image);
    let layer_output = Command::new("nix-store")
        .args(["-q", "--references"])
        .arg(&image)
        .output()
        .unwrap();
    let layer_output = String::from_utf8(layer_output.stdout).unwrap();
    assert!(!document["layers"].as_array().unwrap().is_empty());
    // The image refers to the helper and to every store path of its layers.
    assert!(
        layer_output.contains(
            document["helper"]
                .as_str()
                .unwrap()
                .trim_end_matches("/bin/nix2container")
        )
    );
}

fn example_attr(name: &str) -> String {
    format!("legacyPackages.{SYSTEM}.examples.{name}")
}

#[test]
fn basic_runs_in_docker_through_copy_to_docker_daemon() {
    let daemon = dockerd();
    let host = daemon.host();
    nix::run(
        &format!("{}.copyToDockerDaemon", example_attr("basic")),
        &[],
        &[("DOCKER_HOST", &host)],
    );
    assert_eq!(
        daemon.run(&["run", "--rm", "basic:latest"]),
        "Hello, world!\n"
    );
}

#[test]
fn hello_runs_in_docker_under_its_hash_tag() {
    let daemon = dockerd();
    let host = daemon.host();
    let reference = nix::eval_raw(&format!("{}.imageRefUnsafe", example_attr("hello")));
    let image = example("hello");
    let hash = image
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(reference, format!("hello:{hash}"));
    nix::run(
        &format!("{}.pushToDockerDeamon", example_attr("hello")),
        &["--quiet"],
        &[("DOCKER_HOST", &host)],
    );
    assert_eq!(
        daemon.run(&["run", "--rm", &reference]),
        "Hello, world!\nHaaa aa... I'm dying!!!\n"
    );
}

#[test]
fn bash_has_core_utilities_in_bin() {
    let daemon = dockerd();
    let host = daemon.host();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bash.tar");
    nix::run(
        &format!("{}.copyTo", example_attr("bash")),
        &[&format!("docker-archive:{}:bash:latest", archive.display())],
        &[("DOCKER_HOST", &host)],
    );
    daemon.run(&["load", "-i", archive.to_str().unwrap()]);
    let listing = daemon.run(&["run", "--rm", "bash:latest", "/bin/bash", "-c", "ls /bin"]);
    for tool in ["bash", "ls", "cat"] {
        assert!(
            listing.lines().any(|l| l == tool),
            "no {tool} in /bin:\n{listing}"
        );
    }
}

/// umoci checks every digest, size and diff_id; the unpacked tree must be
/// the closure, with the store's modes and root ownership.
#[test]
fn hello_unpacks_with_umoci_and_validates() {
    let image = example("hello");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let output = Command::new(nix::helper().join("bin/nix2container"))
        .arg("copy")
        .arg(&image)
        .arg(format!("oci:{}:hello", layout.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let validate = Command::new("oci-image-tool")
        .args(["validate", "--type", "image"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
    let bundle = dir.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:hello", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let rootfs = bundle.join("rootfs");
    let unpacked = crate::images::snapshot(&rootfs);
    for store_path in closure(&[&package("bash"), &package("hello")]) {
        let expected = crate::images::snapshot(Path::new(&store_path));
        for (relative, node) in expected {
            let inside = Path::new(&store_path)
                .strip_prefix("/")
                .unwrap()
                .join(&relative);
            assert_eq!(unpacked.get(&inside), Some(&node), "{}", inside.display());
        }
    }
    let document = read_json(&image);
    let script = document["layers"][1]["paths"][0]["path"].as_str().unwrap();
    assert!(rootfs.join(script.trim_start_matches('/')).is_file());
    let _ = std::fs::remove_dir_all(&bundle);
}
