//! Copying an image to a destination.
//!
//! Destinations use skopeo's syntax, so commands written for upstream's
//! `copyTo` keep working:
//!
//! | destination | meaning |
//! |---|---|
//! | `oci:DIR[:TAG]` | an OCI image layout directory (created if needed) |
//! | `oci-archive:FILE[:TAG]` | an OCI image layout in a tar file |
//! | `docker-archive:FILE[:NAME[:TAG]]` | a `docker save` tar; FILE `-` is stdout |
//! | `docker-daemon:NAME[:TAG]` | a Docker Engine, through its API socket |
//! | `containers-storage:NAME[:TAG]` | Podman's storage, through its service or `podman load` |
//! | `docker://REGISTRY/NAME[:TAG\|@DIGEST]` | a registry; see [`crate::registry`] |
//!
//! Layers are never staged: each is regenerated from the store while it is
//! written, and a copy that fails (a store file changed, the disk is full,
//! the daemon refuses) leaves nothing behind that looks complete. See
//! [`blob`] for how that is enforced and [`archive`] for the streaming tar
//! all archive-shaped destinations share.

mod archive;
pub(crate) mod blob;
mod daemon;
mod docker;
mod file;
mod oci;
mod podman;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;
use crate::registry::{self, PushOptions, RegistryReference};

use self::archive::ArchiveStream;
use self::blob::Blob;
use self::daemon::Engine;

/// Where an image is copied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An OCI image layout directory.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image, if any.
        tag: Option<String>,
    },
    /// An OCI image layout as a tar archive.
    OciArchive {
        /// The archive file.
        file: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image, if any.
        tag: Option<String>,
    },
    /// A Docker archive, as `docker save` writes and `docker load` reads.
    DockerArchive {
        /// The archive file; `None` is standard output.
        file: Option<PathBuf>,
        /// The name the image gets when loaded.
        reference: Option<Reference>,
    },
    /// A Docker Engine's image store.
    DockerDaemon {
        /// The name the image gets.
        reference: Reference,
    },
    /// A registry, through the OCI distribution API.
    Registry {
        /// The registry, repository, and tag or digest.
        reference: RegistryReference,
    },
    /// Podman's image store.
    ContainersStorage {
        /// The name the image gets (Podman prefixes names without a
        /// registry with `localhost/`).
        reference: Reference,
    },
}

impl FromStr for Destination {
    type Err = Error;

    /// Parses `TRANSPORT:DETAILS` as skopeo does: the first `:` ends the
    /// transport name, and for file destinations the next `:` ends the path.
    fn from_str(s: &str) -> Result<Self> {
        let unsupported = || {
            Error::Destination(format!(
                "unsupported destination {s:?}: use oci:DIR[:TAG], oci-archive:FILE[:TAG], \
                 docker-archive:FILE[:NAME[:TAG]], docker-daemon:NAME[:TAG], \
                 containers-storage:NAME[:TAG] or docker://REGISTRY/NAME[:TAG|@DIGEST]"
            ))
        };
        let (transport, details) = s.split_once(':').ok_or_else(unsupported)?;
        let path_and_rest = |details: &str| -> Result<(PathBuf, Option<String>)> {
            let (path, rest) = match details.split_once(':') {
                Some((path, rest)) => (path, Some(rest.to_owned())),
                None => (details, None),
            };
            if path.is_empty() {
                return Err(Error::Destination(format!(
                    "destination {s:?} names no path"
                )));
            }
            Ok((PathBuf::from(path), rest.filter(|r| !r.is_empty())))
        };
        match transport {
            "oci" => path_and_rest(details).map(|(dir, tag)| Destination::OciLayout { dir, tag }),
            "oci-archive" => {
                path_and_rest(details).map(|(file, tag)| Destination::OciArchive { file, tag })
            }
            "docker-archive" => {
                let (file, reference) = path_and_rest(details)?;
                Ok(Destination::DockerArchive {
                    file: (file.as_os_str() != "-").then_some(file),
                    reference: reference.map(|r| docker_name(&r)).transpose()?,
                })
            }
            "docker-daemon" => Ok(Destination::DockerDaemon {
                reference: docker_name(details)?,
            }),
            "docker" => match details.strip_prefix("//") {
                Some(reference) => Ok(Destination::Registry {
                    reference: reference.parse()?,
                }),
                None => Err(Error::Destination(format!(
                    "invalid destination {s:?}: a registry destination is \
                     docker://REGISTRY/NAME[:TAG|@DIGEST], with two slashes"
                ))),
            },
            "containers-storage" => Ok(Destination::ContainersStorage {
                reference: docker_name(details)?,
            }),
            _ => Err(unsupported()),
        }
    }
}

/// Parses the name an image gets in Docker: a tag, never a digest, since
/// Docker names images by tag and computes digests itself.
fn docker_name(s: &str) -> Result<Reference> {
    let reference: Reference = s.parse()?;
    if reference.digest().is_some() {
        return Err(Error::Destination(format!(
            "invalid image name {s:?} for Docker: it cannot carry a digest; use NAME[:TAG]"
        )));
    }
    Ok(reference)
}

