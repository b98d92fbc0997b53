//! `nix2container copy IMAGE docker://…` against real registries: Debian's
//! docker-registry (distribution 2.8) started by each test
//! (`tests/support/registry.rs`), plain, with TLS and htpasswd, or with
//! Docker token auth from a token issuer in the test process
//! (`tests/support/token.rs`); some through a fault-injecting proxy
//! (`tests/support/faults.rs`). What was pushed is read back with skopeo
//! and unpacked with umoci; the registry's access log counts uploads.
//!
//! Every push runs with a HOME of its own (`Home`), so that no credential
//! or cache of the machine can help or interfere.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use nix2container::compression::Compression;
use nix2container::image::Image;
use nix2container::oci_spec::image::ConfigBuilder;

use crate::faults::{self, Fault, FaultProxy, Rule};
use crate::images::{self, ImageSpec, TestImage, build_image};
use crate::registry_server::{Access, Auth, Options, PASSWORD, Registry, USER};
use crate::token::{self, TokenIssuer};
use crate::util::{nix2container, path_str, stderr_of, tool};

/// A new directory under `CARGO_TARGET_TMPDIR/base` that every user can
/// search (see `as_another_user`).
fn searchable_tempdir(base: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(base);
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A HOME with nothing in it and the XDG directories inside it, as on a
/// fresh CI machine: no credentials, no cache.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: searchable_tempdir("homes"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        let home = self.path();
        command
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
    }

    /// Every file below HOME.
    fn files(&self) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.path())
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().to_path_buf())
            .collect()
    }
}

/// `nix2container copy JSON DESTINATION ARGS…` with `home`.
fn push_command(json: &Path, destination: &str, args: &[&str], home: &Home) -> Command {
    let mut command = nix2container();
    command.arg("copy").arg(json).arg(destination).args(args);
    home.apply(&mut command);
    command
}

fn push(json: &Path, destination: &str, args: &[&str], home: &Home) -> Output {
    push_command(json, destination, args, home)
        .output()
        .expect("nix2container runs")
}

/// Standard error of a run that must have succeeded, writing nothing to
/// standard output.
fn succeeded(output: &Output) -> String {
    let stderr = stderr_of(output);
    assert!(output.stdout.is_empty(), "nothing goes to standard output");
    stderr
}

/// Standard error of a run that must have failed with exit status 1 and
/// one error line.
fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("nix2container: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    stderr
}

fn lines_matching<'a>(stderr: &'a str, pattern: &str) -> Vec<&'a str> {
    let pattern = regex::Regex::new(pattern).unwrap();
    stderr.lines().filter(|l| pattern.is_match(l)).collect()
}

/// Pulls `reference` with skopeo (`skopeo_args` say how to reach it) into
/// an OCI layout, unpacks it with umoci and compares the files with the
/// image's sources.
fn assert_pulls_to_source(
    rootfs: &std::collections::BTreeMap<PathBuf, images::Node>,
    reference: &str,
    skopeo_args: &[&str],
) {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    let mut args = vec!["copy"];
    args.extend_from_slice(skopeo_args);
    let destination = format!("oci:{}:pulled", layout.display());
    args.extend([reference, destination.as_str()]);
    tool("skopeo", &args);
    let bundle = scratch.path().join("bundle");
    images::assert_unpacks_to(rootfs, &layout, "pulled", &bundle, reference);
}

/// `skopeo inspect --tls-verify=false FLAGS… REFERENCE`, parsed.
fn skopeo_inspect(reference: &str, flags: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(flags);
    args.push(reference);
    serde_json::from_str(&tool("skopeo", &args)).unwrap()
}

/// The digests of the blobs whose uploads `accesses` finished (a `PUT`
/// with `?digest=`), sorted.
fn blobs_put(accesses: &[Access]) -> Vec<String> {
    let mut digests: Vec<String> = accesses
        .iter()
        .filter(|a| a.method == "PUT")
        .map(|a| {
            let (_, digest) = a.target.split_once("digest=").expect("a digest");
            digest.replace("%3A", ":")
        })
        .collect();
    digests.sort();
    digests
}

/// Fails if any of `secrets` is in what `outputs` printed.
fn assert_printed_none_of(outputs: &[Output], secrets: &[(&str, &str)]) {
    for output in outputs {
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            for (name, secret) in secrets {
                assert!(!text.contains(secret), "{name} was printed:\n{text}");
            }
        }
    }
}

