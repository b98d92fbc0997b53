//! Every option of the Nix API, and upstream's test scenarios, run for
//! real: images built by Nix in the sandbox with the offline package set,
//! loaded into the tests' own dockerd and run there. Tests named
//! `upstream_<n>_…` pin the fix of upstream nix2container's issue or pull
//! request n.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::dockerd::{Dockerd, dockerd};
use crate::images::umoci_unpack;
use crate::nix::{self, closure, example, layer_paths, layer_store_paths, nix2container, package};
use crate::util::{read_json, run_ok, since_epoch, stdout_of, stdout_ok, tool};

fn layers(image: &Value) -> &Vec<Value> {
    image["layers"].as_array().unwrap()
}

/// What the `greet` script of the layered examples prints.
const GREETING: &str = "Hello, world!\nLinux\n";

/// The first element of the image's entrypoint.
fn entrypoint(image: &Value) -> String {
    image["config"]["Entrypoint"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Store paths as `(path, relocated)` pairs, none relocated.
fn in_store(paths: BTreeSet<String>) -> BTreeSet<(String, bool)> {
    paths.into_iter().map(|p| (p, false)).collect()
}

/// Fails if a store path is in two layers of `image` (at the same place).
fn assert_no_path_twice(image: &Value) -> BTreeSet<(String, bool)> {
    let mut seen = BTreeSet::new();
    for layer in layers(image) {
        for path in layer_paths(layer) {
            assert!(
                seen.insert(path.clone()),
                "{path:?} is in two layers: {image:#}"
            );
        }
    }
    seen
}

/// Loads `image` into the tests' dockerd as `reference`.
fn load(image: &Path, reference: &str) -> &'static Dockerd {
    let daemon = dockerd();
    nix::copy(
        image,
        &format!("docker-daemon:{reference}"),
        &[("DOCKER_HOST", &daemon.host())],
    );
    daemon
}

/// `docker run --rm IMAGE ARGS…` on the tests' dockerd.
fn docker_run(image: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", image];
    all.extend_from_slice(args);
    dockerd().run(&all)
}

/// `ls -ln` fields of the line naming `name`: mode, links, uid, gid, ….
fn ls_fields<'a>(listing: &'a str, name: &str) -> Vec<&'a str> {
    listing
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.last() == Some(&name))
        .unwrap_or_else(|| panic!("no {name} in:\n{listing}"))
}

/// The image unpacked by umoci (which checks every digest): the scratch
/// directory, to keep alive, and the root file system.
fn unpack(image: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    nix::copy(image, &format!("oci:{}:image", layout.display()), &[]);
    let rootfs = umoci_unpack(&layout, "image", &dir.path().join("bundle"));
    (dir, rootfs)
}

/// Asserts that building `expr` fails with every fragment of `expected`
/// in the error; returns the error.
fn assert_build_fails_with(expr: &str, expected: &[&str]) -> String {
    let error = nix::build_error(expr);
    for fragment in expected {
        assert!(
            error.contains(fragment),
            "expected {fragment:?} in:\n{error}"
        );
    }
    error
}

// ---------------------------------------------------------------- perms

#[test]
fn ownership_example_gives_one_file_uid_and_gid_1001() {
    load(&example("ownership"), "ownership:latest");
    let listing = docker_run("ownership:latest", &[]);
    // Upstream's expectation: -r--r--r-- 1 1001 1001 0 Jan  1  1970 test1.txt
    assert_eq!(
        ls_fields(&listing, "test1.txt"),
        [
            "-r--r--r--",
            "1",
            "1001",
            "1001",
            "0",
            "Jan",
            "1",
            "1970",
            "test1.txt"
        ]
    );
    assert_eq!(
        ls_fields(&listing, "test2.txt")[..4],
        ["-r--r--r--", "1", "0", "0"]
    );
}

