//! Base images, for real: an OCI layout made by hand with umoci (no Nix),
//! pushed by skopeo to a registry the test starts (plain HTTP on
//! 127.0.0.1); `pullImage` and `pullImageFromManifest` fetch it in Nix's
//! sandbox (fixed-output derivations have the network); `buildImage {
//! fromImage }` builds on it; the result runs in the tests' dockerd and is
//! pushed back. Tests named `upstream_<n>_…` pin the fix of upstream
//! nix2container's issue or pull request n.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::dockerd::dockerd;
use crate::nix;
use crate::registry_server::{Options, PASSWORD, Registry, USER};
use crate::token::TokenIssuer;
use crate::util::{self, path_str, read_json, stdout_ok, tool};

/// What the base image's files and config hold.
const BASE_RELEASE: &str = "base release 1\n";
const BASE_CMD_OUTPUT: &str = "from base\n";

/// The `created_by` of the base's history entries, oldest first; the last
/// is an `empty_layer` one (umoci config).
const BASE_HISTORY: [&str; 3] = ["base: busybox", "base: release file", "base: config"];

/// A hand-made OCI layout: tag `amd64` (two gzip layers: busybox with
/// `env`, `sh`, `cat` links in /bin, and /etc/base-release; config with
/// `Env = PATH=/bin BASE=1`, `WorkingDir`, a label and a `Cmd`), tag
/// `arm64` (the same, marked arm64) and tag `multi`, an image index of
/// both.
fn base_layout(scratch: &Path) -> PathBuf {
    let busybox = scratch.join("busybox-root");
    std::fs::create_dir_all(busybox.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", busybox.join("bin/busybox"))
        .expect("/bin/busybox (Debian busybox-static)");
    for applet in ["env", "sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", busybox.join("bin").join(applet)).unwrap();
    }
    let release = scratch.join("release-root");
    std::fs::create_dir_all(release.join("etc")).unwrap();
    std::fs::write(release.join("etc/base-release"), BASE_RELEASE).unwrap();

    let layout = scratch.join("layout");
    let image = format!("{}:amd64", path_str(&layout));
    tool("umoci", &["init", "--layout", path_str(&layout)]);
    tool("umoci", &["new", "--image", &image]);
    for (root, created_by) in [(&busybox, BASE_HISTORY[0]), (&release, BASE_HISTORY[1])] {
        tool(
            "umoci",
            &[
                "insert",
                "--image",
                &image,
                "--history.created_by",
                created_by,
                path_str(root),
                "/",
            ],
        );
    }
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--history.created_by",
            BASE_HISTORY[2],
            "--config.env",
            "PATH=/bin",
            "--config.env",
            "BASE=1",
            "--config.workingdir",
            "/work",
            "--config.label",
            "org.example.base=yes",
            "--config.cmd",
            "/bin/sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo from base",
        ],
    );
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--tag",
            "arm64",
            "--architecture",
            "arm64",
            "--no-history",
        ],
    );
    add_index(&layout, "multi", &[("amd64", "amd64"), ("arm64", "arm64")]);
    layout
}

/// Adds to `layout` an image index tagged `tag` listing the manifests
/// tagged as given, each for linux and the given architecture.
fn add_index(layout: &Path, tag: &str, entries: &[(&str, &str)]) {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(tag, architecture)| {
            let mut entry = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
                .unwrap_or_else(|| panic!("no tag {tag} in {index}"))
                .clone();
            entry.as_object_mut().unwrap().remove("annotations");
            entry["platform"] = serde_json::json!({"os": "linux", "architecture": architecture});
            entry
        })
        .collect();
    let blob = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = nix2container::hash::sha256_of(&blob);
    std::fs::write(layout.join("blobs/sha256").join(digest.digest()), &blob).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(),
            "size": blob.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Pushes the layout's `tag` to `destination` with skopeo (an index with
