//! Reading from a registry, for base images: a manifest (an image index
//! resolved to the manifest of one platform) and blobs, each checked
//! against its digest. The connection, authentication (with `pull` scope),
//! TLS, retries and error messages are the push's.
//!
//! ```text
//! GET /v2/<name>/manifests/<tag|digest>   Accept: every manifest type
//!     an index: choose the platform, GET /v2/<name>/manifests/<digest>
//! GET /v2/<name>/blobs/<digest>           (may redirect to a CDN)
//! ```

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use oci_spec::image::Digest;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hash::{HashingWriter, sha256_of};

use super::auth::Access;
use super::client::Registry;
use super::manifest::{DOCKER_MANIFEST_LIST, OCI_INDEX, manifest_accept};
use super::progress::Reporter;
use super::reference::{RegistryReference, Target};
use super::retry::{Failure, Policy};
use super::{AccessOptions, connect};

/// The largest manifest read: registries refuse bigger ones (distribution
/// caps them at 4 MiB).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// An operating system, CPU architecture and variant, as image indexes
/// name them (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, …
    pub os: String,
    /// `amd64`, `arm64`, … (Go's names).
    pub architecture: String,
    /// `v7`, `v8`, …; `None` accepts the architecture's usual variant.
    pub variant: Option<String>,
}

impl Platform {
    /// Linux on the CPU this program was built for.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an index entry's platform is this one. Without a variant,
    /// an entry with none or with the architecture's usual one matches
    /// (`arm64` is `arm64/v8`, as Docker and containerd decide).
    fn matches(&self, other: &IndexPlatform) -> bool {
        let usual = match self.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            _ => None,
        };
        let variant = other.variant.as_deref().filter(|v| !v.is_empty());
        other.os == self.os
            && other.architecture == self.architecture
            && match (self.variant.as_deref(), variant) {
                (Some(wanted), Some(found)) => wanted == found,
                (Some(wanted), None) => Some(wanted) == usual,
                (None, found) => found.is_none() || found == usual,
            }
    }
}

impl fmt::Display for Platform {
    /// `os/architecture[/variant]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// Its exact bytes: their digest is the manifest's.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
    /// The index the manifest was chosen from, if the reference named one.
    pub index: Option<Digest>,
}

/// The entries of an image index (OCI) or manifest list (Docker).
#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: Digest,
    #[serde(default)]
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct IndexPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl fmt::Display for IndexPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// The digest of the manifest for `platform` in the image index `bytes`
/// (of `reference`, for messages).
pub(crate) fn choose_platform(
    bytes: &[u8],
    platform: &Platform,
    reference: &str,
) -> Result<Digest> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| {
        Error::Invalid(format!(
            "the image index of {reference} is not valid JSON of an index: {e}"
        ))
    })?;
    let mut available = Vec::new();
    for entry in &index.manifests {
        let Some(found) = &entry.platform else {
            continue;
        };
        if platform.matches(found) {
            return Ok(entry.digest.clone());
        }
        // Attestations and signatures are listed as unknown/unknown.
        if found.os != "unknown" {
            available.push(found.to_string());
        }
    }
    Err(Error::PlatformNotFound {
        reference: reference.to_owned(),
        wanted: platform.to_string(),
        available,
    })
}

/// Whether a manifest is an index, by its media type or else its shape.
fn is_index(bytes: &[u8], content_type: Option<&str>) -> bool {
    let declared = content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        .filter(|t| t.contains("index") || t.contains("manifest"))
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        });
    match declared.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(_) => false,
        None => serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("manifests").is_some()),
    }
}

/// A connection to a repository to pull from.
pub struct Puller {
    registry: Registry,
    reference: RegistryReference,
    reporter: Reporter,
    retries: u32,
    abort: AtomicBool,
}