/// Upstream #45: a perm whose regex matches test1.txt changed test2.txt.
#[test]
fn upstream_45_a_perm_regex_only_touches_the_files_it_matches() {
    let image = nix::build_expr(
        r#"let
             files = t.pkgs.runCommand "files" { } "mkdir -p $out/tmp && touch $out/tmp/test1.txt $out/tmp/test2.txt";
           in t.buildImage {
             name = "upstream45";
             tag = "latest";
             copyToRoot = [ files (t.pkgs.buildEnv { name = "root"; paths = [ t.pkgs.bash t.pkgs.coreutils ]; }) ];
             perms = [ { path = files; regex = "test1.txt"; mode = "0777"; } ];
             config.Cmd = [ "/bin/ls" "-ln" "/tmp" ];
           }"#,
    );
    load(&image, "upstream45:latest");
    let listing = docker_run("upstream45:latest", &[]);
    assert_eq!(
        ls_fields(&listing, "test1.txt")[..4],
        ["-rwxrwxrwx", "1", "0", "0"]
    );
    assert_eq!(
        ls_fields(&listing, "test2.txt"),
        [
            "-r--r--r--",
            "1",
            "0",
            "0",
            "0",
            "Jan",
            "1",
            "1970",
            "test2.txt"
        ]
    );
}

#[test]
fn openbar_example_makes_tmp_world_writable_and_sticky() {
    let daemon = load(&example("openbar"), "openbar:latest");
    let listing = docker_run("openbar:latest", &[]);
    assert!(listing.starts_with("drwxrwxrwt"), "{listing}");
    assert!(listing.trim_end().ends_with("/tmp"), "{listing}");
    // And anyone may write there.
    let written = daemon.run(&[
        "run",
        "--rm",
        "--user",
        "4242",
        "openbar:latest",
        "/bin/bash",
        "-c",
        "echo hi > /tmp/x && /bin/cat /tmp/x",
    ]);
    assert_eq!(written, "hi\n");
}

