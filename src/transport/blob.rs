//! Blobs as transports read them.
//!
//! Layers are regenerated from the store while they are copied, and their
//! bytes only prove right (or wrong) once the last one is out. Whatever
//! receives them must therefore be able to drop them: a temporary file that
//! is renamed only after a clean end, or an HTTP body that is aborted. A
//! [`CheckedReader`] makes that the only possible outcome: it yields exactly
//! the recorded size, reports the end of a blob only after the producer has
//! verified its digest, and otherwise fails.
//!
//! Consumers of readers (`io::copy`, an HTTP client) only pass `io::Error`s
//! on, losing the typed [`Error`] of a failed blob. The reader therefore
//! also records that error in a [`FailureSlot`] the caller keeps, and the
//! caller asks the slot what went wrong.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use oci_spec::image::Digest;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::layer::BlobReader;

/// One blob of an image, not yet read.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// What the blob is, for progress lines: `config`, `layer`, `manifest`.
    pub kind: &'static str,
    /// Its digest; also its name in archives and layouts.
    pub digest: Digest,
    /// Its size, as recorded in the image.
    pub size: u64,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// Bytes already in memory: the config and the manifest.
    Bytes(Vec<u8>),
    /// A layer as a registry stores it, from [`Image::blob`].
    LayerBlob,
    /// The uncompressed tar of the layer at this index.
    LayerTar(usize),
}

impl Blob {
    /// The blobs of an OCI image, each once, in an order where nothing
    /// refers to a blob that comes later: layers, config, manifest.
    pub fn oci(image: &Image) -> Vec<Blob> {
        let layers = image.layers().iter().map(|layer| Blob {
            kind: "layer",
            digest: layer.digest.clone(),
            size: layer.size,
            source: Source::LayerBlob,
        });
        let manifest = Blob {
            kind: "manifest",
            digest: image.manifest_digest(),
            size: image.manifest_blob().len() as u64,
            source: Source::Bytes(image.manifest_blob().to_vec()),
        };
        let mut blobs = unique(layers);
        blobs.extend([Blob::config(image), manifest]);
        blobs
    }

    /// The image config.
    pub fn config(image: &Image) -> Blob {
        let descriptor = image.config_descriptor();
        Blob {
            kind: "config",
            digest: descriptor.digest().clone(),
            size: descriptor.size(),
            source: Source::Bytes(image.config_blob().to_vec()),
        }
    }

    /// The uncompressed layer tars, bottom first, each diff_id once.
    pub fn layer_tars(image: &Image) -> Vec<Blob> {
        unique(
            image
                .layers()
                .iter()
                .enumerate()
                .map(|(index, layer)| Blob {
                    kind: "layer",
                    digest: layer.diff_id.clone(),
                    size: layer.tar_size,
                    source: Source::LayerTar(index),
                }),
        )
    }

    /// Starts producing the blob's bytes.
    pub fn open(&self, image: &Image, failure: &FailureSlot) -> Result<CheckedReader> {
        let inner: Box<dyn Read + Send> = match &self.source {
            Source::Bytes(bytes) => Box::new(io::Cursor::new(bytes.clone())),
            Source::LayerBlob => image.blob(&self.digest)?,
            Source::LayerTar(index) => Box::new(image.layers()[*index].tar_reader()),
        };
        Ok(CheckedReader {
            inner,
            digest: self.digest.clone(),
            size: self.size,
            remaining: self.size,
            failure: failure.clone(),
        })
    }
}

/// Drops blobs whose digest came earlier: an image may repeat a layer.
fn unique(blobs: impl Iterator<Item = Blob>) -> Vec<Blob> {
    let mut seen = BTreeSet::new();
    blobs
        .filter(|blob| seen.insert(blob.digest.to_string()))
        .collect()
}

/// Where the readers of one copy leave the typed error of a failure.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureSlot(Arc<Mutex<Option<Error>>>);

impl FailureSlot {
    /// Keeps `error` (unless an earlier one is kept) and returns the
    /// `io::Error` a reader hands to its consumer.
    pub fn record(&self, error: Error) -> io::Error {
        let message = error.to_string();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
        io::Error::other(message)
    }