/// all its manifests), with extra skopeo arguments.
fn skopeo_push(layout: &Path, tag: &str, destination: &str, extra: &[&str]) {
    let source = format!("oci:{}:{tag}", path_str(layout));
    let mut args = vec!["copy", "--all", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend([source.as_str(), destination]);
    tool("skopeo", &args);
}

/// A base pushed by skopeo: a registry of its own holding the base
/// layout's `tag` as `name`, and the scratch directory with the layout.
struct PushedBase {
    registry: Registry,
    scratch: tempfile::TempDir,
    layout: PathBuf,
}

fn pushed_base(tag: &str, name: &str) -> PushedBase {
    let registry = Registry::start(&Options::default());
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let layout = base_layout(scratch.path());
    skopeo_push(&layout, tag, &registry.destination(name), &[]);
    PushedBase {
        registry,
        scratch,
        layout,
    }
}

/// The digest of the manifest (or index) `reference` names, as skopeo
/// reads it.
fn manifest_digest(reference: &str, extra: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(reference);
    nix2container::hash::sha256_of(tool("skopeo", &args).as_bytes()).to_string()
}

/// The manifest digest of the layout's `tag`.
fn layout_digest(layout: &Path, tag: &str) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `nix2container pull SOURCE DIR --tls-verify=false ARGS…`: the directory
/// and the `sha256` it prints for pullImage.
fn pull(source: &str, dir: &Path, args: &[&str]) -> String {
    let stdout = stdout_ok(
        util::nix2container()
            .args(["pull", source])
            .arg(dir)
            .args(["--tls-verify=false", "--quiet"])
            .args(args),
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .unwrap_or_else(|| panic!("no sha256 in {stdout}"));
    line.trim_end_matches("\";").to_owned()
}

/// A `pullImage` expression for `name@digest` on `registry`. A TLS
/// registry's certificate is checked, with its CA as `sslCertFile` (copied
/// into the store, so that the sandbox sees it).
fn pull_image(registry: &Registry, name: &str, digest: &str, sha256: &str, extra: &str) -> String {
    let tls = match registry.ca_certificate() {
        Some(ca) => format!(
            r#"tlsVerify = true; sslCertFile = "${{{}}}";"#,
            ca.display()
        ),
        None => "tlsVerify = false;".to_owned(),
    };
    format!(
        r#"t.pullImage {{ imageName = "{}/{name}"; imageDigest = "{digest}"; sha256 = "{sha256}"; {tls} {extra} }}"#,
        registry.address()
    )
}

/// Loads `image` into the tests' dockerd as `reference`.
fn load(image: &Path, reference: &str) {
    let host = dockerd().host();
    nix::copy(
        image,
        &format!("docker-daemon:{reference}"),
        &[("DOCKER_HOST", &host)],
    );
}

/// The lines of `docker run --rm IMAGE ARGS…`.
fn run_lines(reference: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["run", "--rm", reference];
    all.extend_from_slice(args);
    dockerd().run(&all).lines().map(str::to_owned).collect()
}

/// `nix2container copy IMAGE DESTINATION --dest-tls-verify=false`, which
/// must succeed.
fn push(image: &Path, destination: &str) -> std::process::Output {
    let output = nix::nix2container()
        .arg("copy")
        .arg(image)
        .arg(destination)
        .arg("--dest-tls-verify=false")
        .output()
        .unwrap();
    util::assert_success(&output, &format!("pushing to {destination}"));
    output
}

/// The digests that PUT requests completed uploads of, from `accesses`.
fn uploaded(accesses: &[crate::registry_server::Access]) -> BTreeSet<String> {
    accesses
        .iter()
        .filter(|a| a.method == "PUT" && a.target.contains("/blobs/uploads/"))
        .map(|a| {
            let (_, digest) = a.target.split_once("digest=").expect("a digest");
            digest.split('&').next().unwrap().replace("%3A", ":")
        })
        .collect()
}

fn layer_digests(image: &Value) -> Vec<String> {
    image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Upstream #79 (the base config was dropped), #207 (base layers recorded
/// size 0) and #209 (an image without layers of its own): pullImage of a
/// base pushed by skopeo, an image built on it, run in Docker, pushed back
/// without sending the base layers again.
#[test]
fn upstream_79_207_209_pull_image_builds_runs_and_pushes_by_reference() {
    let PushedBase {
        registry,
        scratch,
        layout,
    } = pushed_base("amd64", "base:v1");
    let digest = manifest_digest(&registry.destination("base:v1"), &[]);
    assert_eq!(digest, layout_digest(&layout, "amd64"));

    // The sha256 `nix2container pull` prints is the NAR hash of what it
    // pulled, which is what skopeo's dir: transport writes (upstream's
    // pullImage): upstream's sha256 values keep working.
    let source = format!("docker://{}/base@{digest}", registry.address());
    let ours = scratch.path().join("pulled");
    let sha256 = pull(&source, &ours, &[]);
    let skopeos = scratch.path().join("skopeo-dir");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &source,
            &format!("dir:{}", path_str(&skopeos)),
        ],
    );
    let nix_hash = |dir: &Path| tool("nix-hash", &["--type", "sha256", "--base32", path_str(dir)]);
    assert_eq!(nix_hash(&ours), nix_hash(&skopeos));
    let parsed = nix2container::nar::parse_sha256(&sha256).unwrap();
    assert_eq!(
        nix2container::nar::to_base32(&parsed),
        nix_hash(&ours).trim()
    );

    let base = pull_image(&registry, "base", &digest, &sha256, "");
    let derived = nix::build_expr(&format!(
        r#"t.buildImage {{
             name = "derived"; tag = "v1";
             fromImage = {base};
             config.Env = [ "BASE=2" "EXTRA=x" ];
             copyToRoot = t.pkgs.writeTextFile {{ name = "extra"; text = "extra file\n"; destination = "/etc/extra"; }};
           }}"#
    ));
    let document = read_json(&derived);
    let layers = document["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{document:#}");
    for layer in &layers[..2] {
        // Upstream #207: sizes from the manifest, tar sizes from the blobs.
        assert!(layer["size"].as_u64().unwrap() > 0, "{layer:#}");
        assert!(layer["tar_size"].as_u64().unwrap() > 0, "{layer:#}");
        let blob = layer["blob_path"].as_str().unwrap();
        assert!(blob.starts_with("/nix/store/"), "{blob}");
        assert_eq!(layer["origin"], format!("{}/base", registry.address()));
    }
    assert_eq!(
        document["config"]["Env"],
        serde_json::json!(["PATH=/bin", "BASE=2", "EXTRA=x"])
    );

    load(&derived, "derived:v1");
    let env = run_lines("derived:v1", &["env"]);
    for wanted in ["PATH=/bin", "BASE=2", "EXTRA=x"] {
        assert!(env.iter().any(|l| l == wanted), "{wanted} not in {env:?}");
    }
    assert!(!env.iter().any(|l| l == "BASE=1"), "{env:?}");
    assert_eq!(
        dockerd().run(&[
            "run",
            "--rm",
            "derived:v1",
            "cat",
            "/etc/base-release",
            "/etc/extra"
        ]),
        format!("{BASE_RELEASE}extra file\n")
    );
    // The base's Cmd and WorkingDir.
    assert_eq!(
        dockerd().run(&["run", "--rm", "derived:v1"]),
        BASE_CMD_OUTPUT
    );
    assert_eq!(run_lines("derived:v1", &["sh", "-c", "pwd"]), ["/work"]);
    let config: Value = serde_json::from_str(&dockerd().run(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "derived:v1",
    ]))
    .unwrap();
    assert_eq!(config["WorkingDir"], "/work");
    assert_eq!(config["Labels"]["org.example.base"], "yes");
    // The base's history, its empty_layer entry included, then ours.
    let history: Vec<String> = dockerd()
        .run(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "derived:v1",
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected: Vec<String> = BASE_HISTORY.iter().map(|s| s.to_string()).collect();
    expected.push("nix2container".into());
    expected.reverse();
    assert_eq!(history, expected);

    // Pushed to the same registry: the base layers are mounted from the
    // base's repository, only our layer and the config are uploaded.
    let before = registry.accesses().len();
    let output = push(&derived, &registry.destination("derived:v1"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let new: Vec<_> = registry.accesses().into_iter().skip(before).collect();
    let config_digest = stdout_ok(
        nix::nix2container()
            .arg("inspect")
            .arg(&derived)
            .arg("--config"),
    );
    let config_digest = nix2container::hash::sha256_of(config_digest.as_bytes()).to_string();
    assert_eq!(
        uploaded(&new),
        BTreeSet::from([
            layers[2]["digest"].as_str().unwrap().to_owned(),
            config_digest
        ]),
        "{stderr}"
    );
    let mounts: Vec<_> = new
        .iter()
        .filter(|a| a.method == "POST" && a.target.contains("mount=") && a.status == 201)
        .collect();
    assert_eq!(mounts.len(), 2, "{new:?}");
    assert!(stderr.contains("mounted 2 from base"), "{stderr}");
    registry.assert_consistent();
    // Pushed again, nothing is sent.
    let output = push(&derived, &registry.destination("derived:v1"));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("sent 0 blobs (0 B), skipped 4"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // To another registry, the base layers go up from the pulled blobs;
    // skopeo reads the image back, checking every digest, and umoci
    // unpacks it.
    let other = Registry::start(&Options::default());
    let output = push(&derived, &other.destination("derived:v1"));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("sent 4 blobs"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let copied = scratch.path().join("copied");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &other.destination("derived:v1"),
            &format!("oci:{}:v1", path_str(&copied)),
        ],
    );
    let bundle = scratch.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", path_str(&copied)),
            path_str(&bundle),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base-release")).unwrap(),
        BASE_RELEASE
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    let _ = std::fs::remove_dir_all(&bundle);

    // Upstream #209: no layer of its own; still a valid image.
    let only_base = nix::build_expr(&format!(
        r#"t.buildImage {{ name = "only-base"; tag = "v1"; fromImage = {base}; }}"#
    ));
    let document = read_json(&only_base);
    assert_eq!(
        layer_digests(&document),
        layer_digests(&read_json(&derived))[..2]
    );
    load(&only_base, "only-base:v1");
    assert_eq!(
        dockerd().run(&["run", "--rm", "only-base:v1"]),
        BASE_CMD_OUTPUT
    );
}

/// pullImageFromManifest: getManifest chooses the platform from an image
/// index; the manifest it prints pins one fixed-output derivation per
/// blob, whose hash is the blob's digest.
#[test]
fn pull_image_from_manifest_with_get_manifest_from_an_index() {
    let PushedBase {
        registry,
        scratch,
        layout,
    } = pushed_base("multi", "lab/multi:v1");

    let from_manifest = |manifest: &str, extra: &str| {
        format!(
            r#"t.pullImageFromManifest {{ imageName = "lab/multi"; imageTag = "v1"; registryUrl = "{}"; tlsVerify = false; imageManifest = {manifest}; {extra} }}"#,
            registry.address()
        )
    };
    let get_manifest = |extra: &str| {
        let script = nix::build_expr(&format!("({}).getManifest", from_manifest("null", extra)));
        Command::new(script.join("bin/get-manifest"))
            .output()
            .unwrap()
    };
    for (arch, tag) in [("", "amd64"), ("arch = \"arm64\";", "arm64")] {
        let output = get_manifest(arch);
        util::assert_success(&output, "get-manifest");
        assert_eq!(
            nix2container::hash::sha256_of(&output.stdout).to_string(),
            layout_digest(&layout, tag),
            "{arch}"
        );
    }
    let output = get_manifest("arch = \"riscv64\";");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("has no manifest for linux/riscv64; it has linux/amd64, linux/arm64"),
        "{stderr}"
    );

    let manifest_file = scratch.path().join("manifest.json");
    std::fs::write(&manifest_file, get_manifest("").stdout).unwrap();
    let manifest = read_json(&manifest_file);
    let image = nix::build_expr(&format!(
        r#"t.buildImage {{
             name = "from-manifest"; tag = "v1";
             fromImage = {};
             config.Env = [ "EXTRA=y" ];
           }}"#,
        from_manifest(path_str(&manifest_file), "")
    ));
    let document = read_json(&image);
    let pulled: Vec<&str> = document["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["blob_path"].as_str().unwrap())
        .collect();
    let descriptors = manifest["layers"].as_array().unwrap();
    assert_eq!(pulled.len(), descriptors.len());
    for (blob, descriptor) in pulled.iter().zip(descriptors) {
        // Each blob is its own store path, named by its digest, whose
        // flat hash is that digest.
        let hex = descriptor["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        assert!(blob.ends_with(&format!("-{hex}")), "{blob}");
        let bytes = std::fs::read(blob).unwrap();
        assert_eq!(
            nix2container::hash::sha256_of(&bytes).to_string(),
            descriptor["digest"]
        );
    }
    load(&image, "from-manifest:v1");
    let env = run_lines("from-manifest:v1", &["env"]);
    for wanted in ["PATH=/bin", "BASE=1", "EXTRA=y"] {
        assert!(env.iter().any(|l| l == wanted), "{wanted} not in {env:?}");
    }

    // An index committed as the manifest is refused at evaluation.
    let index_file = scratch.path().join("index.json");
    std::fs::write(
        &index_file,
        tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &registry.destination("lab/multi:v1"),
            ],
        ),
    )
    .unwrap();
    let error = nix::eval_error(&format!(
        "(t.buildImage {{ name = \"x\"; fromImage = {}; }}).drvPath",
        from_manifest(path_str(&index_file), "")
    ));
    assert!(
        error.contains("is an image index (one manifest per platform)"),
        "{error}"
    );
}