#[test]
fn an_invalid_perm_regex_fails_the_build_naming_it() {
    let error = assert_build_fails_with(
        r#"t.buildLayer { deps = [ t.pkgs.hello ]; perms = [ { path = t.pkgs.hello; regex = "bin/(hello"; mode = "0755"; } ]; }"#,
        &[r#"invalid regex "bin/(hello""#, "-hello-1.0"],
    );
    assert!(!error.contains("panicked"), "{error}");
}

// ------------------------------------------------------------- layering

#[test]
fn layered_example_has_exactly_max_layers_and_no_path_twice() {
    let image_path = example("layered");
    let image = read_json(&image_path);
    assert_eq!(layers(&image).len(), 3, "{image:#}");
    let all = assert_no_path_twice(&image);
    assert_eq!(all, in_store(closure(&[&entrypoint(&image)])));
    // Upstream's split: one path in each layer but the last, the most
    // referenced first (busybox: coreutils' links refer to it, and the
    // script refers to coreutils).
    assert_eq!(
        layer_paths(&layers(&image)[0]),
        [(package("busybox"), false)]
    );
    assert_eq!(layer_paths(&layers(&image)[1]).len(), 1);
    assert_eq!(layer_paths(&layers(&image)[2]).len(), all.len() - 2);

    load(&image_path, "layered:latest");
    assert_eq!(docker_run("layered:latest", &[]), GREETING);
}

/// The NAR size of each path, as Nix records it.
fn nar_sizes(paths: &BTreeSet<String>) -> BTreeMap<String, u64> {
    paths
        .iter()
        .map(|path| {
            let size = tool("nix-store", &["-q", "--size", path]);
            (path.clone(), size.trim().parse().unwrap())
        })
        .collect()
}

/// Upstream #27 asked for the largest closures to get layers first.
#[test]
fn upstream_27_size_layering_gives_the_largest_paths_their_own_layers() {
    let image_path = example("layeredBySize");
    let image = read_json(&image_path);
    let all = assert_no_path_twice(&image);
    let greet = entrypoint(&image);
    let closure = closure(&[&greet]);
    assert_eq!(all, in_store(closure.clone()));
    let count = layers(&image).len();
    assert!((2..=4).contains(&count), "{image:#}");
    let sizes = nar_sizes(&closure);
    let mut by_size: Vec<(&String, &u64)> = sizes.iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    // The largest path has a layer to itself (nothing but it uses the
    // paths it refers to, if any, which would join it).
    let largest = by_size[0].0;
    assert!(
        layers(&image)
            .iter()
            .any(|l| layer_paths(l)[0] == (largest.clone(), false)),
        "{by_size:?}\n{image:#}"
    );
    // The script, small and used by nothing, is in the last layer.
    assert!(layer_paths(layers(&image).last().unwrap()).contains(&(greet, false)));

    load(&image_path, "layered-by-size:latest");
    assert_eq!(docker_run("layered-by-size:latest", &[]), GREETING);
}

/// 130 distinct store paths without building anything: `builtins.toFile`.
const MANY_FILES: &str = r#"(n: from: map (i: builtins.toFile "f${toString i}" "file ${toString i}") (builtins.genList (i: i + from) n))"#;

#[test]
fn images_over_125_layers_fail_at_build_saying_how_to_fix_it() {
    assert_build_fails_with(
        &format!("t.buildLayer {{ deps = {MANY_FILES} 130 0; maxLayers = 0; }}"),
        &[
            "would make 130 layers, more than the 125",
            "`maxLayers` of at most 125",
        ],
    );
    assert_build_fails_with(
        &format!(
            r#"t.buildImage {{
             name = "too-many";
             isolatedDeps = [
               (t.buildLayer {{ deps = {MANY_FILES} 100 0; maxLayers = 0; }})
               (t.buildLayer {{ deps = {MANY_FILES} 30 100; maxLayers = 0; }})
             ];
           }}"#
        ),
        &[
            "the image would have 130 layers",
            "lower the `maxLayers`",
            "merge `isolatedDeps`",
        ],
    );
}

#[test]
fn ignore_leaves_a_path_out_but_keeps_its_dependencies() {
    let layer = nix::build_expr(
        r#"t.buildLayer { deps = [ t.pkgs.foobar-app ]; ignore = t.pkgs.libbar; }"#,
    );
    let document = read_json(&layer.join("layers.json"));
    let paths = layer_store_paths(&document["layers"][0]);
    assert!(!paths.contains(&package("libbar")), "{paths:?}");
    assert!(paths.contains(&package("libfoo")), "{paths:?}");
    assert!(paths.contains(&package("foobar-app")), "{paths:?}");
}

// ------------------------------------------------- metadata and created

#[test]
fn metadata_example_shows_in_docker_history_and_the_config() {
    let image = example("metadata");
    let daemon = load(&image, "metadata:latest");
    let history = daemon.run(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "metadata:latest",
    ]);
    assert!(
        history
            .lines()
            .any(|l| l == "nix2container: the hello layer|hello and nothing else"),
        "{history}"
    );
    let config = stdout_ok(nix2container().arg("inspect").arg(&image).arg("--config"));
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["history"][0]["author"],
        "Jane Doe <jane@example.com>"
    );
    assert_eq!(config["history"][0]["comment"], "hello and nothing else");
}

#[test]
fn created_example_shows_in_docker_inspect() {
    let daemon = load(&example("created"), "created:latest");
    let created = daemon.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Created}}",
        "created:latest",
    ]);
    assert_eq!(created.trim(), "2024-05-13T09:31:10Z");
}

