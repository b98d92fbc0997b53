//! Where a push goes: `REGISTRY/NAME[:TAG|@DIGEST]`, as skopeo's `docker://`
//! transport names it.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use crate::error::{Error, Result};
use crate::reference::{DEFAULT_TAG, Reference};

/// The registry a name without a domain refers to, as Docker and skopeo
/// decide.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that serves Docker Hub's registry API.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Other names of Docker Hub that users write.
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// The namespace of Docker Hub's official images: `hello` is
/// `docker.io/library/hello`.
const DOCKER_HUB_OFFICIAL: &str = "library";

/// What a manifest is pushed as: a tag, or its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `:TAG` ([`DEFAULT_TAG`] when the reference names neither).
    Tag(String),
    /// `@DIGEST`: the manifest's digest must be this one.
    Digest(Digest),
}

/// A normalised registry reference.
///
/// Grammar: `[domain "/"] path [":" tag | "@" digest]`, with the domain and
/// path of [`Reference`]. A name without a domain is on Docker Hub
/// (`docker.io`), and a one-component name there is an official image
/// (`library/NAME`), as in Docker and skopeo. A reference may name a tag or
/// a digest, not both.
///
/// ```
/// use nix2container::registry::{RegistryReference, Target};
/// let r: RegistryReference = "hello".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/hello:latest");
/// assert_eq!(r.host(), "registry-1.docker.io");
/// let r: RegistryReference = "localhost:5000/lab/hello:v1".parse().unwrap();
/// assert_eq!((r.registry(), r.repository()), ("localhost:5000", "lab/hello"));
/// assert_eq!(r.target(), &Target::Tag("v1".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryReference {
    registry: String,
    repository: String,
    target: Target,
}

impl RegistryReference {
    /// The registry as written (`docker.io`, `127.0.0.1:5000`): the key for
    /// credentials, certificates and `--insecure`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` to connect to: the registry, except for Docker Hub.
    pub fn host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_HOST,
            other => other,
        }
    }

    /// The repository path inside the registry (`library/hello`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag or digest the manifest is pushed as.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The last component of a manifest URL: the tag or the digest.
    pub fn manifest_reference(&self) -> String {
        match &self.target {
            Target::Tag(tag) => tag.clone(),
            Target::Digest(digest) => digest.to_string(),
        }
    }
}

/// Maps Docker Hub's aliases to [`DOCKER_HUB`].
pub(crate) fn canonical_registry(registry: &str) -> &str {
    if DOCKER_HUB_ALIASES.contains(&registry) {
        DOCKER_HUB
    } else {
        registry
    }
}

impl FromStr for RegistryReference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let reference: Reference = s.parse()?;
        let target = match (reference.tag(), reference.digest()) {
            (Some(_), Some(_)) => {
                return Err(Error::Destination(format!(
                    "invalid registry reference {s:?}: it names both a tag and a digest; \
                     give one of them"
                )));
            }
            (Some(tag), None) => Target::Tag(tag.to_owned()),
            (None, Some(digest)) => Target::Digest(digest.clone()),
            (None, None) => Target::Tag(DEFAULT_TAG.to_owned()),
        };
        let registry = canonical_registry(reference.domain().unwrap_or(DOCKER_HUB)).to_owned();
        let repository = match reference.repository() {
            name if registry == DOCKER_HUB && !name.contains('/') => {
                format!("{DOCKER_HUB_OFFICIAL}/{name}")
            }
            name => name.to_owned(),
        };
        Ok(RegistryReference {
            registry,
            repository,
            target,
        })
    }
}

impl fmt::Display for RegistryReference {
    /// The normalised form: `docker.io/library/hello:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.target {
            Target::Tag(tag) => write!(f, ":{tag}"),
            Target::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases: Vec<(String, &str, &str, &str, String)> = vec![
            (
                "hello".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/hello",
                "docker.io/library/hello:latest".into(),
            ),
            (
                "lab/hello:v1".into(),
                "docker.io",
                "registry-1.docker.io",
                "lab/hello",
                "docker.io/lab/hello:v1".into(),
            ),
            (
                "index.docker.io/hello".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/hello",
                "docker.io/library/hello:latest".into(),
            ),
            (
                "127.0.0.1:5000/lab/hello:v1".into(),
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "lab/hello",
                "127.0.0.1:5000/lab/hello:v1".into(),
            ),
            (
                "localhost/x".into(),
                "localhost",
                "localhost",
                "x",
                "localhost/x:latest".into(),
            ),
            (
                format!("ghcr.io/o/r@{digest}"),
                "ghcr.io",
                "ghcr.io",
                "o/r",
                format!("ghcr.io/o/r@{digest}"),
            ),
        ];
        for (input, registry, host, repository, display) in cases {
            let r: RegistryReference = input.parse().unwrap();
            assert_eq!(
                (r.registry(), r.host(), r.repository(), r.to_string()),
                (registry, host, repository, display),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (bad, message) in [
            (format!("r.io/x:v1@{digest}"), "both a tag and a digest"),
            ("r.io/X".into(), "lowercase"),
            ("r.io/x:".into(), "bad tag"),
            ("".into(), "invalid image reference"),
        ] {
            let error = bad.parse::<RegistryReference>().unwrap_err().to_string();
            assert!(error.contains(message), "{bad}: {error}");
        }
    }
}
