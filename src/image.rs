//! An image JSON opened for transport: its config blob, manifest and blobs.
//!
//! ```no_run
//! use std::io::Read;
//! use nix2container::image::Image;
//!
//! # fn main() -> nix2container::Result<()> {
//! let image = Image::from_file("result".as_ref())?;
//! println!("config {}", image.config_descriptor().digest());
//! println!("manifest {}", image.manifest_digest());
//! for layer in image.layers() {
//!     // Regenerates the layer from the store, checking its digest.
//!     let mut blob = image.blob(&layer.digest)?;
//!     let copied = std::io::copy(&mut blob, &mut std::io::sink())
//!         .map_err(nix2container::layer::BlobReader::into_error)?;
//!     assert_eq!(copied, layer.size);
//! }
//! # Ok(())
//! # }
//! ```

use std::io::Read;
use std::path::Path;

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageConfigurationBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, RootFsBuilder,
};

use crate::document::{ImageDocument, canonical_json};
use crate::error::{Error, Result};
use crate::hash::sha256_of;
use crate::layer::Layer;

/// An image ready to be copied: the document plus the config blob and the
/// manifest derived from it.
#[derive(Debug, Clone)]
pub struct Image {
    document: ImageDocument,
    config_blob: Vec<u8>,
    manifest_blob: Vec<u8>,
}

impl Image {
    /// Opens an image JSON written by `buildImage`.
    pub fn from_file(path: &Path) -> Result<Image> {
        Ok(Image::from_document(ImageDocument::from_file(path)?))
    }

    /// Derives the config blob and manifest of `document`.
    pub fn from_document(document: ImageDocument) -> Image {
        let config_blob = canonical_json(&image_configuration(&document));
        let config = Descriptor::new(
            MediaType::ImageConfig,
            config_blob.len() as u64,
            sha256_of(&config_blob),
        );
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(
                document
                    .layers
                    .iter()
                    .map(layer_descriptor)
                    .collect::<Vec<_>>(),
            )
            .build()
            .expect("every required manifest field is set");
        let manifest_blob = canonical_json(&manifest);
        Image {
            document,
            config_blob,
            manifest_blob,
        }
    }

    /// The document the image was opened from.
    pub fn document(&self) -> &ImageDocument {
        &self.document
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.document.layers
    }

    /// The OCI image config blob: canonical JSON with sorted keys.
    pub fn config_blob(&self) -> &[u8] {
        &self.config_blob
    }

    /// The descriptor of the config blob.
    pub fn config_descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::ImageConfig,
            self.config_blob.len() as u64,
            sha256_of(&self.config_blob),
        )
    }

    /// The OCI image manifest, as canonical JSON.
    pub fn manifest_blob(&self) -> &[u8] {
        &self.manifest_blob
    }

    /// The digest of [`Image::manifest_blob`].
    pub fn manifest_digest(&self) -> Digest {
        sha256_of(&self.manifest_blob)
    }

    /// The descriptor of the manifest.
    pub fn manifest_descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::ImageManifest,
            self.manifest_blob.len() as u64,
            self.manifest_digest(),
        )
    }

    /// A reader over the blob with `digest`: the config, or a layer
    /// regenerated from the store and checked against its recorded digest.
    pub fn blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        if *digest == sha256_of(&self.config_blob) {
            return Ok(Box::new(std::io::Cursor::new(self.config_blob.clone())));
        }
        let layer = self
            .layers()
            .iter()
            .find(|layer| layer.digest == *digest)
            .ok_or_else(|| Error::UnknownBlob(digest.to_string()))?;
        Ok(Box::new(layer.blob_reader()))
    }
}

fn layer_descriptor(layer: &Layer) -> Descriptor {
    Descriptor::new(layer.media_type.clone(), layer.size, layer.digest.clone())
}

fn image_configuration(document: &ImageDocument) -> ImageConfiguration {
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            document
                .layers
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("every required rootfs field is set");
    let mut builder = ImageConfigurationBuilder::default()
        .created(document.created.clone())
        .architecture(document.architecture.as_str())
        .os(document.os.as_str())
        .config(document.config.clone())
        .rootfs(rootfs)
        .history(document.config_history());
    if let Some(variant) = &document.variant {
        builder = builder.variant(variant.clone());
    }
    builder.build().expect("every required config field is set")
}

/// Images for the unit tests of the modules that copy them.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::Path;

    use super::Image;
    use crate::compression::Compression;
    use crate::document::{IMAGE_VERSION, ImageDocument};
    use crate::layer::{Layer, default_history};
    use crate::tar::PathSpec;

    /// The `created` of fixture images, unless a test needs two different ones.
    pub(crate) const CREATED: &str = "1970-01-01T00:00:01Z";

    /// An amd64 Linux image of `layers`, with an empty config.
    pub(crate) fn image(created: &str, layers: Vec<Layer>) -> Image {
        Image::from_document(ImageDocument {
            version: IMAGE_VERSION,
            helper: "nix2container".into(),
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            created: created.into(),
            config: Default::default(),
            layers,
            history: None,
        })
    }

    /// The layer holding `root` at its own path.
    pub(crate) fn layer_of(root: &Path, compression: Compression) -> Layer {
        Layer::compute(vec![PathSpec::plain(root)], default_history(), compression).unwrap()
    }
}