fn epoch_seconds(rfc3339: &str) -> u64 {
    tool("date", &["-u", "-d", rfc3339, "+%s"])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn created_now_is_the_build_time_and_changes_no_layer() {
    let nonce = since_epoch().as_nanos();
    let expr = |created: &str| {
        format!(
            r#"t.buildImage {{
                 name = "now";
                 tag = "{nonce}";
                 {created}
                 config = {{ entrypoint = [ "${{t.pkgs.hello}}/bin/hello" ]; Labels.nonce = "{nonce}"; }};
               }}"#
        )
    };
    let before = since_epoch().as_secs();
    let now = nix::build_expr(&expr(r#"created = "now";"#));
    let after = since_epoch().as_secs();
    let fixed = nix::build_expr(&expr(""));
    let (now_json, fixed_json) = (read_json(&now), read_json(&fixed));
    let created = now_json["created"].as_str().unwrap();
    let seconds = epoch_seconds(created);
    assert!(
        before <= seconds && seconds <= after,
        "{created} not in [{before}, {after}]"
    );
    assert_eq!(fixed_json["created"], "0001-01-01T00:00:00Z");
    assert_eq!(now_json["layers"], fixed_json["layers"]);

    let reference = format!("now:{nonce}");
    let daemon = load(&now, &reference);
    let inspected = daemon.run(&["image", "inspect", "--format", "{{.Created}}", &reference]);
    assert_eq!(inspected.trim(), created);
}

// ------------------------------------------------------- reproducible

/// The names under /nix/store/ of a tar's entries (first level only).
fn store_entries(tar: &Path) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).unwrap());
    archive
        .entries()
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let rest = name.strip_prefix("/nix/store/")?;
            Some(format!("/nix/store/{}", rest.split('/').next().unwrap()))
        })
        .collect()
}

/// Upstream #219: with reproducible = false and maxLayers > 1, every
/// stored tar held every path, so all layers had one digest.
#[test]
fn upstream_219_non_reproducible_layers_hold_only_their_own_paths() {
    let expr = |reproducible: bool| {
        format!(
            "t.buildLayer {{ deps = [ t.pkgs.foobar-app ]; maxLayers = 2; reproducible = {reproducible}; }}"
        )
    };
    let stored = nix::build_expr(&expr(false));
    let regenerated = nix::build_expr(&expr(true));
    let stored_document = read_json(&stored.join("layers.json"));
    let regenerated_document = read_json(&regenerated.join("layers.json"));
    let stored_layers = stored_document["layers"].as_array().unwrap();
    assert_eq!(stored_layers.len(), 2);
    assert_ne!(stored_layers[0]["diff_id"], stored_layers[1]["diff_id"]);
    for (layer, same) in stored_layers
        .iter()
        .zip(regenerated_document["layers"].as_array().unwrap())
    {
        // The same bytes as the tar regenerated from the store.
        assert_eq!(layer["diff_id"], same["diff_id"]);
        assert_eq!(layer["digest"], same["digest"]);
        assert!(same.get("tar_path").is_none());
        let tar = PathBuf::from(layer["tar_path"].as_str().unwrap());
        assert_eq!(tar.parent().unwrap(), stored);
        assert_eq!(store_entries(&tar), layer_store_paths(layer));
    }
}

#[test]
fn non_reproducible_example_runs_from_its_stored_tars() {
    let image_path = example("nonReproducible");
    let image = read_json(&image_path);
    assert_eq!(layers(&image).len(), 3, "{image:#}");
    for layer in &layers(&image)[..2] {
        let tar = layer["tar_path"].as_str().unwrap();
        assert!(Path::new(tar).is_file(), "{tar}");
    }
    let stamp = layers(&image)[..2]
        .iter()
        .flat_map(layer_paths)
        .find(|(p, _)| p.ends_with("-build-date"))
        .unwrap()
        .0;
    let date = std::fs::read_to_string(Path::new(&stamp).join("date")).unwrap();
    load(&image_path, "non-reproducible:latest");
    let output = docker_run("non-reproducible:latest", &[]);
    assert_eq!(output, format!("built on {date}"));
}

// ------------------------------------------------------ nested layers