    /// The failure a reader recorded, if any.
    pub fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// The failure a reader recorded or, when none did, `otherwise`: then
    /// the problem was on the side the bytes were going to.
    pub fn error_or(&self, otherwise: Error) -> Error {
        self.take().unwrap_or(otherwise)
    }
}

/// A blob's bytes: exactly `size` of them, then an end that is only
/// reported once the producer has verified the digest.
pub(crate) struct CheckedReader {
    inner: Box<dyn Read + Send>,
    digest: Digest,
    size: u64,
    remaining: u64,
    failure: FailureSlot,
}

impl CheckedReader {
    fn read_checked(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 {
            return self.expect_end();
        }
        let limit = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self
            .inner
            .read(&mut buf[..limit])
            .map_err(BlobReader::into_error)?
        {
            0 => Err(self.size_mismatch(self.size - self.remaining)),
            n => {
                self.remaining -= n as u64;
                Ok(n)
            }
        }
    }

    /// Reads past the recorded size: the producer's end, its verdict on the
    /// digest, or bytes that should not be there.
    fn expect_end(&mut self) -> Result<usize> {
        let extra = io::copy(&mut self.inner, &mut io::sink()).map_err(BlobReader::into_error)?;
        match extra {
            0 => Ok(0),
            extra => Err(self.size_mismatch(self.size + extra)),
        }
    }

    fn size_mismatch(&self, found: u64) -> Error {
        Error::BlobSizeMismatch {
            digest: self.digest.to_string(),
            expected: self.size,
            found,
        }
    }
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_checked(buf).map_err(|e| self.failure.record(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use crate::image::fixtures::{self, CREATED};

    /// An image holding the gzip layer of `root` twice.
    fn image_of(root: &std::path::Path) -> Image {
        let layer = fixtures::layer_of(root, Compression::Gzip { level: 6 });
        fixtures::image(CREATED, vec![layer.clone(), layer])
    }

    fn read_all(blob: &Blob, image: &Image) -> (io::Result<Vec<u8>>, FailureSlot) {
        let failure = FailureSlot::default();
        let mut bytes = Vec::new();
        let result = blob
            .open(image, &failure)
            .unwrap()
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        (result, failure)
    }

    #[test]
    fn blobs_are_compressed_and_tars_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![b'x'; 100_000]).unwrap();
        let image = image_of(dir.path());
        let layer = &image.layers()[0];
        let blobs = Blob::oci(&image);
        let kinds: Vec<_> = blobs.iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            ["layer", "config", "manifest"],
            "a repeated layer is listed once"
        );
        let tars = Blob::layer_tars(&image);
        assert_eq!(tars.len(), 1);
        for (blob, digest, size) in [
            (&blobs[0], &layer.digest, layer.size),
            (&tars[0], &layer.diff_id, layer.tar_size),
        ] {
            assert_eq!((&blob.digest, blob.size), (digest, size));
            let (bytes, _) = read_all(blob, &image);
            assert_eq!(crate::hash::sha256_of(&bytes.unwrap()), *digest);
        }
    }

    #[test]
    fn failures_keep_their_type() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "same size").unwrap();
        let image = image_of(dir.path());
        let layer = &Blob::layer_tars(&image)[0];
        let (bytes, _) = read_all(layer, &image);
        assert_eq!(bytes.unwrap().len() as u64, layer.size);

        // Same size, other bytes: the digest check fails at the end.
        std::fs::write(dir.path().join("f"), "SAME SIZE").unwrap();
        let (result, failure) = read_all(layer, &image);
        assert!(result.is_err());
        let error = failure.error_or(Error::Invalid("nothing recorded".into()));
        assert!(matches!(error, Error::DigestMismatch { .. }), "got {error}");

        // A wrong recorded size is caught even when the digest is right.
        std::fs::write(dir.path().join("f"), "same size").unwrap();
        for recorded in [layer.size - 1, layer.size + 1] {
            let wrong = Blob {
                size: recorded,
                ..layer.clone()
            };
            let (result, failure) = read_all(&wrong, &image);
            assert!(result.is_err());
            match failure.error_or(Error::Invalid("nothing recorded".into())) {
                Error::BlobSizeMismatch {
                    expected, found, ..
                } => assert_eq!((expected, found), (recorded, layer.size)),
                other => panic!("expected a size mismatch, got {other}"),
            }
        }
    }
}