/// pullImage of an index by its digest chooses `arch`'s manifest; an
/// architecture the index lacks fails listing those it has; a wrong sha256
/// fails with Nix's hash mismatch and says which one is right.
#[test]
fn pull_image_chooses_the_platform_and_explains_wrong_hashes() {
    let PushedBase {
        registry,
        scratch,
        layout,
    } = pushed_base("multi", "multi:v1");
    let index = manifest_digest(&registry.destination("multi:v1"), &[]);
    assert_eq!(index, layout_digest(&layout, "multi"));

    let source = format!("docker://{}/multi@{index}", registry.address());
    let sha256 = pull(&source, &scratch.path().join("arm64"), &["--arch", "arm64"]);
    let image = nix::build_expr(&format!(
        r#"t.buildImage {{ name = "arm"; arch = "arm64"; fromImage = {}; }}"#,
        pull_image(&registry, "multi", &index, &sha256, r#"arch = "arm64";"#)
    ));
    let document = read_json(&image);
    assert_eq!(document["architecture"], "arm64");
    let arm = read_json(&scratch.path().join("arm64/manifest.json"));
    assert_eq!(
        layer_digests(&document),
        arm["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(scratch.path().join("arm64/manifest.json")).unwrap(),
        tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!(
                    "docker://{}/multi@{}",
                    registry.address(),
                    layout_digest(&layout, "arm64")
                )
            ]
        )
        .into_bytes()
    );

    // A base for arm64 under an amd64 image.
    let error = nix::build_error(&format!(
        r#"t.buildImage {{ name = "mixed"; fromImage = {}; }}"#,
        pull_image(&registry, "multi", &index, &sha256, r#"arch = "arm64";"#)
    ));
    assert!(
        error.contains(
            "the base image (fromImage) is for linux/arm64, but the image is for linux/amd64"
        ),
        "{error}"
    );

    let error = nix::build_error(&pull_image(
        &registry,
        "multi",
        &index,
        "",
        r#"arch = "riscv64";"#,
    ));
    assert!(
        error.contains("has no manifest for linux/riscv64; it has linux/amd64, linux/arm64"),
        "{error}"
    );

    let amd64 = pull(&source, &scratch.path().join("amd64"), &[]);
    let wrong = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let error = nix::build_error(&pull_image(&registry, "multi", &index, wrong, ""));
    assert!(
        error.contains("hash mismatch in fixed-output derivation"),
        "{error}"
    );
    assert!(
        error.contains(&format!("set `sha256 = \"{amd64}\";` in pullImage")),
        "{error}"
    );
}

/// Upstream #40, #85: a private registry. Credentials come from
/// /etc/skopeo/auth.json, bind-mounted into the sandbox with
/// extra-sandbox-paths; without them the build fails saying so. The
/// registry serves HTTPS, checked in the sandbox against `sslCertFile`.
#[test]
fn upstream_40_pull_image_from_a_private_registry_with_an_auth_file() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let issuer = TokenIssuer::start(scratch.path(), &[(USER, PASSWORD)], "forbidden/");
    let registry = Registry::start(&Options {
        auth: issuer.registry_auth(),
        tls: true,
        ..Options::default()
    });
    let creds = format!("{USER}:{PASSWORD}");
    let layout = base_layout(scratch.path());
    skopeo_push(
        &layout,
        "amd64",
        &registry.destination("private/base:v1"),
        &["--dest-creds", &creds],
    );
    let digest = layout_digest(&layout, "amd64");
    let source = format!("docker://{}/private/base@{digest}", registry.address());
    let sha256 = pull(
        &source,
        &scratch.path().join("pulled"),
        &["--creds", &creds],
    );

    let auth_file = scratch.path().join("auth.json");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {registry.address(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let expr = format!(
        r#"t.buildImage {{ name = "private"; fromImage = {}; }}"#,
        pull_image(&registry, "private/base", &digest, &sha256, "")
    );
    let build = |sandbox_paths: Option<&Path>| {
        let mut config = String::from(
            "substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = true\n",
        );
        if let Some(file) = sandbox_paths {
            config.push_str(&format!(
                "extra-sandbox-paths = /etc/skopeo/auth.json={}\n",
                file.display()
            ));
        }
        Command::new("nix-build")
            .current_dir(nix::repo())
            .env("NIX_CONFIG", config)
            .args(["--no-out-link", "-E"])
            .arg(format!(
                "let t = import ./tests/nix {{ helper = \"{}\"; }}; in {expr}",
                nix::helper().display()
            ))
            .output()
            .unwrap()
    };
    let output = build(None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} requires credentials to pull from private/base",
            registry.address()
        )) && stderr
            .contains("/etc/skopeo/auth.json, made visible to the build with extra-sandbox-paths"),
        "{stderr}"
    );
    let output = build(Some(&auth_file));
    util::assert_success(&output, "building on a private base image");
    let image = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert_eq!(read_json(&image)["layers"].as_array().unwrap().len(), 2);
    assert!(
        issuer.requests().iter().any(
            |r| r.user.as_deref() == Some(USER) && r.scopes == ["repository:private/base:pull"]
        ),
        "{:?}",
        issuer.requests()
    );
    // The password is in no output.
    for stream in [&output.stdout, &output.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(PASSWORD));
    }
}

