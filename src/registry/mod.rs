//! Registries: pushing an image (`docker://REGISTRY/NAME[:TAG|@DIGEST]`), and
//! pulling base images (`pull`).
//!
//! Every blob's digest and size are in the image JSON, computed when the
//! image was built, so a push needs no cache to know what a registry has:
//! it asks (`HEAD`) for each blob, regenerates and sends only the missing
//! ones, and sends the manifest last, once every blob is there. A fresh CI
//! machine therefore never sends a blob twice.
//!
//! * `reference`: the destination's grammar and Docker Hub's defaults.
//! * `credentials`: `--dest-creds`, auth files and credential helpers.
//! * `auth`: Basic and Bearer (token) authentication.
//! * `tls`: rustls with the system's CAs and per-registry extra CAs.
//! * `client`: requests, authentication, errors that say what to do.
//! * `upload`: one blob: exists, mounted, or uploaded (whole or chunked),
//!   verified while it is sent.
//! * `retry`: which failures are retried, with backoff and jitter.
//! * `progress`: bars on a terminal, lines otherwise.
//! * `manifest`: the OCI manifest, or Docker's v2s2.
//! * `pull`: reading manifests (choosing a platform from an index) and
//!   blobs, for base images, with the same connections.
//!
//! Blobs go up on `--jobs` threads; a failure stops the others from taking
//! new blobs, and then no manifest is sent, so a registry never holds a
//! manifest whose blobs are missing. What was sent stays: the next push
//! skips it.

mod auth;
mod client;
mod credentials;
mod manifest;
mod progress;
mod pull;
mod reference;
mod retry;
mod tls;
mod upload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use oci_spec::image::Digest;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;
use crate::transport::blob::Blob;

pub use self::auth::Access;
pub use self::credentials::{CredentialsArg, Secret};
pub use self::manifest::ManifestFormat;
pub use self::pull::{Platform, PulledManifest, Puller};
pub use self::reference::{DOCKER_HUB, RegistryReference, Target};
pub use self::tls::install_crypto_provider;

use self::client::{Registry, Settings};
use self::credentials::Locations;
use self::manifest::{Manifest, manifest_accept};
use self::progress::Reporter;
use self::retry::{Failure, Policy};
use self::tls::Verification;
use self::upload::{DOCKER_CONTENT_DIGEST, MountSources, Outcome, Uploader};

/// Blobs sent at once unless `--jobs` says otherwise.
pub const DEFAULT_JOBS: usize = 4;

/// Retries of a failed request unless `--retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

/// How long a request may wait for an answer unless `--timeout` says
/// otherwise (a blob upload gets more time, in proportion to its size).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a registry is reached, for a push or a pull: credentials, TLS,
/// retries and timeouts.
#[derive(Debug, Clone)]
pub struct AccessOptions {
    /// `--dest-creds` (`--creds`).
    pub credentials: Option<CredentialsArg>,
    /// `--dest-authfile` (`--authfile`).
    pub authfile: Option<PathBuf>,
    /// `--dest-tls-verify` (`--tls-verify`): `Some(false)` skips
    /// certificate checks and allows plain HTTP.
    pub tls_verify: Option<bool>,
    /// `--dest-cert-dir` (`--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// A PEM bundle of CA certificates trusted besides the system's (the
    /// Nix builders' `sslCertFile`: a build sandbox has no system CAs).
    pub ca_file: Option<PathBuf>,
    /// `--insecure`: registries treated as with `--dest-tls-verify=false`.
    pub insecure: Vec<String>,
    /// `--retries`.
    pub retries: u32,
    /// `--timeout`.
    pub timeout: Duration,
}

impl Default for AccessOptions {
    fn default() -> Self {
        AccessOptions {
            credentials: None,
            authfile: None,
            tls_verify: None,
            cert_dir: None,
            ca_file: None,
            insecure: Vec::new(),
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How a push behaves: the registry options of `copy`.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// How the registry is reached.
    pub access: AccessOptions,
    /// `--digestfile`.
    pub digestfile: Option<PathBuf>,
    /// `--format`.
    pub format: ManifestFormat,
    /// `--jobs`: blobs sent at once.
    pub jobs: usize,
    /// `--mount-from`: a repository of the same registry to mount blobs
    /// from.
    pub mount_from: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            access: AccessOptions::default(),
            digestfile: None,
            format: ManifestFormat::Oci,
            jobs: DEFAULT_JOBS,
            mount_from: None,
        }
    }
}