fn image_with(compression: Compression, greeting: &str) -> TestImage {
    build_image(&ImageSpec {
        compression,
        greeting,
        ..ImageSpec::default()
    })
}

const GZIP: Compression = Compression::Gzip { level: 6 };
const ZSTD: Compression = Compression::Zstd { level: 3 };
const GREETING: &str = "Hello from a layer\n";

#[test]
fn push_round_trips_through_skopeo_and_umoci() {
    let registry = Registry::start(&Options::default());
    let home = Home::new();
    let insecure = format!("--insecure={}", registry.address());
    for (compression, name, flag) in [
        (GZIP, "lab/gzip:v1", "--dest-tls-verify=false"),
        (ZSTD, "lab/zstd:v1", insecure.as_str()),
    ] {
        let image = image_with(compression, GREETING);
        let digestfile = image.dir().join("digest");
        let destination = registry.destination(name);
        let stderr = succeeded(&push(
            &image.json,
            &destination,
            &[flag, "--digestfile", path_str(&digestfile)],
            &home,
        ));
        let manifest = image.image().manifest_digest().to_string();
        assert_eq!(std::fs::read_to_string(&digestfile).unwrap(), manifest);
        assert_eq!(
            lines_matching(
                &stderr,
                r"^layer sha256:[0-9a-f]{64} uploaded [0-9.]+ (B|KiB|MiB) in [0-9.]+ s$"
            )
            .len(),
            2,
            "{stderr}"
        );
        assert_eq!(
            lines_matching(&stderr, r"^config sha256:[0-9a-f]{64} uploaded ").len(),
            1,
            "{stderr}"
        );
        assert_eq!(
            lines_matching(
                &stderr,
                r"^sent 3 blobs \([0-9.]+ (KiB|MiB)\), skipped 0 \(already in the registry\)$"
            )
            .len(),
            1,
            "{stderr}"
        );
        assert!(
            stderr.ends_with(&format!("pushed manifest {manifest} to {destination}\n")),
            "{stderr}"
        );

        let reference = destination.clone();
        let inspect = skopeo_inspect(&reference, &[]);
        assert_eq!(inspect["Digest"], manifest);
        assert_eq!(inspect["Architecture"], "amd64");
        let config = skopeo_inspect(&reference, &["--config"]);
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/bin/hello"])
        );
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            image.document.layers[1].diff_id.to_string()
        );
        let raw = skopeo_inspect(&reference, &["--raw"]);
        assert_eq!(
            raw["layers"][0]["mediaType"],
            compression.media_type().to_string()
        );
        // umoci 0.4 reads no zstd: skopeo recompresses what it pulls.
        let pull: &[&str] = match compression {
            ZSTD => &["--src-tls-verify=false", "--dest-compress-format=gzip"],
            _ => &["--src-tls-verify=false"],
        };
        assert_pulls_to_source(&image.rootfs(), &reference, pull);
    }
    registry.assert_consistent();
    assert!(home.files().is_empty(), "a push writes nothing to HOME");
}

#[test]
fn v2s2_pushes_docker_media_types_and_refuses_zstd() {
    let registry = Registry::start(&Options::default());
    let home = Home::new();
    let image = image_with(GZIP, GREETING);
    let destination = registry.destination("lab/docker:v1");
    succeeded(&push(
        &image.json,
        &destination,
        &["--dest-tls-verify=false", "--format", "v2s2"],
        &home,
    ));
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &destination],
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        skopeo_inspect(&destination, &[])["Digest"],
        nix2container::hash::sha256_of(raw.as_bytes()).to_string()
    );
    assert_pulls_to_source(&image.rootfs(), &destination, &["--src-tls-verify=false"]);

    // zstd has no Docker media type: refused before anything is sent.
    let zstd = image_with(ZSTD, GREETING);
    let before = registry.accesses().len();
    let stderr = failed(&push(
        &zstd.json,
        &registry.destination("lab/zstd:v1"),
        &["--dest-tls-verify=false", "--format=v2s2"],
        &home,
    ));
    assert!(
        stderr.contains("is compressed with zstd, which Docker's v2s2 manifest format cannot describe: push with --format oci"),
        "{stderr}"
    );
    assert_eq!(registry.accesses().len(), before, "nothing was sent");
}

