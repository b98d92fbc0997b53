//! `nix2container copy` against the real tools that read its output: umoci,
//! oci-image-tool and skopeo for OCI layouts and archives, and a private
//! dockerd (started by the tests, see `tests/support/dockerd.rs`) for docker
//! archives and the Docker Engine API. Images are built without Nix from a
//! static `hello` binary (`tests/support/images.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix2container::compression::Compression;

use crate::dockerd::dockerd;
use crate::images::{
    self, CREATED, HELLO_OUTPUT, ImageSpec, Node, TestImage, build_image, hello_image,
    validate_layout,
};
use crate::util::{nix2container, path_str, read_json, stderr_of, tool};

/// `nix2container copy IMAGE DESTINATION`, run in the image's directory.
fn copy(image: &TestImage, destination: &str) -> Output {
    copy_command(image, destination)
        .output()
        .expect("nix2container runs")
}

fn copy_command(image: &TestImage, destination: &str) -> Command {
    let mut command = nix2container();
    command
        .current_dir(image.dir())
        .arg("copy")
        .arg(&image.json)
        .arg(destination);
    command
}

/// `copy` with the tests' dockerd as `DOCKER_HOST`.
fn copy_with_dockerd(image: &TestImage, destination: &str) -> Output {
    copy_command(image, destination)
        .env("DOCKER_HOST", dockerd().host())
        .output()
        .expect("nix2container runs")
}

/// The `Digest` skopeo reports for an image.
fn skopeo_digest(reference: &str) -> String {
    let inspect: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", reference])).unwrap();
    inspect["Digest"].as_str().unwrap().to_owned()
}

/// Unpacks `layout:tag` with umoci and compares the files with the image's
/// source, and the runtime config with its entrypoint.
fn assert_unpacks_to_source(image: &TestImage, layout: &Path, tag: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let bundle = scratch.path().join("bundle");
    let what = format!("{}:{tag}", layout.display());
    images::assert_unpacks_to(&image.rootfs(), layout, tag, &bundle, &what);
    let config = read_json(&bundle.join("config.json"));
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/hello"]));
}

/// Lines of a copy's standard error that start with `prefix`.
fn lines_starting<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn oci_layout_unpacks_validates_and_keeps_every_tag() {
    let first = hello_image(CREATED);
    let layout = first.dir().join("layout");
    let destination = format!("oci:{}:v1", layout.display());
    let stderr = stderr_of(&copy(&first, &destination));
    for (prefix, count) in [
        ("copying layer sha256:", 2),
        ("copying config sha256:", 1),
        ("copying manifest sha256:", 1),
    ] {
        assert_eq!(lines_starting(&stderr, prefix).len(), count, "{stderr}");
    }
    assert!(
        stderr.ends_with(&format!("copied image {} to {destination}\n", first.id())),
        "{stderr}"
    );
    assert_unpacks_to_source(&first, &layout, "v1");
    validate_layout(&layout);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v1", layout.display())),
        first.image().manifest_digest().to_string()
    );

    // Another image with the same layers: only its config and manifest are
    // new, and both tags stay.
    let second = hello_image("1970-01-01T00:00:02Z");
    let stderr = stderr_of(&copy(&second, &format!("oci:{}:v2", layout.display())));
    assert_eq!(
        lines_starting(&stderr, "skipping layer").len(),
        2,
        "{stderr}"
    );
    assert_eq!(lines_starting(&stderr, "copying ").len(), 2, "{stderr}");
    assert_eq!(
        tool("umoci", &["ls", "--layout", path_str(&layout)]),
        "v1\nv2\n"
    );
    assert_unpacks_to_source(&first, &layout, "v1");
    assert_unpacks_to_source(&second, &layout, "v2");
    validate_layout(&layout);

    // Copying a tag again replaces it (and moves it to the end).
    stderr_of(&copy(&second, &format!("oci:{}:v1", layout.display())));
    assert_eq!(
        tool("umoci", &["ls", "--layout", path_str(&layout)]),
        "v2\nv1\n"
    );
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v1", layout.display())),
        second.image().manifest_digest().to_string()
    );
}