/// Pushes `image` to `reference` and returns the manifest's digest. Progress
/// goes to standard error unless `quiet`.
///
/// Blobs the repository lacks are mounted, when possible, from another
/// repository of the same registry: the one `--mount-from` names, or the
/// one a base-image layer was pulled from (its `origin`).
pub fn push(
    image: &Image,
    reference: &RegistryReference,
    options: &PushOptions,
    quiet: bool,
) -> Result<Digest> {
    // Everything that can be checked without the network, first.
    let manifest = Manifest::of(image, options.format)?;
    if let Target::Digest(expected) = reference.target()
        && *expected != manifest.digest
    {
        return Err(Error::ManifestDigestMismatch {
            expected: expected.to_string(),
            found: manifest.digest.to_string(),
        });
    }
    let mounts = MountSources {
        every: options
            .mount_from
            .as_deref()
            .map(|from| mount_source(from, reference))
            .transpose()?,
        by_digest: origins_on_registry(image, reference),
    };
    let blobs: Vec<Blob> = Blob::oci(image)
        .into_iter()
        .filter(|blob| blob.kind != "manifest")
        .collect();

    let abort = AtomicBool::new(false);
    let policy = || Policy {
        retries: options.access.retries,
        abort: &abort,
    };
    let reporter = Reporter::new(quiet, blobs.iter().map(|b| b.size).sum());
    let registry = connect(
        reference,
        &options.access,
        Access::Push,
        mounts
            .repositories()
            .into_iter()
            .map(auth::pull_scope)
            .collect(),
        &policy(),
        &reporter,
    )?;
    let uploader = Uploader {
        registry: &registry,
        image,
        mounts: &mounts,
        reporter: &reporter,
        policy: policy(),
    };
    let outcomes = push_blobs(&uploader, &blobs, options.jobs, &abort);
    reporter.finish();
    let outcomes = outcomes?;
    reporter.line(&summary(&blobs, &outcomes));
    put_manifest(&registry, reference, &manifest, &policy(), &reporter)?;
    if let Some(file) = &options.digestfile {
        std::fs::write(file, manifest.digest.to_string())
            .map_err(Error::io("writing the digest file", file))?;
    }
    Ok(manifest.digest)
}

/// Connects to the repository of `reference` for `access`: credentials
/// from the options or the usual files, TLS as the options say.
fn connect(
    reference: &RegistryReference,
    options: &AccessOptions,
    access: Access,
    extra_scopes: Vec<String>,
    policy: &Policy<'_>,
    reporter: &Reporter,
) -> Result<Registry> {
    let locations = Locations::from_env(options.authfile.as_deref());
    let insecure = options.tls_verify == Some(false)
        || options.insecure.iter().any(|r| {
            reference::canonical_registry(r.trim_end_matches('/')) == reference.registry()
        });
    let verification = match insecure {
        true => Verification::Skip,
        false => {
            let mut roots = tls::extra_roots(
                options.cert_dir.as_deref(),
                reference.registry(),
                locations.config_home.as_deref(),
            )?;
            if let Some(file) = &options.ca_file {
                roots.extend(tls::read_pem_file(file)?);
            }
            Verification::Verify(roots)
        }
    };
    let credential = credentials::find(
        options.credentials.as_ref(),
        &locations,
        reference.registry(),
        reference.repository(),
    )?;
    Registry::connect(
        reference,
        Settings {
            verification,
            allow_http: insecure,
            credential,
            timeout: options.timeout,
            access,
            extra_scopes,
        },
        policy,
        reporter,
    )
}

/// The repositories of `destination`'s registry that base-image layers of
/// `image` came from, by layer digest (not `destination`'s own repository,
/// where a blob is found by `HEAD`).
fn origins_on_registry(image: &Image, destination: &RegistryReference) -> BTreeMap<String, String> {
    image
        .layers()
        .iter()
        .filter_map(|layer| {
            let origin: RegistryReference = layer.origin.as_deref()?.parse().ok()?;
            (origin.registry() == destination.registry()
                && origin.repository() != destination.repository())
            .then(|| (layer.digest.to_string(), origin.repository().to_owned()))
        })
        .collect()
}

/// The repository named by `--mount-from`, on the destination's registry.
fn mount_source(from: &str, destination: &RegistryReference) -> Result<String> {
    let parsed: Reference = from.parse()?;
    if parsed.tag().is_some() || parsed.digest().is_some() {
        return Err(Error::Invalid(format!(
            "--mount-from {from:?}: name a repository, without a tag or digest"
        )));
    }
    let full = match parsed.domain() {
        None => format!("{}/{}", destination.registry(), parsed.repository()),
        Some(_) => from.to_owned(),
    };
    let normalized: RegistryReference = full.parse()?;
    if normalized.registry() != destination.registry() {
        return Err(Error::Invalid(format!(
            "--mount-from {from:?} is on {}, but blobs can only be mounted from a \
             repository of the destination's registry, {}",
            normalized.registry(),
            destination.registry()
        )));
    }
    Ok(normalized.repository().to_owned())
}