/// Mistakes in the base image functions' arguments are caught at
/// evaluation, naming the argument.
#[test]
fn base_image_mistakes_are_caught_at_evaluation() {
    let digest = format!("sha256:{}", "a".repeat(64));
    for (expr, message) in [
        (
            format!(
                r#"t.pullImage {{ imageName = "alpine:3.20"; imageDigest = "{digest}"; sha256 = ""; }}"#
            ),
            "`imageName` must be an image name without tag or digest",
        ),
        (
            r#"t.pullImage { imageName = "alpine"; imageDigest = "3.20"; sha256 = ""; }"#
                .to_owned(),
            "`imageDigest` must be the digest of the image's manifest or index",
        ),
        (
            format!(
                r#"t.pullImage {{ imageName = "alpine"; imageDigest = "{digest}"; sha256 = ""; tlsVerify = "no"; }}"#
            ),
            "`tlsVerify` must be a boolean",
        ),
        (
            r#"t.pullImageFromManifest { imageName = "alpine"; }"#.to_owned(),
            "`imageManifest` is needed to build the image",
        ),
        (
            r#"t.buildImage { name = "x"; fromImage = t.pkgs.hello; }"#.to_owned(),
            "`fromImage` must be a pullImage or pullImageFromManifest result",
        ),
    ] {
        nix::assert_eval_fails_with(&expr, message);
    }
}