/// Upstream #186: a layer over two identical parents put the parent twice
/// in the image.
#[test]
fn upstream_186_duplicated_example_has_exactly_two_layers() {
    let image_path = example("duplicated");
    let image = read_json(&image_path);
    assert_eq!(layers(&image).len(), 2, "{image:#}");
    assert_no_path_twice(&image);
    let daemon = load(&image_path, "duplicated:latest");
    let rootfs = daemon.run(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "duplicated:latest",
    ]);
    assert_eq!(rootfs.trim(), "2");
    assert_eq!(docker_run("duplicated:latest", &[]), "Hello, world!\n");
}

#[test]
fn nested_example_runs_with_each_path_once() {
    let image_path = example("nested");
    let image = read_json(&image_path);
    let all = assert_no_path_twice(&image);
    assert_eq!(all, in_store(closure(&[&entrypoint(&image)])));
    let set = |layer: &Value| layer_paths(layer).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        set(&layers(&image)[0]),
        in_store(closure(&[&package("coreutils")]))
    );
    assert_eq!(layer_paths(&layers(&image)[1]), [(package("bash"), false)]);
    load(&image_path, "nested:latest");
    assert_eq!(docker_run("nested:latest", &[]), GREETING);
}

// --------------------------------------------------------- copyToRoot

#[test]
fn copy_to_root_example_merges_roots_and_puts_a_file_at_its_name() {
    let image_path = example("copyToRoot");
    load(&image_path, "copy-to-root:latest");
    assert_eq!(
        docker_run("copy-to-root:latest", &[]),
        "Hello, world!\nWelcome aboard\n"
    );
    let (_dir, rootfs) = unpack(&image_path);
    for name in ["bin/hello", "bin/bash", "bin/sh", "motd"] {
        assert!(rootfs.join(name).symlink_metadata().is_ok(), "no /{name}");
    }
    // Relocated, not copied: nothing in the config refers to them.
    assert!(
        !rootfs
            .join(package("hello").trim_start_matches('/'))
            .exists()
    );
}

/// Upstream #157: a copyToRoot path was only relocated, even when
/// something (here the entrypoint) refers to it by its store path.
#[test]
fn upstream_157_a_copy_to_root_path_the_config_refers_to_stays_in_the_store() {
    let image = nix::build_expr(
        r#"let root = t.pkgs.buildEnv { name = "root"; paths = [ t.pkgs.hello ]; };
           in t.buildImage {
             name = "upstream157";
             tag = "latest";
             copyToRoot = root;
             config.entrypoint = [ "${root}/bin/hello" ];
           }"#,
    );
    let document = read_json(&image);
    let paths = assert_no_path_twice(&document);
    let root = paths
        .iter()
        .find(|(p, _)| p.ends_with("-root"))
        .unwrap()
        .0
        .clone();
    assert!(paths.contains(&(root.clone(), false)) && paths.contains(&(root, true)));
    let daemon = load(&image, "upstream157:latest");
    assert_eq!(docker_run("upstream157:latest", &[]), "Hello, world!\n");
    assert_eq!(
        daemon.run(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/hello",
            "upstream157:latest"
        ]),
        "Hello, world!\n"
    );
}

/// Upstream #144: perms on one copyToRoot root made the build fail on every
/// directory it shares with another root (/bin here).
#[test]
fn upstream_144_perms_on_one_root_merge_with_identical_directories() {
    let image = nix::build_expr(
        r#"let
             extra = t.pkgs.runCommand "extra" { } ''
               mkdir -p $out/bin $out/tmp
               echo 'echo extra tool' > $out/bin/extra
             '';
           in t.buildImage {
             name = "upstream144";
             tag = "latest";
             copyToRoot = [ (t.pkgs.buildEnv { name = "root"; paths = [ t.pkgs.bash t.pkgs.coreutils ]; }) extra ];
             perms = [ { path = extra; regex = "/tmp$"; mode = "1777"; } ];
             config.Cmd = [ "/bin/bash" "-c" "/bin/bash /bin/extra && /bin/ls -ld /tmp" ];
           }"#,
    );
    load(&image, "upstream144:latest");
    let output = docker_run("upstream144:latest", &[]);
    assert!(output.starts_with("extra tool\ndrwxrwxrwt"), "{output}");
}