/// Sends `blobs` on `jobs` threads; the first failure stops the others
/// from starting new blobs and is returned.
fn push_blobs(
    uploader: &Uploader<'_>,
    blobs: &[Blob],
    jobs: usize,
    abort: &AtomicBool,
) -> Result<Vec<Outcome>> {
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; blobs.len()]);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, blobs.len().max(1)) {
            scope.spawn(|| {
                while !abort.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(blob) = blobs.get(index) else {
                        break;
                    };
                    match uploader.push(blob) {
                        Ok(outcome) => {
                            report(uploader.reporter, blob, &outcome);
                            outcomes.lock().unwrap_or_else(PoisonError::into_inner)[index] =
                                Some(outcome);
                        }
                        Err(error) => {
                            abort.store(true, Ordering::Relaxed);
                            failure
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .get_or_insert(error);
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(error);
    }
    Ok(outcomes
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(|outcome| outcome.expect("every blob was pushed"))
        .collect())
}

fn report(reporter: &Reporter, blob: &Blob, outcome: &Outcome) {
    let what = format!("{} {}", blob.kind, blob.digest);
    match outcome {
        Outcome::Exists => {
            reporter.skipped(blob.size);
            reporter.line(&format!("{what} exists"));
        }
        Outcome::Mounted(from) => {
            reporter.skipped(blob.size);
            reporter.line(&format!("{what} mounted from {from}"));
        }
        Outcome::Uploaded { bytes, elapsed } => reporter.line(&format!(
            "{what} uploaded {} in {}",
            progress::size(*bytes),
            progress::seconds(*elapsed)
        )),
    }
}

/// `sent 2 blobs (12.4 MiB), skipped 1 (already in the registry)`, and
/// `, mounted 3 from lab/base` when blobs were mounted.
fn summary(blobs: &[Blob], outcomes: &[Outcome]) -> String {
    let (mut sent, mut bytes, mut skipped) = (0, 0, 0);
    let mut mounted: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Exists => skipped += 1,
            Outcome::Mounted(from) => *mounted.entry(from.as_str()).or_default() += 1,
            Outcome::Uploaded { bytes: b, .. } => {
                sent += 1;
                bytes += b;
            }
        }
    }
    debug_assert_eq!(blobs.len(), outcomes.len());
    let plural = if sent == 1 { "" } else { "s" };
    let mut line = format!(
        "sent {sent} blob{plural} ({}), skipped {skipped} (already in the registry)",
        progress::size(bytes)
    );
    for (from, count) in mounted {
        line.push_str(&format!(", mounted {count} from {from}"));
    }
    line
}

/// Sends the manifest, and checks the digest the registry computed.
fn put_manifest(
    registry: &Registry,
    reference: &RegistryReference,
    manifest: &Manifest,
    policy: &Policy<'_>,
    reporter: &Reporter,
) -> Result<()> {
    let operation = "pushing the manifest";
    let url = registry.repository_url(&format!("manifests/{}", reference.manifest_reference()));
    let expected = manifest.digest.to_string();
    let attempt = || -> std::result::Result<(), Failure> {
        let response = registry.send(operation, |client| {
            client
                .put(url.clone())
                .header(CONTENT_TYPE, manifest.media_type)
                .body(manifest.bytes.clone())
        })?;
        let response = registry.check(response, operation)?;
        let stored = match header(&response, DOCKER_CONTENT_DIGEST) {
            Some(stored) => stored,
            // Not every registry says; ask for it.
            None => {
                let response = registry.send(operation, |client| {
                    client.head(url.clone()).header(ACCEPT, manifest_accept())
                })?;
                if response.status() != StatusCode::OK {
                    registry.check(response, operation)?;
                    return Ok(());
                }
                match header(&response, DOCKER_CONTENT_DIGEST) {
                    Some(stored) => stored,
                    None => return Ok(()),
                }
            }
        };
        match stored == expected {
            true => Ok(()),
            false => Err(Failure::fatal(registry.error(
                operation,
                "a success",
                format!("the registry stored the manifest as {stored}, not {expected}"),
            ))),
        }
    };
    policy.run(attempt, |error, delay, attempt| {
        reporter.retrying(
            "pushing the manifest",
            error,
            delay,
            attempt,
            policy.retries,
        )
    })
}

fn header(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources() {
        let destination: RegistryReference = "r.io:5000/lab/app:v1".parse().unwrap();
        for (from, expected) in [
            ("lab/base", Some("lab/base")),
            ("r.io:5000/lab/base", Some("lab/base")),
            ("other.io/lab/base", None),
            ("lab/base:v1", None),
        ] {
            assert_eq!(
                mount_source(from, &destination).ok().as_deref(),
                expected,
                "{from}"
            );
        }
        let hub: RegistryReference = "app".parse().unwrap();
        assert_eq!(
            mount_source("docker.io/lab/base", &hub).unwrap(),
            "lab/base"
        );
        assert_eq!(mount_source("base", &hub).unwrap(), "library/base");
    }
}
