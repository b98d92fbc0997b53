//! Private registries for tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1, a port the kernel picks, storage in a directory of
//! its own under `CARGO_TARGET_TMPDIR`.
//!
//! Each test starts its own ([`Registry::start`]); it is stopped when the
//! value is dropped, and by `PR_SET_PDEATHSIG` when the test's thread exits
//! first (a panic). Variants: plain HTTP; TLS with a self-signed
//! certificate (openssl) and htpasswd users (bcrypt cost 4, so that checking
//! a password on every request stays cheap); Docker token auth, with a
//! token issuer the test runs (`tests/support/token.rs`). The access log
//! (Apache combined format, on the registry's standard output) is kept, to
//! count requests; the storage is read directly to check that no manifest
//! lacks a blob.
//!
//! Needs `docker-registry`, `htpasswd` (apache2-utils) and `openssl`.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::terminate_with_spawning_thread;
use crate::util::run_ok;

/// How long the registry may take to log its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A user every htpasswd registry knows.
pub const USER: &str = "labuser";

/// Their password.
pub const PASSWORD: &str = "lab-Pa55word-do-not-print";

/// How a registry authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Not at all.
    None,
    /// htpasswd: [`USER`] with [`PASSWORD`].
    Htpasswd,
    /// Docker token auth against this realm, trusting this certificate.
    Token {
        /// The token endpoint.
        realm: String,
        /// The `service` (the token's audience).
        service: String,
        /// The tokens' issuer.
        issuer: String,
        /// The PEM certificate of the signing key.
        certificate: PathBuf,
    },
}

/// What kind of registry to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Serve HTTPS with a self-signed certificate.
    pub tls: bool,
    /// How clients authenticate.
    pub auth: Auth,
    /// Answer with relative `Location`s (distribution's `relativeurls`).
    pub relative_urls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            auth: Auth::None,
            relative_urls: false,
        }
    }
}

/// A running registry.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The method.
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The status answered.
    pub status: u16,
}

impl Access {
    /// Whether this request sent (part of) a blob, or opened an upload:
    /// POST, PATCH or PUT under `/blobs/uploads/`.
    pub fn is_upload(&self) -> bool {
        self.target.contains("/blobs/uploads/")
            && matches!(self.method.as_str(), "POST" | "PATCH" | "PUT")
    }
}