/// Upstream #162 (a directory and a symlink at one place) and files of equal
/// size but different contents (upstream kept the last silently): the build
/// fails naming both sources.
#[test]
fn upstream_162_conflicts_fail_the_build_naming_both_sources() {
    assert_build_fails_with(
        r#"let
             dir = t.pkgs.runCommand "with-dir" { } "mkdir -p $out/share/doc && echo a > $out/share/doc/a";
             link = t.pkgs.runCommand "with-link" { } "mkdir -p $out && ln -s ${t.pkgs.libfoo}/share $out/share";
           in t.buildLayer { copyToRoot = [ dir link ]; }"#,
        &[
            "conflicting files at /share",
            "-with-dir/share (directory",
            "-with-link/share (symlink to /nix/store/",
            "put both packages in one buildEnv",
        ],
    );
    assert_build_fails_with(
        r#"let
             one = t.pkgs.runCommand "one" { } "mkdir -p $out/etc && echo one > $out/etc/motd";
             two = t.pkgs.runCommand "two" { } "mkdir -p $out/etc && echo two > $out/etc/motd";
           in t.buildLayer { copyToRoot = [ one two ]; }"#,
        &[
            "conflicting files at /etc/motd",
            "-one/etc/motd",
            "-two/etc/motd",
            "different contents",
        ],
    );
}

// -------------------------------------------------------- Nix database