#[test]
fn a_fresh_machine_sends_no_blob_twice() {
    let registry = Registry::start(&Options::default());
    let destination = registry.destination("lab/app:v1");
    let flags = ["--dest-tls-verify=false"];
    let first = image_with(GZIP, GREETING);
    succeeded(&push(&first.json, &destination, &flags, &Home::new()));
    let uploads = registry.uploads();
    assert_eq!(uploads.len(), 6, "POST and PUT for 3 blobs: {uploads:?}");

    // The same image, built in another directory, pushed by another user
    // (nobody, when the tests run as root) from a machine that has never
    // pushed anything: the registry is asked, nothing sent.
    let same = image_with(GZIP, GREETING);
    assert_eq!(
        same.image().manifest_digest(),
        first.image().manifest_digest()
    );
    let fresh = Home::new();
    let (_shared, json) = readable_copy(&same.json);
    let mut command = as_another_user(push_command(&json, &destination, &flags, &fresh));
    let stderr = succeeded(&command.output().unwrap());
    assert_eq!(registry.uploads().len(), 6, "no upload: {stderr}");
    assert_eq!(
        lines_matching(&stderr, r"^(layer|config) sha256:[0-9a-f]{64} exists$").len(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.contains("sent 0 blobs (0 B), skipped 3 (already in the registry)\n"),
        "{stderr}"
    );
    assert!(
        fresh.files().is_empty(),
        "nothing written to HOME: {:?}",
        fresh.files()
    );

    // One layer changed (another application file): that layer and the
    // config go up, nothing else.
    let changed = image_with(GZIP, "Hello from a new application\n");
    let stderr = succeeded(&push(
        &changed.json,
        &registry.destination("lab/app:v2"),
        &flags,
        &Home::new(),
    ));
    let new: Vec<_> = registry.uploads().into_iter().skip(6).collect();
    let sent = blobs_put(&new);
    let mut expected = vec![changed.document.layers[1].digest.to_string(), changed.id()];
    expected.sort();
    assert_eq!(sent, expected, "{stderr}");
    assert_eq!(new.iter().filter(|a| a.method == "POST").count(), 2);
    let manifest_puts = registry
        .accesses()
        .into_iter()
        .filter(|a| a.method == "PUT" && a.target.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 3);
    assert!(
        stderr.contains("sent 2 blobs (") && stderr.contains("skipped 1 (already in the registry)"),
        "{stderr}"
    );
    assert_eq!(registry.tags("lab/app"), ["v1", "v2"]);
    registry.assert_consistent();
}

/// The user `nobody` when running as root, else the current user.
const NOBODY: libc::uid_t = 65534;

/// `command` run as [`NOBODY`] if this process is root.
fn as_another_user(mut command: Command) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return command;
    }
    // SAFETY: setgroups, setgid and setuid are async-signal-safe and touch
    // no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// A copy of `file` that any user can read, in a directory that lives as
/// long as the returned value.
fn readable_copy(file: &Path) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = searchable_tempdir("shared");
    let copy = dir.path().join("image.json");
    std::fs::copy(file, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, copy)
}