#[test]
fn oci_archive_reads_back_with_skopeo() {
    let image = hello_image(CREATED);
    let archive = image.dir().join("image.oci.tar");
    stderr_of(&copy(
        &image,
        &format!("oci-archive:{}:v1", archive.display()),
    ));
    let source = format!("oci-archive:{}:v1", archive.display());
    assert_eq!(
        skopeo_digest(&source),
        image.image().manifest_digest().to_string()
    );
    let layout = image.dir().join("from-archive");
    tool(
        "skopeo",
        &["copy", &source, &format!("oci:{}:v1", layout.display())],
    );
    assert_unpacks_to_source(&image, &layout, "v1");
}

#[test]
fn docker_archive_loads_from_a_file_and_from_stdout() {
    let daemon = dockerd();
    let image = hello_image(CREATED);
    let archive = image.dir().join("image.docker.tar");
    stderr_of(&copy(
        &image,
        &format!("docker-archive:{}:hello-archive:v1", archive.display()),
    ));
    let loaded = daemon.run(&["load", "--input", path_str(&archive)]);
    assert!(
        loaded.contains("Loaded image: hello-archive:v1"),
        "{loaded}"
    );
    assert_runs_hello(&image, "hello-archive:v1");

    // Streamed into `docker load`, progress on stderr only.
    let mut producer = copy_command(&image, "docker-archive:-:hello-stdin:v1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let loaded = daemon
        .docker()
        .arg("load")
        .stdin(producer.stdout.take().unwrap())
        .output()
        .unwrap();
    let produced = producer.wait_with_output().unwrap();
    let stderr = stderr_of(&produced);
    assert!(stderr.contains("copying layer sha256:"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("Loaded image: hello-stdin:v1"),
        "docker load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_runs_hello(&image, "hello-stdin:v1");
}

#[test]
fn docker_daemon_loads_through_the_api() {
    let image = hello_image(CREATED);
    let stderr = stderr_of(&copy_with_dockerd(&image, "docker-daemon:hello-daemon:v1"));
    assert!(
        stderr.ends_with(&format!(
            "copied image {} to docker-daemon:hello-daemon:v1\n",
            image.id()
        )),
        "{stderr}"
    );
    assert_runs_hello(&image, "hello-daemon:v1");
}

#[test]
fn compressed_layers_copy_to_layouts_and_load_uncompressed() {
    let cases = [
        ("gzip", Compression::Gzip { level: 6 }),
        ("zstd", Compression::Zstd { level: 3 }),
    ];
    for (name, compression) in cases {
        let image = build_image(&ImageSpec {
            compression,
            ..ImageSpec::default()
        });
        let layout = image.dir().join("layout");
        stderr_of(&copy(&image, &format!("oci:{}:v1", layout.display())));
        let readable = match compression {
            // umoci 0.4.7 and oci-image-tool rc1 predate zstd: skopeo checks
            // the blobs and recompresses them, umoci checks the diff_ids.
            Compression::Zstd { .. } => {
                let gzip = image.dir().join("gzip");
                tool(
                    "skopeo",
                    &[
                        "copy",
                        "--dest-compress-format",
                        "gzip",
                        &format!("oci:{}:v1", layout.display()),
                        &format!("oci:{}:v1", gzip.display()),
                    ],
                );
                gzip
            }
            _ => layout,
        };
        validate_layout(&readable);
        assert_unpacks_to_source(&image, &readable, "v1");

        // Docker archives hold the uncompressed tars, whatever the blobs.
        let reference = format!("hello-{name}:v1");
        stderr_of(&copy_with_dockerd(
            &image,
            &format!("docker-daemon:{reference}"),
        ));
        assert_runs_hello(&image, &reference);
    }
}

/// The daemon has `name` with the config digest as ID, and it runs.
fn assert_runs_hello(image: &TestImage, name: &str) {
    let daemon = dockerd();
    assert_eq!(
        daemon.image_id(name),
        Some(image.id()),
        "image ID of {name}"
    );
    let output = daemon.run(&["run", "--rm", "--network", "none", name]);
    assert_eq!(output, HELLO_OUTPUT);
}

/// How a test breaks a layer after its image JSON was written.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    /// Same size, other bytes: only the digest check can notice.
    SameSize,
    /// A longer file: the tar outgrows its recorded size.
    Grown,
}

/// Where a broken image is copied to; the setup runs before the copy.
struct BrokenCase {
    name: &'static str,
    destination: fn(&Path) -> String,
    /// Prepares the directory (e.g. a layout that must survive).
    setup: fn(&Path),
}

const BROKEN_CASES: &[BrokenCase] = &[
    BrokenCase {
        name: "new oci layout",
        destination: |dir| format!("oci:{}/layout:v1", dir.display()),
        setup: |_| {},
    },
    BrokenCase {
        name: "existing oci layout",
        destination: |dir| format!("oci:{}/layout:v2", dir.display()),
        setup: |dir| {
            let good = hello_image(CREATED);
            stderr_of(&copy(&good, &format!("oci:{}/layout:v1", dir.display())));
        },
    },
    BrokenCase {
        name: "oci archive",
        destination: |dir| format!("oci-archive:{}/image.tar:v1", dir.display()),
        setup: |_| {},
    },
    BrokenCase {
        name: "docker archive",
        destination: |dir| format!("docker-archive:{}/image.tar:x:v1", dir.display()),
        setup: |_| {},
    },
    BrokenCase {
        name: "docker daemon",
        destination: |_| "docker-daemon:hello-broken:v1".to_owned(),
        setup: |_| {},
    },
];

#[test]
fn a_changed_store_path_fails_the_copy_and_leaves_nothing() {
    let daemon = dockerd();
    for case in BROKEN_CASES {
        for breakage in [Breakage::SameSize, Breakage::Grown] {
            let label = format!("{} ({breakage:?})", case.name);
            // Another greeting than the good image in `setup`, so that no
            // blob of the broken layer is present already.
            let image = build_image(&ImageSpec {
                greeting: "Hello from a broken layer\n",
                ..ImageSpec::default()
            });
            let greeting = image.layer_roots[1].join("etc/greeting");
            std::fs::write(
                &greeting,
                match breakage {
                    Breakage::SameSize => "HELLO FROM A BROKEN LAYER\n",
                    Breakage::Grown => "Hello from a broken, grown layer\n",
                },
            )
            .unwrap();
            let work = image.dir().join("work");
            std::fs::create_dir(&work).unwrap();
            (case.setup)(&work);
            let before = images::snapshot(image.dir());

            let output = copy_with_dockerd(&image, &(case.destination)(&work));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{label}: {stderr}");
            let store_path = image.layer_roots[1].display().to_string();
            assert!(
                stderr.contains("digest mismatch") && stderr.contains(&store_path),
                "{label}: expected a digest mismatch naming {store_path} in:\n{stderr}"
            );
            assert!(output.stdout.is_empty(), "{label}: wrote to stdout");
            assert_same_tree(&before, &images::snapshot(image.dir()), &label);
            assert_eq!(daemon.image_id("hello-broken:v1"), None, "{label}");
            assert_eq!(daemon.image_id(&image.id()), None, "{label}");
        }
    }
}

fn assert_same_tree(
    before: &BTreeMap<PathBuf, Node>,
    after: &BTreeMap<PathBuf, Node>,
    label: &str,
) {
    let changed = images::differences(before, after);
    assert!(changed.is_empty(), "{label}: the copy changed {changed:?}");
}

#[test]
fn an_error_in_a_200_answer_fails_the_copy() {
    // dockerd reads the whole archive, then refuses it in the JSON body of
    // a `200 OK`.
    let daemon = dockerd();
    let mut image = hello_image(CREATED);
    image.document.os = "windows".into();
    std::fs::write(&image.json, serde_json::to_vec(&image.document).unwrap()).unwrap();
    let output = copy_with_dockerd(&image, "docker-daemon:hello-windows:v1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "the Docker daemon at {}: loading the image failed: ",
        daemon.host()
    );
    assert!(
        stderr.contains(&expected) && stderr.contains("windows"),
        "expected {expected:?} and the daemon's reason in:\n{stderr}"
    );
    assert_eq!(daemon.image_id("hello-windows:v1"), None);
}

struct BadDestination {
    name: &'static str,
    /// The destination, given the scratch directory.
    destination: fn(&Path) -> String,
    /// Extra environment.
    docker_host: Option<fn(&Path) -> String>,
    /// Every fragment must appear in the message.
    message: fn(&Path) -> Vec<String>,
}

const BAD_DESTINATIONS: &[BadDestination] = &[
    BadDestination {
        name: "daemon socket missing",
        destination: |_| "docker-daemon:hello:v1".into(),
        docker_host: Some(|dir| format!("unix://{}/missing/docker.sock", dir.display())),
        message: |dir| {
            vec![
                format!(
                    "the Docker daemon at unix://{}/missing/docker.sock",
                    dir.display()
                ),
                "cannot connect".into(),
                "is dockerd running? set DOCKER_HOST".into(),
            ]
        },
    },
    BadDestination {
        name: "unsupported engine address",
        destination: |_| "docker-daemon:hello:v1".into(),
        docker_host: Some(|_| "ssh://me@host".into()),
        message: |_| vec!["unsupported engine address \"ssh://me@host\"".into()],
    },
    BadDestination {
        name: "layout below a regular file",
        destination: |dir| format!("oci:{}/file/layout", dir.display()),
        docker_host: None,
        message: |dir| vec![format!("creating {}/file/layout", dir.display())],
    },
    BadDestination {
        name: "layout in /proc",
        destination: |_| "oci:/proc/nix2container-test".into(),
        docker_host: None,
        message: |_| vec!["creating /proc/nix2container-test".into()],
    },
    BadDestination {
        name: "directory that is not a layout",
        destination: |dir| format!("oci:{}", dir.display()),
        docker_host: None,
        message: |dir| vec![format!("{} is not an OCI image layout", dir.display())],
    },
    BadDestination {
        name: "oci archive in a missing directory",
        destination: |dir| format!("oci-archive:{}/missing/image.tar", dir.display()),
        docker_host: None,
        message: |dir| {
            vec![format!(
                "creating a temporary file in {}/missing",
                dir.display()
            )]
        },
    },
    BadDestination {
        name: "docker archive below a regular file",
        destination: |dir| format!("docker-archive:{}/file/image.tar:x:v1", dir.display()),
        docker_host: None,
        message: |dir| {
            vec![format!(
                "creating a temporary file in {}/file",
                dir.display()
            )]
        },
    },
];

#[test]
fn bad_destinations_give_a_clear_error_and_no_output() {
    let image = hello_image(CREATED);
    for case in BAD_DESTINATIONS {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("file"), "not a directory").unwrap();
        let before = images::snapshot(work.path());
        let mut command = copy_command(&image, &(case.destination)(work.path()));
        if let Some(host) = case.docker_host {
            command.env("DOCKER_HOST", host(work.path()));
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{}: {stderr}", case.name);
        for fragment in (case.message)(work.path()) {
            assert!(
                stderr.contains(&fragment),
                "{}: expected {fragment:?} in:\n{stderr}",
                case.name
            );
        }
        assert!(output.stdout.is_empty(), "{}: wrote to stdout", case.name);
        assert_same_tree(&before, &images::snapshot(work.path()), case.name);
    }
    assert!(!Path::new("/proc/nix2container-test").exists());
}

#[test]
fn archives_are_byte_identical_across_copies() {
    // Two images made from different directories, with the same contents.
    let (first, second) = (hello_image(CREATED), hello_image(CREATED));
    for (kind, name) in [("docker-archive", ":hello:v1"), ("oci-archive", ":v1")] {
        let archives: Vec<Vec<u8>> = [&first, &second]
            .iter()
            .map(|image| {
                let path = image.dir().join("archive.tar");
                let output = copy_command(image, &format!("{kind}:{}{name}", path.display()))
                    .arg("--quiet")
                    .output()
                    .unwrap();
                assert_eq!(stderr_of(&output), "", "{kind}: --quiet printed something");
                std::fs::read(path).unwrap()
            })
            .collect();
        assert!(archives[0] == archives[1], "{kind}: two copies differ");
        std::fs::remove_file(first.dir().join("archive.tar")).unwrap();
        std::fs::remove_file(second.dir().join("archive.tar")).unwrap();
    }

    let to_file = first.dir().join("docker.tar");
    stderr_of(&copy(
        &first,
        &format!("docker-archive:{}:hello:v1", to_file.display()),
    ));
    let to_stdout = copy(&first, "docker-archive:-:hello:v1");
    stderr_of(&to_stdout);
    assert!(
        to_stdout.stdout == std::fs::read(to_file).unwrap(),
        "docker-archive:- differs from docker-archive:FILE"
    );
}
