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

use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;

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
}

impl FromStr for Destination {
    type Err = Error;

    /// Parses `TRANSPORT:DETAILS` as skopeo does: the first `:` ends the
    /// transport name, and for file destinations the next `:` ends the path.
    fn from_str(s: &str) -> Result<Self> {
        let unsupported = || {
            Error::Destination(format!(
                "unsupported destination {s:?}: use oci:DIR[:TAG], oci-archive:FILE[:TAG], \
                 docker-archive:FILE[:NAME[:TAG]] or docker-daemon:NAME[:TAG]"
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
                    reference: reference.map(|r| r.parse()).transpose()?,
                })
            }
            "docker-daemon" => Ok(Destination::DockerDaemon {
                reference: details.parse()?,
            }),
            _ => Err(unsupported()),
        }
    }
}

/// How a copy should behave.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Print nothing but errors.
    pub quiet: bool,
}

/// Copies `image` to `destination`.
pub fn copy(image: &Image, destination: &Destination, options: &CopyOptions) -> Result<()> {
    let _ = (image, destination, options);
    Err(Error::Destination("copying is not implemented yet".into()))
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
        ] {
            assert!(
                bad.parse::<Destination>().is_err(),
                "{bad} should not parse"
            );
        }
    }
}
