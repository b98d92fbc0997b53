//! The manifest a push sends: the image's OCI manifest, or the same image
//! described with Docker's v2s2 media types for registries and clients that
//! predate OCI.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Digest, MediaType};
use serde_json::json;

use crate::document::canonical_json;
use crate::error::{Error, Result};
use crate::hash::sha256_of;
use crate::image::Image;

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's gzip layer.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's uncompressed layer.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The media types of manifest requests' `Accept` header: every manifest
/// type, since a registry answers 404 for a manifest whose type is not
/// accepted.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The `Accept` header of manifest requests.
pub(crate) fn manifest_accept() -> String {
    MANIFEST_TYPES.join(", ")
}

/// Which manifest format a push sends (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI media types (`oci`): the image's own manifest.
    #[default]
    Oci,
    /// Docker's v2s2 media types (`v2s2`); gzip or uncompressed layers only.
    V2s2,
}

impl FromStr for ManifestFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "oci" => Ok(ManifestFormat::Oci),
            "v2s2" => Ok(ManifestFormat::V2s2),
            other => Err(Error::Invalid(format!(
                "unknown manifest format {other:?}: use \"oci\" or \"v2s2\""
            ))),
        }
    }
}

impl fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::V2s2 => "v2s2",
        })
    }
}

/// A manifest ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type: the `Content-Type` of the upload.
    pub media_type: &'static str,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Manifest {
    /// The manifest of `image` in `format`.
    pub fn of(image: &Image, format: ManifestFormat) -> Result<Manifest> {
        let bytes = match format {
            ManifestFormat::Oci => image.manifest_blob().to_vec(),
            ManifestFormat::V2s2 => docker_manifest(image)?,
        };
        Ok(Manifest {
            digest: sha256_of(&bytes),
            media_type: match format {
                ManifestFormat::Oci => OCI_MANIFEST,
                ManifestFormat::V2s2 => DOCKER_MANIFEST,
            },
            bytes,
        })
    }
}

/// The v2s2 manifest: the same config and layer blobs, Docker media types.
fn docker_manifest(image: &Image) -> Result<Vec<u8>> {
    let config = image.config_descriptor();
    let layers = image
        .layers()
        .iter()
        .map(|layer| {
            // By media type, which a pulled base layer has too (it is
            // never compressed here, so its `compression` is none).
            let media_type = match &layer.media_type {
                MediaType::ImageLayerGzip => DOCKER_LAYER_GZIP,
                MediaType::ImageLayer => DOCKER_LAYER,
                _ => {
                    return Err(Error::ZstdInDockerFormat {
                        store_path: layer.first_path().to_path_buf(),
                    });
                }
            };
            Ok(json!({
                "mediaType": media_type,
                "size": layer.size,
                "digest": layer.digest.to_string(),
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "size": config.size(),
            "digest": config.digest().to_string(),
        },
        "layers": layers,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use crate::image::fixtures::{self, CREATED};

    fn image(compression: Compression) -> (tempfile::TempDir, Image) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let layer = fixtures::layer_of(dir.path(), compression);
        (dir, fixtures::image(CREATED, vec![layer]))
    }

    #[test]
    fn oci_is_the_image_manifest() {
        let (_dir, image) = image(Compression::Zstd { level: 3 });
        let manifest = Manifest::of(&image, ManifestFormat::Oci).unwrap();
        assert_eq!(manifest.bytes, image.manifest_blob());
        assert_eq!(manifest.digest, image.manifest_digest());
        assert_eq!(manifest.media_type, OCI_MANIFEST);
    }

    #[test]
    fn v2s2_uses_docker_media_types_and_refuses_zstd() {
        for (compression, layer_type) in [
            (Compression::Gzip { level: 6 }, DOCKER_LAYER_GZIP),
            (Compression::None, DOCKER_LAYER),
        ] {
            let (_dir, image) = image(compression);
            let manifest = Manifest::of(&image, ManifestFormat::V2s2).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
            assert_eq!(value["mediaType"], DOCKER_MANIFEST);
            assert_eq!(value["config"]["mediaType"], DOCKER_CONFIG);
            assert_eq!(
                value["config"]["digest"],
                image.config_descriptor().digest().to_string()
            );
            assert_eq!(value["layers"][0]["mediaType"], layer_type);
            assert_eq!(
                value["layers"][0]["digest"],
                image.layers()[0].digest.to_string()
            );
            assert_eq!(manifest.digest, sha256_of(&manifest.bytes));
        }
        let (dir, image) = image(Compression::Zstd { level: 3 });
        match Manifest::of(&image, ManifestFormat::V2s2) {
            Err(Error::ZstdInDockerFormat { store_path }) => assert_eq!(store_path, dir.path()),
            other => panic!("expected a zstd refusal, got {other:?}"),
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            "oci".parse::<ManifestFormat>().unwrap(),
            ManifestFormat::Oci
        );
        assert_eq!(
            "v2s2".parse::<ManifestFormat>().unwrap(),
            ManifestFormat::V2s2
        );
        assert!("v2s1".parse::<ManifestFormat>().is_err());
    }
}