impl Puller {
    /// Connects to the repository of `reference`. Retries are reported on
    /// standard error unless `quiet`.
    pub fn connect(
        reference: &RegistryReference,
        options: &AccessOptions,
        quiet: bool,
    ) -> Result<Puller> {
        super::tls::install_crypto_provider();
        let abort = AtomicBool::new(false);
        let reporter = Reporter::lines(quiet);
        let registry = connect(
            reference,
            options,
            Access::Pull,
            Vec::new(),
            &Policy {
                retries: options.retries,
                abort: &abort,
            },
            &reporter,
        )?;
        Ok(Puller {
            registry,
            reference: reference.clone(),
            reporter,
            retries: options.retries,
            abort,
        })
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            retries: self.retries,
            abort: &self.abort,
        }
    }

    /// A read that broke off mid-answer: worth another attempt.
    fn interrupted(&self, operation: &str, error: io::Error) -> Failure {
        Failure::transient(self.registry.error(
            operation,
            "an interrupted answer",
            error.to_string(),
        ))
    }

    /// The reference pulled from.
    pub fn reference(&self) -> &RegistryReference {
        &self.reference
    }

    /// The manifest the reference names; when that is an image index, the
    /// manifest of `platform` in it.
    pub fn manifest(&self, platform: &Platform) -> Result<PulledManifest> {
        let (bytes, content_type) = self.raw_manifest(&self.reference.manifest_reference())?;
        if let Target::Digest(expected) = self.reference.target() {
            self.check_manifest_digest(&bytes, expected)?;
        }
        if !is_index(&bytes, content_type.as_deref()) {
            let digest = sha256_of(&bytes);
            return Ok(PulledManifest {
                bytes,
                digest,
                index: None,
            });
        }
        let index = sha256_of(&bytes);
        let chosen = choose_platform(&bytes, platform, &self.reference.to_string())?;
        let (bytes, content_type) = self.raw_manifest(chosen.as_ref())?;
        self.check_manifest_digest(&bytes, &chosen)?;
        if is_index(&bytes, content_type.as_deref()) {
            return Err(Error::Invalid(format!(
                "the image index of {} lists another index ({chosen}) for {platform}; \
                 nested indexes are not supported: name that platform's manifest by its digest",
                self.reference
            )));
        }
        Ok(PulledManifest {
            bytes,
            digest: chosen,
            index: Some(index),
        })
    }

    fn check_manifest_digest(&self, bytes: &[u8], expected: &Digest) -> Result<()> {
        let found = sha256_of(bytes);
        match found == *expected {
            true => Ok(()),
            false => Err(self.registry.error(
                &format!("getting the manifest {expected}"),
                "a success",
                format!("the registry answered a manifest whose digest is {found}"),
            )),
        }
    }

    /// The manifest named `reference` (a tag or digest) and its
    /// `Content-Type`, as the registry sends them.
    fn raw_manifest(&self, reference: &str) -> Result<(Vec<u8>, Option<String>)> {
        let operation = format!(
            "getting the manifest {}:{reference}",
            self.reference.repository()
        );
        let url = self
            .registry
            .repository_url(&format!("manifests/{reference}"));
        let attempt = || -> std::result::Result<_, Failure> {
            let response = self.registry.send(&operation, |client| {
                client.get(url.clone()).header(ACCEPT, manifest_accept())
            })?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(Failure::fatal(self.registry.error(
                    &operation,
                    &response.status().to_string(),
                    format!(
                        "the registry has no manifest {reference} in {}: check the image name \
                         and its tag or digest",
                        self.reference.repository()
                    ),
                )));
            }
            let response = self.registry.check(response, &operation)?;
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut bytes = Vec::new();
            response
                .take(MANIFEST_LIMIT + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| self.interrupted(&operation, e))?;
            if bytes.len() as u64 > MANIFEST_LIMIT {
                return Err(Failure::fatal(self.registry.error(
                    &operation,
                    "a success",
                    "the manifest is larger than 4 MiB".into(),
                )));
            }
            Ok((bytes, content_type))
        };
        self.policy().run(attempt, |error, delay, attempt| {
            self.reporter
                .retrying(&operation, error, delay, attempt, self.retries)
        })
    }

    /// Writes the blob `digest` to `path` and returns its size. `size`,
    /// when known, must be the blob's. Each attempt starts the file over;
    /// on failure the file holds part of the blob (callers remove it).
    pub fn blob_to_file(&self, digest: &Digest, size: Option<u64>, path: &Path) -> Result<u64> {
        let operation = format!("getting blob {digest}");
        let url = self.registry.repository_url(&format!("blobs/{digest}"));
        let timeout = self.registry.transfer_timeout(size.unwrap_or(0));
        let attempt = || -> std::result::Result<u64, Failure> {
            let response = self.registry.send(&operation, |client| {
                client.get(url.clone()).timeout(timeout)
            })?;
            let response = self.registry.check(response, &operation)?;
            let file = std::fs::File::create(path)
                .map_err(|e| Failure::fatal(Error::io("creating", path)(e)))?;
            let mut writer = HashingWriter::new(BufWriter::new(file));
            let limit = size.map_or(u64::MAX, |s| s + 1);
            io::copy(&mut response.take(limit), &mut writer)
                .and_then(|_| writer.flush())
                .map_err(|e| self.interrupted(&operation, e))?;
            let (found, written, _) = writer.finish();
            let wrong = match size {
                Some(size) if size != written => {
                    Some(format!("the registry sent {written} bytes, not {size}"))
                }
                _ if found != *digest => {
                    Some(format!("the registry sent a blob whose digest is {found}"))
                }
                _ => None,
            };
            match wrong {
                Some(message) => Err(Failure::fatal(self.registry.error(
                    &operation,
                    "a success",
                    message,
                ))),
                None => Ok(written),
            }
        };
        self.policy().run(attempt, |error, delay, attempt| {
            self.reporter
                .retrying(&operation, error, delay, attempt, self.retries)
        })
    }

    /// Prints a progress line (unless quiet).
    pub fn line(&self, text: &str) {
        self.reporter.line(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333", "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444", "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555", "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}}
      ]
    }"#;

    #[test]
    fn platforms_are_chosen_as_docker_chooses_them() {
        let cases = [
            (platform("linux", "amd64", None), Some('1')),
            (platform("linux", "arm", None), Some('3')),
            (platform("linux", "arm", Some("v6")), Some('2')),
            (platform("linux", "arm64", None), Some('4')),
            (platform("linux", "arm64", Some("v8")), Some('4')),
            (platform("linux", "riscv64", None), None),
            (platform("windows", "amd64", None), None),
        ];
        for (wanted, expected) in cases {
            let chosen = choose_platform(INDEX.as_bytes(), &wanted, "r/x:v1")
                .ok()
                .map(|d| d.digest().chars().next().unwrap());
            assert_eq!(chosen, expected, "{wanted}");
        }
    }

    #[test]
    fn a_missing_platform_lists_those_found() {
        let error = choose_platform(
            INDEX.as_bytes(),
            &platform("linux", "riscv64", None),
            "r/x:v1",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "the image index of r/x:v1 has no manifest for linux/riscv64; it has linux/amd64, \
             linux/arm/v6, linux/arm/v7, linux/arm64/v8: choose one of them with `arch` and `os` \
             (--arch and --os on the command line)"
        );
    }

    #[test]
    fn indexes_are_told_from_manifests() {
        assert!(is_index(INDEX.as_bytes(), None));
        assert!(is_index(b"{}", Some(DOCKER_MANIFEST_LIST)));
        assert!(!is_index(
            br#"{"manifests": []}"#,
            Some("application/vnd.oci.image.manifest.v1+json")
        ));
        assert!(!is_index(br#"{"layers": []}"#, None));
        assert!(is_index(br#"{"manifests": []}"#, Some("text/plain")));
    }
}
