//! The JSON documents that carry layers and images from Nix builds to
//! transports. `docs/json-format.md` describes every field.

use std::path::{Path, PathBuf};

use oci_spec::image::{Config, History};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::Layer;

/// Version of the layers document this build writes and reads.
pub const LAYERS_VERSION: u64 = 1;

/// Version of the image document this build writes and reads.
pub const IMAGE_VERSION: u64 = 1;

/// Name of the layers document inside a layer derivation's output.
pub const LAYERS_FILE_NAME: &str = "layers.json";

/// What a `buildLayer` derivation writes to `$out/layers.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayersDocument {
    /// Always [`LAYERS_VERSION`].
    pub version: u64,
    /// The layers, bottom first. Empty when every path was already in a
    /// parent layer.
    pub layers: Vec<Layer>,
    /// Outputs of the layer derivations this one was deduplicated against
    /// (its `layers` argument). Their own parents are found in their
    /// documents, so the whole ancestry stays reachable and alive.
    pub parents: Vec<PathBuf>,
}

impl LayersDocument {
    /// Reads `<output>/layers.json`.
    pub fn from_output(output: &Path) -> Result<LayersDocument> {
        read_versioned(
            &output.join(LAYERS_FILE_NAME),
            "layers JSON",
            LAYERS_VERSION,
        )
    }
}

/// What a `buildImage` derivation writes to `$out`: everything a transport
/// needs to produce the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDocument {
    /// Always [`IMAGE_VERSION`].
    pub version: u64,
    /// The nix2container executable that built this document. Compressed
    /// digests depend on its version, so transports should be this one.
    pub helper: PathBuf,
    /// OCI architecture, e.g. `amd64`.
    pub architecture: String,
    /// OCI operating system, e.g. `linux`.
    pub os: String,
    /// OCI CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// RFC 3339 creation time of the image.
    pub created: String,
    /// The OCI image config (`Entrypoint`, `Env`, …).
    pub config: Config,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The config's history, when it is not one entry per layer: an image
    /// built on a base image keeps the base's history, whose entries may
    /// include `empty_layer` ones (a `CMD` or `ENV` of a Dockerfile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
}

impl ImageDocument {
    /// The history of the image config: `history` if set, else each
    /// layer's entry.
    pub fn config_history(&self) -> Vec<History> {
        match &self.history {
            Some(history) => history.clone(),
            None => self.layers.iter().map(|l| l.history.clone()).collect(),
        }
    }

    /// Reads an image JSON, checking its version first so that a document
    /// from another nix2container version gets a clear message.
    pub fn from_file(path: &Path) -> Result<ImageDocument> {
        read_versioned(path, "image JSON", IMAGE_VERSION)
    }
}

fn read_versioned<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    supported: u64,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    let json = |source| Error::Json {
        what,
        path: path.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json)?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(found) if found == supported => serde_json::from_value(value).map_err(json),
        Some(found) => Err(Error::UnsupportedVersion {
            what,
            path: path.to_path_buf(),
            found,
            supported,
        }),
        None => Err(Error::Invalid(format!(
            "{} is not a nix2container {what}: it has no numeric \"version\" field",
            path.display()
        ))),
    }
}

/// Serialises `value` as compact JSON with the keys of every object sorted,
/// so that equal values always give equal bytes (and equal digests), even
/// for types that hold hash maps.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("documents serialise to JSON");
    serde_json::to_vec(&sort_keys(value)).expect("a JSON value serialises")
}

/// Like [`canonical_json`], indented for people to read.
pub fn canonical_json_pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("documents serialise to JSON");
    let mut bytes = serde_json::to_vec_pretty(&sort_keys(value)).expect("a JSON value serialises");
    bytes.push(b'\n');
    bytes
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let value = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        assert_eq!(
            canonical_json(&value),
            br#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn versions_are_checked_before_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.json");
        let cases: &[(&str, &str)] = &[
            (
                r#"{"version": 2, "whatever": true}"#,
                "has image JSON version 2",
            ),
            (r#"{"layers": []}"#, "no numeric \"version\""),
            ("{not json", "is not a valid image JSON"),
            (r#"{"version": 1}"#, "missing field"),
        ];
        for (content, message) in cases {
            std::fs::write(&path, content).unwrap();
            let err = ImageDocument::from_file(&path).unwrap_err();
            let err = match std::error::Error::source(&err) {
                Some(source) => format!("{err}: {source}"),
                None => err.to_string(),
            };
            assert!(err.contains(message), "{content}: {err}");
        }
    }
}
