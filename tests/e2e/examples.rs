//! The examples, built by the flake exactly as users build them.

use std::path::Path;

use crate::dockerd::{Dockerd, dockerd};
use crate::images::{snapshot, umoci_unpack, validate_layout};
use crate::nix::{self, closure, example, example_attr, layer_store_paths, package};
use crate::util::{path_str, read_json, since_epoch, tool};

#[test]
fn hello_has_a_bash_and_hello_layer_then_a_script_layer() {
    let image = read_json(&example("hello"));
    let layers = image["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{image:#}");
    let (bash, hello) = (package("bash"), package("hello"));
    assert_eq!(layer_store_paths(&layers[0]), closure(&[&bash, &hello]));
    let top: Vec<_> = layer_store_paths(&layers[1]).into_iter().collect();
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
    let nonce = since_epoch().as_nanos();
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
        nix::assert_reproducible(&image, umask, "basic");
    }
    let document = read_json(&image);
    let layer_output = tool("nix-store", &["-q", "--references", path_str(&image)]);
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

/// `nix run` of the example `name`'s attribute `script` with `args`, with
/// the tests' dockerd as `DOCKER_HOST`; returns that daemon.
fn run_with_dockerd(name: &str, script: &str, args: &[&str]) -> &'static Dockerd {
    let daemon = dockerd();
    nix::run(
        &format!("{}.{script}", example_attr(name)),
        args,
        &[("DOCKER_HOST", &daemon.host())],
    );
    daemon
}

#[test]
fn basic_runs_in_docker_through_copy_to_docker_daemon() {
    let daemon = run_with_dockerd("basic", "copyToDockerDaemon", &[]);
    assert_eq!(
        daemon.run(&["run", "--rm", "basic:latest"]),
        "Hello, world!\n"
    );
}

#[test]
fn hello_runs_in_docker_under_its_hash_tag() {
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
    let daemon = run_with_dockerd("hello", "pushToDockerDeamon", &["--quiet"]);
    assert_eq!(
        daemon.run(&["run", "--rm", &reference]),
        "Hello, world!\nHaaa aa... I'm dying!!!\n"
    );
}

#[test]
fn bash_has_core_utilities_in_bin() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bash.tar");
    let daemon = run_with_dockerd(
        "bash",
        "copyTo",
        &[&format!("docker-archive:{}:bash:latest", archive.display())],
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
    nix::copy(&image, &format!("oci:{}:hello", layout.display()), &[]);
    validate_layout(&layout);
    let bundle = dir.path().join("bundle");
    let rootfs = umoci_unpack(&layout, "hello", &bundle);
    let unpacked = snapshot(&rootfs);
    for store_path in closure(&[&package("bash"), &package("hello")]) {
        let expected = snapshot(Path::new(&store_path));
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