impl Registry {
    /// Starts a registry.
    pub fn start(options: &Options) -> Registry {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("registries");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir_in(&base)
            .unwrap();
        let root = dir.path();
        let mut http = format!(
            "http:\n  addr: 127.0.0.1:0\n  secret: not-a-secret-test-only\n  relativeurls: {}\n",
            options.relative_urls
        );
        if options.tls {
            run_ok(
                Command::new("openssl")
                    .args([
                        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    ])
                    .args(["-subj", "/CN=127.0.0.1"])
                    .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                    .arg("-keyout")
                    .arg(root.join("key.pem"))
                    .arg("-out")
                    .arg(root.join("cert.pem")),
            );
            std::fs::create_dir(root.join("certs.d")).unwrap();
            std::fs::copy(root.join("cert.pem"), root.join("certs.d/ca.crt")).unwrap();
            http.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                root.join("cert.pem").display(),
                root.join("key.pem").display()
            ));
        }
        let auth = match &options.auth {
            Auth::None => String::new(),
            Auth::Htpasswd => {
                let output = Command::new("htpasswd")
                    .args(["-nbB", "-C", "4", USER, PASSWORD])
                    .output()
                    .expect("htpasswd runs (apt-get install apache2-utils)");
                assert!(output.status.success());
                std::fs::write(root.join("htpasswd"), output.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: lab-realm\n    path: {}\n",
                    root.join("htpasswd").display()
                )
            }
            Auth::Token {
                realm,
                service,
                issuer,
                certificate,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                certificate.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             {http}{auth}",
            root.join("data").display()
        );
        std::fs::write(root.join("config.yml"), config).unwrap();
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(root.join("access.log")).unwrap())
            .stderr(std::fs::File::create(root.join("registry.log")).unwrap());
        terminate_with_spawning_thread(&mut command);
        let child = command
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        let mut registry = Registry {
            child,
            dir,
            port: 0,
            tls: options.tls,
        };
        registry.port = registry.wait_for_port();
        registry
    }

    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + START_TIMEOUT;
        let pattern = regex::Regex::new(r"listening on 127\.0\.0\.1:(\d+)").unwrap();
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap();
            if let Some(captures) = pattern.captures(&log) {
                return captures[1].parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("docker-registry logged no address within {START_TIMEOUT:?}");
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `docker://127.0.0.1:PORT/<name>`.
    pub fn destination(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.address())
    }

    /// A certs.d-style directory holding the registry's certificate.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(self.tls, "only TLS registries have a certificate");
        self.dir.path().join("certs.d")
    }

    /// The CA certificate clients must trust, for a TLS registry.
    pub fn ca_certificate(&self) -> Option<PathBuf> {
        self.tls.then(|| self.cert_dir().join("ca.crt"))
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The access log so far, once it stopped growing (the registry logs a
    /// request after answering it).
    pub fn accesses(&self) -> Vec<Access> {
        let path = self.dir.path().join("access.log");
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = std::fs::read_to_string(&path).unwrap();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        last.lines().filter_map(parse_access).collect()
    }

    /// The uploads in the access log: see [`Access::is_upload`].
    pub fn uploads(&self) -> Vec<Access> {
        self.accesses()
            .into_iter()
            .filter(Access::is_upload)
            .collect()
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("data/docker/registry/v2")
    }

    /// The tags of `repository`, from the storage.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        sorted_names(&self.repository(repository).join("_manifests/tags"))
    }

    /// The manifests `repository` holds (by digest), from the storage.
    pub fn manifests(&self, repository: &str) -> Vec<String> {
        sorted_names(
            &self
                .repository(repository)
                .join("_manifests/revisions/sha256"),
        )
        .into_iter()
        .map(|hex| format!("sha256:{hex}"))
        .collect()
    }

    fn repository(&self, repository: &str) -> PathBuf {
        self.storage().join("repositories").join(repository)
    }

    /// Where the registry stores the blob `digest`.
    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Whether the registry stores the blob `digest` at all.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_data(digest).is_file()
    }

    /// Whether `repository` links the blob `digest` (HEAD would find it).
    pub fn repository_has_blob(&self, repository: &str, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.has_blob(digest)
            && self
                .repository(repository)
                .join("_layers/sha256")
                .join(hex)
                .join("link")
                .is_file()
    }

    /// Panics unless every manifest of every repository has its config and
    /// layers in that repository.
    pub fn assert_consistent(&self) {
        let repositories = self.storage().join("repositories");
        let Ok(walk) = walkdir_dirs(&repositories) else {
            return;
        };
        for repository in walk {
            for manifest in self.manifests(&repository) {
                let bytes = std::fs::read(self.blob_data(&manifest)).unwrap_or_else(|e| {
                    panic!("{repository}: manifest {manifest} unreadable: {e}")
                });
                let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let mut digests = vec![value["config"]["digest"].as_str().unwrap().to_owned()];
                for layer in value["layers"].as_array().unwrap() {
                    digests.push(layer["digest"].as_str().unwrap().to_owned());
                }
                for digest in digests {
                    assert!(
                        self.repository_has_blob(&repository, &digest),
                        "{repository}: manifest {manifest} names {digest}, which the repository lacks"
                    );
                }
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the entries of `dir`, sorted; none if it does not exist.
fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The repositories under `root`: directories holding `_manifests`.
fn walkdir_dirs(root: &Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry?;
        if entry.file_type().is_dir() && entry.file_name() == "_manifests" {
            let repository = entry.path().parent().unwrap().strip_prefix(root).unwrap();
            found.push(repository.to_string_lossy().into_owned());
        }
    }
    Ok(found)
}

/// `127.0.0.1 - - [date] "POST /v2/x/blobs/uploads/ HTTP/1.1" 202 0 "" "ua"`.
fn parse_access(line: &str) -> Option<Access> {
    let (_, rest) = line.split_once('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let status = rest.trim_start().split(' ').next()?.parse().ok()?;
    Some(Access {
        method,
        target,
        status,
    })
}
