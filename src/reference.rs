//! Image references: `[registry/]repository[:tag][@digest]`.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use crate::error::Error;

/// Tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed image reference.
///
/// Grammar (the Docker distribution reference grammar):
///
/// ```text
/// reference  := name [ ":" tag ] [ "@" digest ]
/// name       := [ domain "/" ] path-component ( "/" path-component )*
/// domain     := a first component holding "." or ":", or "localhost"
/// path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
/// tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
/// ```
///
/// ```
/// use nix2container::reference::Reference;
/// let r: Reference = "localhost:5000/lab/hello:v1".parse().unwrap();
/// assert_eq!(r.domain(), Some("localhost:5000"));
/// assert_eq!(r.repository(), "lab/hello");
/// assert_eq!(r.tag(), Some("v1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host (and port), if the reference names one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The repository path, without the domain.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The full name: domain and repository.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{domain}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// The tag, if given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `name:tag`, with [`DEFAULT_TAG`] when no tag was given.
    pub fn name_and_tag(&self) -> String {
        format!("{}:{}", self.name(), self.tag().unwrap_or(DEFAULT_TAG))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            Error::Destination(format!(
                "invalid image reference {s:?}: {why} (expected [registry/]name[:tag][@digest], e.g. \"hello:latest\")"
            ))
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|e| invalid(&format!("bad digest: {e}")))?,
                ),
            ),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(invalid(&format!("bad tag {tag:?}")));
        }
        let (domain, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), rest)
            }
            _ => (None, name),
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(invalid(
                "the name must be lowercase letters, digits and separators (. _ __ -)",
            ));
        }
        if name.len() > 255 {
            return Err(invalid("the name is longer than 255 characters"));
        }
        Ok(Reference {
            domain: domain.map(str::to_owned),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_path_component(component: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        if !(separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-'))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let digest = "sha256:".to_owned() + &"a".repeat(64);
        // Input, then the expected (domain, repository, tag), or None.
        type Parts<'a> = Option<(Option<&'a str>, &'a str, Option<&'a str>)>;
        let cases: Vec<(String, Parts)> = vec![
            ("hello".into(), Some((None, "hello", None))),
            ("hello:latest".into(), Some((None, "hello", Some("latest")))),
            ("lab/hello:v1".into(), Some((None, "lab/hello", Some("v1")))),
            (
                "localhost/hello".into(),
                Some((Some("localhost"), "hello", None)),
            ),
            (
                "127.0.0.1:5000/lab/hello:v1".into(),
                Some((Some("127.0.0.1:5000"), "lab/hello", Some("v1"))),
            ),
            (
                "ghcr.io/a-b/c__d.e".into(),
                Some((Some("ghcr.io"), "a-b/c__d.e", None)),
            ),
            (format!("hello@{digest}"), Some((None, "hello", None))),
            ("Hello".into(), None),
            ("hello:".into(), None),
            ("hello:-x".into(), None),
            ("a/-b".into(), None),
            ("a__".into(), None),
            ("a...b".into(), None),
            ("".into(), None),
            ("hello@sha256:short".into(), None),
        ];
        for (input, expected) in cases {
            let got = input.parse::<Reference>().ok();
            let got = got.as_ref().map(|r| (r.domain(), r.repository(), r.tag()));
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for input in ["hello", "lab/hello:v1", "localhost:5000/x:y"] {
            assert_eq!(input.parse::<Reference>().unwrap().to_string(), input);
        }
        assert_eq!("x".parse::<Reference>().unwrap().name_and_tag(), "x:latest");
    }
}