/// Writes `content` to `path`, creating parents.
fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// An auth.json (or Docker config.json) with credentials for `server`.
fn auths_json(server: &str, auth: &str) -> String {
    format!(r#"{{"auths": {{"{server}": {{"auth": "{auth}"}}}}}}"#)
}

fn basic_auth_value(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn basic_auth_over_tls_from_every_credential_source() {
    let registry = Registry::start(&Options {
        tls: true,
        auth: Auth::Htpasswd,
        relative_urls: true,
    });
    let image = image_with(GZIP, GREETING);
    let cert_dir = registry.cert_dir();
    let cert_flag = format!("--dest-cert-dir={}", cert_dir.display());
    let address = registry.address();
    let auth = basic_auth_value(USER, PASSWORD);
    let scratch = registry.scratch();
    let mut outputs = Vec::new();
    let mut ok = |name: &str, args: &[&str], home: &Home, extra_env: &[(&str, &str)]| {
        let mut command = push_command(&image.json, &registry.destination(name), args, home);
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        succeeded(&output);
        outputs.push(output);
    };

    // --dest-creds, and its skopeo alias --creds.
    let home = Home::new();
    let creds = format!("{USER}:{PASSWORD}");
    ok(
        "lab/a:flag",
        &[&cert_flag, "--dest-creds", &creds],
        &home,
        &[],
    );
    ok(
        "lab/a:alias",
        &["--cert-dir", path_str(&cert_dir), "--creds", &creds],
        &home,
        &[],
    );

    // --dest-authfile and $REGISTRY_AUTH_FILE: containers' auth.json.
    let authfile = scratch.join("auth.json");
    write(&authfile, &auths_json(&address, &auth));
    ok(
        "lab/a:authfile",
        &[&cert_flag, "--dest-authfile", path_str(&authfile)],
        &home,
        &[],
    );
    ok(
        "lab/a:env-authfile",
        &[&cert_flag],
        &home,
        &[("REGISTRY_AUTH_FILE", path_str(&authfile))],
    );

    // $XDG_RUNTIME_DIR/containers/auth.json, as `skopeo login` writes it.
    let runtime = Home::new();
    write(
        &runtime.path().join("run/containers/auth.json"),
        &auths_json(&address, &auth),
    );
    ok("lab/a:xdg", &[&cert_flag], &runtime, &[]);

    // ~/.docker/config.json, as `docker login` writes it (URL keys).
    let docker = Home::new();
    write(
        &docker.path().join(".docker/config.json"),
        &auths_json(&format!("https://{address}"), &auth),
    );
    ok("lab/a:docker", &[&cert_flag], &docker, &[]);

    // $DOCKER_CONFIG with a credential helper: it gets the server on its
    // standard input and nothing secret in its arguments.
    let helper_dir = scratch.join("helper");
    let record = scratch.join("helper-record");
    write(
        &helper_dir.join("bin/docker-credential-n2ctest"),
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" > {record}.args\ncat > {record}.stdin\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$(cat {record}.stdin)\"\n",
            record = record.display()
        ),
    );
    std::fs::set_permissions(
        helper_dir.join("bin/docker-credential-n2ctest"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(
        &helper_dir.join("docker/config.json"),
        &format!(r#"{{"auths": {{}}, "credHelpers": {{"{address}": "n2ctest"}}}}"#),
    );
    let path = format!(
        "{}:{}",
        helper_dir.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    ok(
        "lab/a:helper",
        &[&cert_flag],
        &Home::new(),
        &[
            ("DOCKER_CONFIG", path_str(&helper_dir.join("docker"))),
            ("PATH", &path),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(record.with_extension("args")).unwrap(),
        "get\n"
    );
    assert_eq!(
        std::fs::read_to_string(record.with_extension("stdin")).unwrap(),
        address
    );

    // A machine without CA certificates can still use the registry's.
    ok(
        "lab/a:no-system-cas",
        &[&cert_flag, "--dest-creds", &creds],
        &home,
        &[
            ("SSL_CERT_FILE", "/dev/null"),
            ("SSL_CERT_DIR", "/nonexistent"),
        ],
    );

    // Without verification, no CA is needed.
    ok(
        "lab/a:unverified",
        &["--dest-tls-verify=false", "--dest-creds", &creds],
        &home,
        &[],
    );

    // What a puller sees.
    assert_pulls_to_source(
        &image.rootfs(),
        &registry.destination("lab/a:helper"),
        &["--src-cert-dir", path_str(&cert_dir), "--src-creds", &creds],
    );

    // Failures: each one sentence, exit 1, no manifest.
    let wrong = format!("{USER}:not-{PASSWORD}");
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "lab/fail:wrong-password",
            vec![&cert_flag, "--dest-creds", &wrong],
            format!(
                "{address} rejected the credentials from --dest-creds (401 Unauthorized): check the user name and password"
            ),
        ),
        (
            "lab/fail:wrong-authfile",
            vec![&cert_flag, "--dest-authfile", "/nonexistent/auth.json"],
            "reading the auth file /nonexistent/auth.json".into(),
        ),
        (
            "lab/fail:anonymous",
            vec![&cert_flag],
            format!("{address} requires credentials to push to lab/fail: pass --dest-creds"),
        ),
        (
            "lab/fail:no-cas",
            vec!["--dest-creds", &creds],
            "this system has no CA certificates to check the registry's TLS certificate with"
                .into(),
        ),
        (
            "lab/fail:untrusted",
            vec!["--dest-creds", &creds],
            format!(
                "the TLS certificate of {address} is not trusted (it is a self-signed CA certificate that is not among the registry's CAs): pass --dest-cert-dir with the registry's CA, or --dest-tls-verify=false"
            ),
        ),
    ];
    for (name, args, expected) in cases {
        let mut command = push_command(
            &image.json,
            &registry.destination(name),
            &args,
            &Home::new(),
        );
        if name.ends_with("no-cas") {
            command
                .env("SSL_CERT_FILE", "/dev/null")
                .env("SSL_CERT_DIR", "/nonexistent");
        }
        let output = command.output().unwrap();
        let stderr = failed(&output);
        assert!(stderr.contains(&expected), "{name}: {stderr}");
        outputs.push(output);
    }
    assert!(registry.manifests("lab/fail").is_empty());
    registry.assert_consistent();

    // No password anywhere in what was printed.
    assert_printed_none_of(
        &outputs,
        &[("the password", PASSWORD), ("the encoded password", &auth)],
    );
}

/// The README's `copyToRegistry`: the image's name says where it goes, and
/// the script hands credentials and TLS options on to `copy`.
#[test]
fn copy_to_registry_pushes_to_the_image_name_with_credentials_and_tls() {
    let registry = Registry::start(&Options {
        tls: true,
        auth: Auth::Htpasswd,
        ..Options::default()
    });
    let name = format!("{}/lab/scripted", registry.address());
    let package = crate::nix::build_expr(&format!(
        r#"(t.buildImage {{ name = "{name}"; tag = "v1"; config.Cmd = [ "${{t.pkgs.hello}}/bin/hello" ]; }}).copyToRegistry"#
    ));
    let creds = format!("{USER}:{PASSWORD}");
    let cert_dir = registry.cert_dir();
    let home = Home::new();
    let mut command = Command::new(package.join("bin/copy-to-registry"));
    command.args([
        "--dest-creds",
        &creds,
        "--dest-cert-dir",
        path_str(&cert_dir),
    ]);
    home.apply(&mut command);
    succeeded(&command.output().unwrap());
    let pushed = skopeo_inspect(&format!("docker://{name}:v1"), &["--creds", &creds]);
    assert_eq!(pushed["Layers"].as_array().unwrap().len(), 1, "{pushed}");
}

#[test]
fn token_auth_scopes_mounts_and_denials() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let issuer = TokenIssuer::start(
        scratch.path(),
        &[(USER, PASSWORD), (token::OAUTH_USER, PASSWORD)],
        "forbidden/",
    );
    let registry = Registry::start(&Options {
        auth: issuer.registry_auth(),
        ..Options::default()
    });
    let image = image_with(GZIP, GREETING);
    let creds = format!("{USER}:{PASSWORD}");
    let home = Home::new();
    let mut outputs = Vec::new();
    let mut run = |name: &str, args: &[&str]| {
        let mut all = vec!["--dest-tls-verify=false"];
        all.extend_from_slice(args);
        let output = push(&image.json, &registry.destination(name), &all, &home);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        outputs.push(output.clone());
        (output, stderr)
    };

    let (output, _) = run("lab/base:v1", &["--dest-creds", &creds]);
    succeeded(&output);
    let requests = issuer.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.user.as_deref(), Some(USER));
        assert_eq!(request.scopes, ["repository:lab/base:pull,push"]);
    }

    // A token server that answers `access_token` (OAuth2's name).
    let oauth = format!("{}:{PASSWORD}", token::OAUTH_USER);
    let (output, _) = run("lab/oauth:v1", &["--dest-creds", &oauth]);
    succeeded(&output);

    // Mounting from a repository the token also covers: nothing uploaded.
    let before = registry.uploads().len();
    let (output, stderr) = run(
        "lab/app:v1",
        &["--dest-creds", &creds, "--mount-from", "lab/base"],
    );
    succeeded(&output);
    assert_eq!(
        lines_matching(
            &stderr,
            r"^(layer|config) sha256:[0-9a-f]{64} mounted from lab/base$"
        )
        .len(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "sent 0 blobs (0 B), skipped 0 (already in the registry), mounted 3 from lab/base"
        ),
        "{stderr}"
    );
    let mounts: Vec<_> = registry.uploads().into_iter().skip(before).collect();
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    assert!(
        mounts
            .iter()
            .all(|a| a.method == "POST" && a.target.contains("mount=") && a.status == 201),
        "{mounts:?}"
    );
    let last = issuer.requests().pop().unwrap();
    assert_eq!(
        last.scopes,
        ["repository:lab/app:pull,push", "repository:lab/base:pull"]
    );

    // Failures.
    let wrong = format!("{USER}:wrong");
    let registry_name = registry.address();
    for (name, args, expected) in [
        (
            "lab/fail:anonymous",
            vec![],
            format!("{registry_name} requires credentials to push to lab/fail"),
        ),
        (
            "lab/fail:wrong",
            vec!["--dest-creds", wrong.as_str()],
            format!(
                "{registry_name} rejected the credentials from --dest-creds (401 Unauthorized)"
            ),
        ),
        (
            "forbidden/app:v1",
            vec!["--dest-creds", creds.as_str()],
            format!(
                "{registry_name} denied access to forbidden/app (401 Unauthorized, insufficient scope): check that these credentials may push to that repository"
            ),
        ),
    ] {
        let (output, stderr) = run(name, &args);
        failed(&output);
        assert!(stderr.contains(&expected), "{name}: {stderr}");
    }
    assert!(registry.manifests("lab/fail").is_empty());
    assert!(registry.manifests("forbidden/app").is_empty());
    registry.assert_consistent();
    assert_printed_none_of(&outputs, &[("the password", PASSWORD)]);
}

#[test]
fn transient_faults_are_retried() {
    let registry = Registry::start(&Options::default());
    let proxy = FaultProxy::start(
        &registry.address(),
        vec![
            Rule::new(Some("GET"), "/v2/", Fault::Reset, 1),
            Rule::new(Some("HEAD"), "/blobs/", Fault::Reset, 1),
            Rule::new(
                Some("HEAD"),
                "/blobs/",
                Fault::Stall(std::time::Duration::from_secs(6)),
                1,
            ),
            Rule::new(
                Some("POST"),
                "/blobs/uploads/",
                faults::status(500, "UNKNOWN", &[]),
                2,
            ),
            Rule::new(
                Some("PUT"),
                "digest=",
                faults::status(429, "TOOMANYREQUESTS", &[("Retry-After", "1")]),
                1,
            ),
            Rule::new(
                Some("PUT"),
                "/manifests/",
                faults::status(503, "UNAVAILABLE", &[]),
                1,
            ),
        ],
    );
    let image = image_with(GZIP, GREETING);
    let destination = proxy.destination("lab/flaky:v1");
    let started = std::time::Instant::now();
    let stderr = succeeded(&push(
        &image.json,
        &destination,
        &["--dest-tls-verify=false", "--timeout=2", "--retries=4"],
        &Home::new(),
    ));
    let mut faults = proxy.faults();
    faults.sort();
    assert_eq!(
        faults,
        [
            "GET reset",
            "HEAD reset",
            "HEAD stall 6s",
            "POST 500",
            "POST 500",
            "PUT 429",
            "PUT 503"
        ],
        "{stderr}"
    );
    assert!(
        lines_matching(&stderr, r"^retrying ").len() >= 6,
        "{stderr}"
    );
    assert!(stderr.contains("did not answer within 2 s"), "{stderr}");
    assert!(stderr.contains("429 Too Many Requests"), "{stderr}");
    assert!(started.elapsed().as_secs() < 30, "{stderr}");
    registry.assert_consistent();
    let inspect = skopeo_inspect(&registry.destination("lab/flaky:v1"), &[]);
    assert_eq!(
        inspect["Digest"],
        image.image().manifest_digest().to_string()
    );
}

#[test]
fn a_failed_push_leaves_no_manifest_and_the_next_one_sends_only_the_rest() {
    let registry = Registry::start(&Options::default());
    let image = image_with(GZIP, GREETING);
    let broken = image.document.layers[1].digest.to_string();
    let proxy = FaultProxy::start(
        &registry.address(),
        vec![Rule::always(
            "PUT",
            &broken.replace(':', "%3A"),
            faults::status(500, "UNKNOWN", &[]),
        )],
    );
    let destination = proxy.destination("lab/resume:v1");
    let stderr = failed(&push(
        &image.json,
        &destination,
        &["--dest-tls-verify=false", "--retries=1"],
        &Home::new(),
    ));
    assert!(
        stderr.contains(&format!(
            "{}: uploading layer {broken} failed with 500 Internal Server Error: UNKNOWN: injected by the test proxy (tried 2 times; --retries sets how often)",
            proxy.address()
        )),
        "{stderr}"
    );
    assert!(
        registry.manifests("lab/resume").is_empty(),
        "no manifest after a failure"
    );
    registry.assert_consistent();
    let blobs: Vec<String> = [
        image.document.layers[0].digest.to_string(),
        broken.clone(),
        image.id(),
    ]
    .into();
    let missing: Vec<&String> = blobs
        .iter()
        .filter(|d| !registry.repository_has_blob("lab/resume", d))
        .collect();
    assert!(missing.contains(&&broken));

    proxy.set_rules(Vec::new());
    let before = registry.uploads().len();
    succeeded(&push(
        &image.json,
        &destination,
        &["--dest-tls-verify=false"],
        &Home::new(),
    ));
    let sent = blobs_put(&registry.uploads()[before..]);
    let mut missing: Vec<String> = missing.into_iter().cloned().collect();
    missing.sort();
    assert_eq!(sent, missing);
    assert_eq!(
        registry.manifests("lab/resume"),
        [image.image().manifest_digest().to_string()]
    );
    registry.assert_consistent();
}

/// An image of one uncompressed layer holding `size` bytes that do not
/// compress (a xorshift sequence).
fn image_with_big_layer(size: usize) -> (tempfile::TempDir, PathBuf, Image) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("big-root");
    std::fs::create_dir_all(root.join("data")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("data/blob"), bytes).unwrap();
    let layer = images::layer_at_root(&root, "big test layer", Compression::None);
    let config = ConfigBuilder::default()
        .cmd(vec!["/data/blob".to_owned()])
        .build()
        .unwrap();
    let (json, document) = images::write_image(dir.path(), images::CREATED, config, vec![layer]);
    (dir, json, Image::from_document(document))
}

