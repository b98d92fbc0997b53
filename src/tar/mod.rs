//! Layer tarballs, regenerated on demand from store paths.
//!
//! A layer is described by a list of [`PathSpec`]s. The tar they produce is
//! defined byte for byte (see [`header`] and [`tree`]) and matches upstream
//! nix2container for the same inputs, so the digest computed at build time
//! holds when the same bytes are produced again at push time.

pub mod header;
mod tree;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use tree::{Tree, write_tar};

/// One root of a layer: a path walked recursively, with its options.
///
/// This is the element of the `--paths` file and of a layer's `paths`:
/// `{"path": "/nix/store/…", "rewrite": {"regex", "repl"}, "perms": [ … ]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    /// The path to walk, normally a store path. A relative path gives
    /// relative names in the tar.
    pub path: PathBuf,
    /// Rewrites every walked path before it becomes a tar name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Ownership and mode overrides, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perms: Vec<Perm>,
}

impl PathSpec {
    /// A spec for a path with no options.
    pub fn plain(path: impl Into<PathBuf>) -> Self {
        PathSpec {
            path: path.into(),
            rewrite: None,
            perms: Vec::new(),
        }
    }
}

/// A regex replacement applied to the source path of every walked file.
///
/// `repl` may use `$1` or `${name}` to refer to groups. A path that becomes
/// empty is left out of the tar (this is how copyToRoot drops the store path
/// itself while keeping its content at `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Matched against the source path, unanchored.
    pub regex: String,
    /// The replacement.
    pub repl: String,
}

/// Ownership and mode for the files whose source path matches `regex`.
///
/// As upstream: the regex is matched unanchored against the *source* path
/// (`/nix/store/…-x/etc/passwd`); `uid` and `gid` are always applied (0 when
/// absent); `uname`, `gname` and `mode` only when given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perm {
    /// Matched against the source path, unanchored.
    pub regex: String,
    /// Replaces the whole mode (permission and setuid/setgid/sticky bits).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_mode"
    )]
    pub mode: Option<Mode>,
    /// Numeric owner.
    #[serde(default)]
    pub uid: u32,
    /// Numeric group.
    #[serde(default)]
    pub gid: u32,
    /// Owner name; empty keeps `root`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uname: String,
    /// Group name; empty keeps `root`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gname: String,
}

/// Permission bits plus setuid, setgid and sticky, written as an octal
/// string such as `"0755"` or `"1777"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    /// The bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses 1 to 4 octal digits, optionally after a `0o` prefix or a
    /// leading zero: `"755"`, `"0755"`, `"4755"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let digits = if digits.len() > 4 {
            digits.strip_prefix('0').unwrap_or(digits)
        } else {
            digits
        };
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(format!(
                "invalid mode {s:?}: expected up to four octal digits such as \"0755\" or \"1777\""
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(Mode)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

mod optional_mode {
    use super::Mode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
        match mode {
            Some(mode) => s.serialize_str(&mode.to_string()),
            None => s.serialize_none(),
        }
    }

    /// An empty string means "no mode", as upstream's perms files use it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parsing() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0755", Some(0o755)),
            ("755", Some(0o755)),
            ("4755", Some(0o4755)),
            ("01777", Some(0o1777)),
            ("0o644", Some(0o644)),
            ("", None),
            ("0855", None),
            ("17777", None),
            ("-644", None),
            ("rwx", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                input.parse::<Mode>().ok().map(Mode::bits),
                *expected,
                "mode {input:?}"
            );
        }
    }

    #[test]
    fn path_spec_json_round_trip() {
        let json = r#"{"path":"/nix/store/x","rewrite":{"regex":"^/nix/store/x","repl":""},"perms":[{"regex":"tmp$","mode":"1777","uid":0,"gid":0}]}"#;
        let spec: PathSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.perms[0].mode, Some(Mode(0o1777)));
        assert_eq!(serde_json::to_string(&spec).unwrap(), json);
        let empty_mode: Perm = serde_json::from_str(r#"{"regex":"x","mode":""}"#).unwrap();
        assert_eq!(empty_mode.mode, None);
        assert!(serde_json::from_str::<PathSpec>(r#"{"path":"/x","perm":[]}"#).is_err());
    }
}