/// The store paths the database of an unpacked image registers.
fn registered(rootfs: &Path) -> BTreeSet<String> {
    let db = rusqlite::Connection::open_with_flags(
        rootfs.join("nix/var/nix/db/db.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = db.prepare("select path from ValidPaths").unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The machine's Nix on the unpacked image's store, which must succeed.
fn nix_store_in(rootfs: &Path, args: &[&str]) -> Output {
    run_ok(
        Command::new("nix-store")
            .env("NIX_CONFIG", "build-users-group =\nsubstituters =")
            .arg("--store")
            .arg(format!("local?root={}", rootfs.display()))
            .args(args),
    )
}

/// Upstream #165: the database registered copyToRoot paths, which are not
/// in the image's /nix/store, so Nix in the container failed.
#[test]
fn upstream_165_nix_database_registers_exactly_the_store_paths_of_the_image() {
    let image_path = example("nix");
    let image = read_json(&image_path);
    let (_dir, rootfs) = unpack(&image_path);
    let in_store: BTreeSet<String> = std::fs::read_dir(rootfs.join("nix/store"))
        .unwrap()
        .map(|e| format!("/nix/store/{}", e.unwrap().file_name().to_str().unwrap()))
        .filter(|p| p != "/nix/store/.links")
        .collect();
    let registered = registered(&rootfs);
    assert_eq!(registered, in_store);
    // Everything the layers put in the store: hello's own layer too.
    let plain: BTreeSet<String> = assert_no_path_twice(&image)
        .into_iter()
        .filter(|(_, relocated)| !relocated)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(registered, plain);
    assert!(registered.contains(&package("hello")));
    assert!(
        !registered
            .iter()
            .any(|p| p.ends_with("-root") || p.ends_with("-nix-database"))
    );
    assert!(rootfs.join("nix/store/.links").is_dir());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("nix/var/nix/db/schema")).unwrap(),
        "10"
    );
    for path in &registered {
        let root = rootfs
            .join("nix/var/nix/gcroots/docker")
            .join(&path["/nix/store/".len()..]);
        assert_eq!(std::fs::read_link(&root).unwrap(), Path::new(path));
    }

    // The machine's Nix reads the database and checks every path's hash.
    let verify = nix_store_in(&rootfs, &["--verify", "--check-contents"]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !stderr.contains("error") && !stderr.contains("disappeared"),
        "{stderr}"
    );
    let coreutils = package("coreutils");
    let closure_in_image = stdout_of(&nix_store_in(&rootfs, &["-qR", &coreutils]));
    assert_eq!(
        closure_in_image
            .lines()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        closure(&[&coreutils])
    );
    let hello = package("hello");
    let hash = stdout_of(&nix_store_in(&rootfs, &["-q", "--hash", &hello]));
    assert_eq!(hash, tool("nix-store", &["-q", "--hash", &hello]));
}

/// Nix inside the container reads the image's database. The offline
/// package set has no Nix, so the machine's (a dynamically linked build) is
/// lent to the container with the libraries it needs, read-only.
#[test]
fn nix_store_queries_the_database_inside_the_container() {
    load(&example("nix"), "nix-db:latest");
    let hello = package("hello");
    let query = |args: &str| {
        dockerd().run(&[
            "run",
            "--rm",
            "--volume=/usr:/usr:ro",
            "--volume=/usr/lib:/lib:ro",
            "--volume=/usr/lib64:/lib64:ro",
            "--env=NIX_CONFIG=build-users-group =",
            // The image has no /etc/passwd to name uid 0.
            "--env=USER=root",
            "nix-db:latest",
            "/bin/bash",
            "-c",
            &format!("/usr/bin/nix-store {args}"),
        ])
    };
    let references: BTreeSet<String> = query(&format!("-qR {hello}"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(references, closure(&[&hello]));
    assert_eq!(
        query(&format!("-q --hash {hello}")),
        tool("nix-store", &["-q", "--hash", &hello])
    );
    let verify = query("--verify --check-contents 2>&1");
    assert!(!verify.contains("error"), "{verify}");
}

#[test]
fn nix_user_example_owns_nix_and_runs_as_that_user() {
    let image_path = example("nix-user");
    load(&image_path, "nix-user:latest");
    let run = |script: &str| docker_run("nix-user:latest", &["/bin/bash", "-c", script]);
    assert_eq!(run("/bin/id -u; /bin/id -g"), "1000\n1000\n");
    let listing = run("/bin/ls -ln /nix /nix/var/nix; /bin/ls -lnd /home/user");
    let owner = |name: &str| {
        let fields = ls_fields(&listing, name);
        (fields[0], fields[2], fields[3])
    };
    for name in ["store", "var", "db", "gcroots"] {
        assert_eq!(
            owner(name),
            ("drwxr-xr-x", "1000", "1000"),
            "{name}:\n{listing}"
        );
    }
    assert_eq!(
        owner("/home/user"),
        ("drwxr--r--", "1000", "1000"),
        "{listing}"
    );
    // The user can write where Nix writes.
    assert_eq!(
        run("/bin/touch /nix/store/probe /nix/var/nix/db/probe && echo writable"),
        "writable\n"
    );
    let (_dir, rootfs) = unpack(&image_path);
    let db = std::fs::metadata(rootfs.join("nix/var/nix/db/db.sqlite")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (db.uid(), db.gid(), db.mode() & 0o7777),
        (1000, 1000, 0o644)
    );
}

// ----------------------------------------------------- reproducibility

/// The derivations of nix2container that `image` was built from.
fn our_derivations(image: &Path) -> Vec<String> {
    tool("nix-store", &["-qR", &nix::deriver(image)])
        .lines()
        .filter(|drv| {
            let name = drv.split_once('-').map_or("", |(_, name)| name);
            [
                "nix2container-layer.drv",
                "nix-database.drv",
                "config.json.drv",
            ]
            .contains(&name)
                || (name.starts_with("image-") && name.ends_with(".json.drv"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn new_derivations_rebuild_byte_for_byte() {
    for name in ["nix", "nonReproducible", "layeredBySize", "copyToRoot"] {
        let image = example(name);
        let derivations = our_derivations(&image);
        assert!(derivations.len() >= 3, "{name}: {derivations:?}");
        if name == "nix" {
            assert!(derivations.iter().any(|d| d.ends_with("-nix-database.drv")));
        }
        for drv in derivations {
            let output = tool("nix-store", &["-q", "--outputs", &drv]);
            nix::assert_reproducible(Path::new(output.trim()), 0o077, &format!("{name}: {drv}"));
        }
    }
}

// ---------------------------------------------------------- evaluation

#[test]
fn new_arguments_are_checked_at_evaluation() {
    let hello = r#"config.entrypoint = [ "${t.pkgs.hello}/bin/hello" ];"#;
    let mistakes: &[(String, &str)] = &[
        (
            format!(r#"t.buildImage {{ name = "x"; {hello} layering = "big"; }}"#),
            "`layering` must be \"popularity\"",
        ),
        (
            format!(r#"t.buildImage {{ name = "x"; {hello} created = "yesterday"; }}"#),
            "`created` must be an RFC 3339 date-time such as \"2024-05-13T09:31:10Z\", or \"now\"",
        ),
        (
            format!(r#"t.buildImage {{ name = "x"; {hello} nixUid = 1000; }}"#),
            "they need `initializeNixDatabase = true`",
        ),
        (
            format!(r#"t.buildImage {{ name = "x"; {hello} initializeNixDatabase = true; nixGid = -1; }}"#),
            "`nixUid` and `nixGid` must be non-negative integers",
        ),
        (
            format!(r#"t.buildImage {{ name = "x"; {hello} maxLayers = 200; }}"#),
            "`maxLayers` must be a non-negative integer, at most 125",
        ),
        (
            r#"t.buildLayer { copyToRoot = "${t.pkgs.hello}/bin"; }"#.to_owned(),
            "every element of `copyToRoot` must be a store path (a derivation), not a path inside one; got \"/nix/store/",
        ),
        (
            r#"t.buildLayer { deps = [ t.pkgs.hello ]; reproducible = "no"; }"#.to_owned(),
            "`reproducible` must be a boolean",
        ),
        (
            r#"t.buildLayer { deps = [ t.pkgs.hello ]; perms = [ { path = t.pkgs.hello; regex = ".*"; uid = "1000"; } ]; }"#.to_owned(),
            "`uid` and `gid` must be non-negative integers",
        ),
        (
            r#"t.buildLayer { deps = [ t.pkgs.hello ]; metadata.createdBy = "me"; }"#.to_owned(),
            "`metadata` must be an attribute set with keys among created_by",
        ),
    ];
    for (expr, message) in mistakes {
        nix::assert_eval_fails_with(expr, message);
    }
}

// ------------------------------------------------------- copy scripts

#[test]
fn copy_scripts_name_their_destination() {
    for (attribute, script, destination) in [
        (
            "copyToDockerDaemon",
            "copy-to-docker-daemon",
            "docker-daemon:scripts:latest",
        ),
        (
            "copyToRegistry",
            "copy-to-registry",
            "docker://scripts:latest",
        ),
        (
            "copyToPodman",
            "copy-to-podman",
            "containers-storage:scripts:latest",
        ),
    ] {
        let package = nix::build_expr(&format!(
            r#"(t.buildImage {{ name = "Scripts"; tag = "latest"; config.Cmd = [ "${{t.pkgs.hello}}/bin/hello" ]; }}).{attribute}"#
        ));
        let text = std::fs::read_to_string(package.join("bin").join(script)).unwrap();
        let command = text.lines().find(|l| l.starts_with("exec ")).unwrap();
        assert!(command.contains(" copy /nix/store/"), "{text}");
        assert!(
            command.contains(&format!("-image-Scripts.json {destination} \"$@\"")),
            "{text}"
        );
    }
}