#[test]
fn refused_whole_uploads_go_in_chunks() {
    let registry = Registry::start(&Options::default());
    let (dir, json, image) = image_with_big_layer(3 << 20);
    let mut whole = Rule::always("PUT", "digest=", faults::status(413, "SIZE_INVALID", &[]));
    whole.min_body = Some(0);
    let mut big_chunks = Rule::always(
        "PATCH",
        "/blobs/uploads/",
        faults::status(413, "SIZE_INVALID", &[]),
    );
    big_chunks.min_body = Some(1_500_000);
    let proxy = FaultProxy::start(&registry.address(), vec![whole, big_chunks]);
    let stderr = succeeded(&push(
        &json,
        &proxy.destination("lab/chunks:v1"),
        &["--dest-tls-verify=false"],
        &Home::new(),
    ));
    assert!(
        stderr.contains(
            "the registry refused it in one request (413 Payload Too Large); sending it in chunks"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("trying smaller ones"), "{stderr}");
    let layer = &image.layers()[0];
    let patches: Vec<_> = registry
        .accesses()
        .into_iter()
        .filter(|a| a.method == "PATCH")
        .collect();
    // 1 MiB chunks for the big layer, one chunk for the config.
    let expected = layer.size.div_ceil(1 << 20) as usize + 1;
    assert_eq!(patches.len(), expected, "{patches:?}\n{stderr}");
    assert!(patches.iter().all(|a| a.status == 202), "{patches:?}");
    assert!(registry.repository_has_blob("lab/chunks", layer.digest.as_ref()));
    registry.assert_consistent();
    let inspect = skopeo_inspect(&registry.destination("lab/chunks:v1"), &[]);
    assert_eq!(inspect["Digest"], image.manifest_digest().to_string());

    // A registry that announces a minimum chunk size gets chunks (of at
    // least that size) right away: one PATCH per blob here.
    proxy.set_rules(vec![Rule::always(
        "POST",
        "/blobs/uploads/",
        Fault::AddHeader("OCI-Chunk-Min-Length".into(), "5242880".into()),
    )]);
    let before = registry.accesses().len();
    succeeded(&push(
        &json,
        &proxy.destination("lab/min-chunk:v1"),
        &["--dest-tls-verify=false"],
        &Home::new(),
    ));
    let methods: Vec<String> = registry
        .accesses()
        .into_iter()
        .skip(before)
        .filter(|a| a.is_upload())
        .map(|a| a.method)
        .collect();
    assert_eq!(
        methods.iter().filter(|m| *m == "PATCH").count(),
        2,
        "{methods:?}"
    );
    assert_eq!(
        methods.iter().filter(|m| *m == "PUT").count(),
        2,
        "{methods:?}"
    );
    registry.assert_consistent();
    drop(dir);
}

#[test]
fn a_store_path_that_changed_aborts_its_upload() {
    let registry = Registry::start(&Options::default());
    let image = image_with(GZIP, GREETING);
    let root = &image.layer_roots[1];
    // Same size, other bytes: only the digest can tell.
    std::fs::write(root.join("etc/greeting"), GREETING.to_uppercase()).unwrap();
    let stderr = failed(&push(
        &image.json,
        &registry.destination("lab/changed:v1"),
        &["--dest-tls-verify=false"],
        &Home::new(),
    ));
    assert!(
        stderr.contains(&format!(
            "digest mismatch for the layer holding {}",
            root.display()
        )),
        "{stderr}"
    );
    assert!(registry.manifests("lab/changed").is_empty());
    assert!(!registry.has_blob(image.document.layers[1].digest.as_ref()));
    registry.assert_consistent();
}

#[test]
fn bad_input_fails_with_one_clear_sentence() {
    let registry = Registry::start(&Options::default());
    let image = image_with(GZIP, GREETING);
    let address = registry.address();
    let manifest = image.image().manifest_digest().to_string();
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let zero = format!("sha256:{}", "0".repeat(64));
    let proxy = FaultProxy::start(
        &address,
        vec![
            Rule::always(
                "HEAD",
                "/v2/lab/forbidden/",
                faults::status(403, "DENIED", &[]),
            ),
            Rule::always(
                "POST",
                "/v2/lab/unknown/",
                faults::status(404, "NAME_UNKNOWN", &[]),
            ),
        ],
    );
    let layout = image.dir().join("layout");
    let cases: Vec<(String, Vec<&str>, String)> = vec![
        (
            format!("docker://{address}/Lab/App:v1"),
            vec![],
            "invalid image reference".into(),
        ),
        (
            format!("docker:/{address}/lab/app:v1"),
            vec![],
            "a registry destination is docker://REGISTRY/NAME[:TAG|@DIGEST], with two slashes"
                .into(),
        ),
        (
            format!("docker://{address}/lab/app:v1@{manifest}"),
            vec![],
            "it names both a tag and a digest".into(),
        ),
        (
            format!("docker://{address}/lab/app@{zero}"),
            vec!["--dest-tls-verify=false"],
            format!(
                "the destination names the manifest {zero}, but this image's manifest is {manifest}"
            ),
        ),
        (
            format!("docker://127.0.0.1:{down}/lab/app:v1"),
            vec!["--dest-tls-verify=false", "--retries=1"],
            format!("cannot connect to the registry 127.0.0.1:{down} (Connection refused)"),
        ),
        (
            registry.destination("lab/app:v1"),
            vec![],
            format!("the TLS handshake with {address} failed"),
        ),
        (
            proxy.destination("lab/forbidden:v1"),
            vec!["--dest-tls-verify=false"],
            format!(
                "{} denied access to lab/forbidden (403 Forbidden): check that these credentials may push to that repository",
                proxy.address()
            ),
        ),
        (
            proxy.destination(&format!("lab/unknown@{manifest}")),
            vec!["--dest-tls-verify=false"],
            format!(
                "{} has no repository lab/unknown (404 Not Found: NAME_UNKNOWN: injected by the test proxy): create it on the registry first",
                proxy.address()
            ),
        ),
        (
            format!("oci:{}", layout.display()),
            vec!["--dest-creds", "u:p"],
            "--dest-creds applies only to docker:// destinations".into(),
        ),
        (
            registry.destination("lab/app:v1"),
            vec![
                "--dest-tls-verify=false",
                "--mount-from",
                "other.io/lab/base",
            ],
            "blobs can only be mounted from a repository of the destination's registry".into(),
        ),
    ];
    for (destination, args, expected) in cases {
        let stderr = failed(&push(&image.json, &destination, &args, &Home::new()));
        assert!(
            stderr.contains(&expected),
            "{destination} {args:?}:\n{stderr}"
        );
    }
    assert!(!layout.exists());
    for repository in ["lab/app", "lab/forbidden", "lab/unknown"] {
        assert!(registry.manifests(repository).is_empty(), "{repository}");
    }
    registry.assert_consistent();
}

#[test]
fn progress_bars_on_a_terminal_and_silence_with_quiet() {
    let registry = Registry::start(&Options::default());
    let image = image_with(GZIP, GREETING);
    let home = Home::new();
    // `script` gives the push a terminal; its output is what was drawn.
    let command = format!(
        "{} copy {} {} --dest-tls-verify=false",
        env!("CARGO_BIN_EXE_nix2container"),
        image.json.display(),
        registry.destination("lab/tty:v1")
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    home.apply(&mut script);
    let output = script.output().expect("script runs (bsdutils)");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(drawn.contains("total"), "{drawn}");
    assert!(drawn.contains("sent 3 blobs"), "{drawn}");
    assert!(drawn.contains("pushed manifest sha256:"), "{drawn}");

    let output = push(
        &image.json,
        &registry.destination("lab/quiet:v1"),
        &["--dest-tls-verify=false", "--quiet"],
        &home,
    );
    assert_eq!(succeeded(&output), "");
}