impl fmt::Display for Destination {
    /// Writes the destination back in the syntax it was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_tag = |f: &mut fmt::Formatter<'_>, tag: &Option<String>| match tag {
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        };
        match self {
            Destination::OciLayout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                with_tag(f, tag)
            }
            Destination::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}", file.display())?;
                with_tag(f, tag)
            }
            Destination::DockerArchive { file, reference } => {
                let file = file.as_deref().unwrap_or("-".as_ref());
                write!(f, "docker-archive:{}", file.display())?;
                with_tag(f, &reference.as_ref().map(Reference::to_string))
            }
            Destination::DockerDaemon { reference } => write!(f, "docker-daemon:{reference}"),
            Destination::ContainersStorage { reference } => {
                write!(f, "containers-storage:{reference}")
            }
            Destination::Registry { reference } => write!(f, "docker://{reference}"),
        }
    }
}

/// How a copy should behave.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Print nothing but errors.
    pub quiet: bool,
    /// How to push, for `docker://` destinations.
    pub registry: PushOptions,
}

/// Copies `image` to `destination`.
///
/// On failure nothing that looks like a complete image is left: files are
/// written under temporary names and renamed last, a layout directory gets
/// back the contents it had, and a daemon's load request is aborted.
pub fn copy(image: &Image, destination: &Destination, options: &CopyOptions) -> Result<()> {
    let progress = Progress {
        quiet: options.quiet,
    };
    // Every HTTP client needs the TLS crypto provider, even a plain one.
    registry::install_crypto_provider();
    match destination {
        Destination::OciLayout { dir, tag } => {
            oci::write_layout(image, dir, tag.as_deref(), progress)?;
        }
        Destination::OciArchive { file, tag } => {
            let entries = oci::archive_entries(image, tag.as_deref());
            write_archive(ArchiveStream::new(image, entries, progress), Some(file))?;
        }
        Destination::DockerArchive { file, reference } => {
            let entries = docker::archive_entries(image, reference.as_ref());
            write_archive(
                ArchiveStream::new(image, entries, progress),
                file.as_deref(),
            )?;
        }
        Destination::DockerDaemon { reference } => {
            let endpoint = Engine::Docker
                .endpoint()?
                .expect("Docker always has an address");
            daemon::load(image, reference, Engine::Docker, endpoint, progress)?;
        }
        Destination::ContainersStorage { reference } => match Engine::Podman.endpoint()? {
            Some(endpoint) => daemon::load(image, reference, Engine::Podman, endpoint, progress)?,
            None => podman::load(image, reference, progress)?,
        },
        Destination::Registry { reference } => {
            let digest = registry::push(image, reference, &options.registry, options.quiet)?;
            progress.line(format_args!("pushed manifest {digest} to {destination}"));
            return Ok(());
        }
    }
    progress.line(format_args!(
        "copied image {} to {destination}",
        image.config_descriptor().digest()
    ));
    Ok(())
}

/// Writes an archive to `file`, or to standard output if `None`.
fn write_archive(stream: ArchiveStream, file: Option<&Path>) -> Result<()> {
    let failure = stream.failure();
    match file {
        Some(file) => file::write_atomically(file, stream, &failure),
        None => file::write_stdout(stream, &failure),
    }
}

/// Progress lines on standard error (standard output may carry an archive).
#[derive(Debug, Clone, Copy)]
struct Progress {
    quiet: bool,
}

impl Progress {
    fn line(self, line: fmt::Arguments<'_>) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn copying(self, blob: &Blob) {
        self.line(format_args!(
            "copying {} {} ({})",
            blob.kind,
            blob.digest,
            human_size(blob.size)
        ));
    }

    fn present(self, blob: &Blob) {
        self.line(format_args!(
            "skipping {} {} (already present)",
            blob.kind, blob.digest
        ));
    }
}

/// `1234567` → `1.2 MiB`: binary units, one decimal above bytes.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, Destination)] = &[
            (
                "oci:out",
                Destination::OciLayout {
                    dir: "out".into(),
                    tag: None,
                },
            ),
            (
                "oci:out:v1",
                Destination::OciLayout {
                    dir: "out".into(),
                    tag: Some("v1".into()),
                },
            ),
            (
                "oci-archive:x.tar:v1",
                Destination::OciArchive {
                    file: "x.tar".into(),
                    tag: Some("v1".into()),
                },
            ),
            (
                "docker-archive:-",
                Destination::DockerArchive {
                    file: None,
                    reference: None,
                },
            ),
            (
                "docker-archive:a.tar:hello:v1",
                Destination::DockerArchive {
                    file: Some("a.tar".into()),
                    reference: Some("hello:v1".parse().unwrap()),
                },
            ),
            (
                "docker-daemon:hello:latest",
                Destination::DockerDaemon {
                    reference: "hello:latest".parse().unwrap(),
                },
            ),
        ];
        for (input, expected) in ok {
            assert_eq!(&input.parse::<Destination>().unwrap(), expected, "{input}");
        }
        for bad in [
            "",
            "out",
            "ftp:x",
            "oci:",
            "docker-daemon:Bad",
            "docker-archive::x",
            "docker-daemon:hello@sha256:0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            assert!(
                bad.parse::<Destination>().is_err(),
                "{bad} should not parse"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "oci:out",
            "oci:out:v1",
            "oci-archive:x.tar:v1",
            "docker-archive:-",
            "docker-archive:a.tar:lab/hello:v1",
            "docker-daemon:localhost:5000/hello:latest",
        ] {
            let destination: Destination = input.parse().unwrap();
            assert_eq!(destination.to_string(), input);
        }
    }

    #[test]
    fn human_sizes() {
        for (bytes, expected) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1_289_748, "1.2 MiB"),
            (12_900_000, "12.3 MiB"),
            (5 << 30, "5.0 GiB"),
        ] {
            assert_eq!(human_size(bytes), expected, "{bytes}");
        }
    }
}
