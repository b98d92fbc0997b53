//! Layers: a list of store paths, and the digests of the tar they produce.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use oci_spec::image::{Digest, History, MediaType};
use serde::{Deserialize, Serialize};

use crate::compression::Compression;

use crate::error::{Error, Result};
use crate::hash::HashingWriter;
use crate::tar::{PathSpec, write_tar};

/// Size of the chunks a regenerated blob is handed over in.
const STREAM_CHUNK_SIZE: usize = 256 * 1024;

/// Chunks buffered between the thread producing a blob and its reader.
const STREAM_CHUNKS_IN_FLIGHT: usize = 4;

/// One layer of an image, as recorded in layer and image JSON.
///
/// The blob fields (`digest`, `size`, `media_type`) describe the bytes a
/// registry stores; `diff_id` and `tar_size` describe the uncompressed tar.
/// For an uncompressed layer both pairs are equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Digest of the blob (the tar, possibly compressed).
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: MediaType,
    /// How the blob is compressed; absent for an uncompressed layer.
    #[serde(default, skip_serializing_if = "Compression::is_none")]
    pub compression: Compression,
    /// Digest of the uncompressed tar: the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Size of the uncompressed tar in bytes.
    pub tar_size: u64,
    /// The roots the tar is made of, with their options.
    pub paths: Vec<PathSpec>,
    /// The tar itself, stored by a non-reproducible layer
    /// (`reproducible = false`): transports read it instead of
    /// regenerating the tar from `paths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_path: Option<PathBuf>,
    /// The blob itself, as pulled from a registry: a base-image layer
    /// (`pullImage`). Transports read it, checking its digest, and
    /// decompress it where the tar is wanted; `paths` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_path: Option<PathBuf>,
    /// Where a base-image layer was pulled from (`registry/repository`): a
    /// push to another repository of that registry mounts it from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The image history entry for this layer.
    pub history: History,
}

impl Layer {
    /// Computes the layer for `paths` by streaming its tar through a hasher,
    /// and through the compressor and a second hasher in the same pass;
    /// nothing is written to disk.
    pub fn compute(
        paths: Vec<PathSpec>,
        history: History,
        compression: Compression,
    ) -> Result<Layer> {
        let (diff_id, tar_size, digest, size) = digests(TarSource::Paths(&paths), &compression)?;
        Ok(Layer {
            digest,
            size,
            media_type: compression.media_type(),
            compression,
            diff_id,
            tar_size,
            paths,
            tar_path: None,
            blob_path: None,
            origin: None,
            history,
        })
    }

    /// Like [`Layer::compute`], and also stores the tar in `directory` as
    /// `<hex digest>.tar`, which the layer then points to: transports read
    /// that file, not the store paths (`reproducible = false`). Only the
    /// tar of `paths` is stored (upstream #219 stored every path of the
    /// derivation in each of its layers).
    pub fn compute_stored(
        paths: Vec<PathSpec>,
        history: History,
        compression: Compression,
        directory: &Path,
    ) -> Result<Layer> {
        let partial = tempfile::Builder::new()
            .prefix(".layer-")
            .suffix(".tar")
            .tempfile_in(directory)
            .map_err(Error::io("creating a temporary file in", directory))?;
        let mut tar = HashingWriter::new(io::BufWriter::new(partial));
        write_tar(&paths, &mut tar)?;
        let (diff_id, tar_size, file) = tar.finish();
        let partial = file
            .into_inner()
            .map_err(|e| Error::io("writing a layer tar in", directory)(e.into_error()))?;
        let stored = directory.join(format!("{}.tar", diff_id.digest()));
        partial
            .persist(&stored)
            .map_err(|e| Error::io("writing", &stored)(e.error))?;
        let (found, _, digest, size) = digests(TarSource::File(&stored), &compression)?;
        debug_assert_eq!(found, diff_id);
        Ok(Layer {
            digest,
            size,
            media_type: compression.media_type(),
            compression,
            diff_id,
            tar_size,
            paths,
            tar_path: Some(stored),
            blob_path: None,
            origin: None,
            history,
        })
    }

    /// Where the tar's bytes come from: the stored tar, or the paths.
    fn source(&self) -> TarSource<'_> {
        match &self.tar_path {
            Some(path) => TarSource::File(path),
            None => TarSource::Paths(&self.paths),
        }
    }

    /// The store path that best identifies the layer in messages.
    pub fn first_path(&self) -> &Path {
        if let Some(blob) = &self.blob_path {
            return blob;
        }
        self.paths
            .first()
            .map_or(Path::new("(empty layer)"), |p| p.path.as_path())
    }

    /// Writes the uncompressed tar to `out`, failing with
    /// [`Error::DigestMismatch`] when it does not hash to `diff_id`. The
    /// bytes are written before the check can fail, so callers must treat
    /// what they wrote as incomplete until this returns `Ok`.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<()> {
        if let Some(blob) = &self.blob_path {
            return self.write_pulled_tar(blob, out);
        }
        let (found, _, _) = produce(self.source(), &Compression::None, out)?;
        self.check(&self.diff_id, found)
    }

    /// Writes the blob (the tar, compressed as recorded) to `out`, checking
    /// both the tar's and the blob's digests, with the same caveat as
    /// [`Layer::write_tar`].
    pub fn write_blob<W: Write>(&self, out: W) -> Result<()> {
        if let Some(blob) = &self.blob_path {
            return self.write_pulled_blob(blob, out);
        }
        if self.compression.is_none() {
            // The blob is the tar: one hash checks both digests.
            self.write_tar(out)?;
            return self.check(&self.digest, self.diff_id.clone());
        }
        let (diff_id, _, blob) =
            produce(self.source(), &self.compression, HashingWriter::new(out))?;
        self.check(&self.diff_id, diff_id)?;
        self.check(&self.digest, blob.finish().0)
    }

    fn check(&self, expected: &Digest, found: Digest) -> Result<()> {
        if found == *expected {
            return Ok(());
        }
        Err(Error::DigestMismatch {
            store_path: self.first_path().to_path_buf(),
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }

    /// A reader over the uncompressed tar, produced on another thread. The
    /// reader fails instead of reaching the end when the bytes do not match
    /// `diff_id`.
    pub fn tar_reader(&self) -> BlobReader {
        let layer = self.clone();
        BlobReader::spawn(move |out| layer.write_tar(out))
    }

    /// A reader over the blob as a registry stores it, verified like
    /// [`Layer::tar_reader`].
    pub fn blob_reader(&self) -> BlobReader {
        let layer = self.clone();
        BlobReader::spawn(move |out| layer.write_blob(out))
    }
}

/// A blob being produced on another thread.
///
/// Errors of the producer (a missing store path, a digest mismatch) surface
/// as an I/O error of kind `Other` whose inner error is the [`Error`]; use
/// [`BlobReader::into_error`] to get it back.
pub struct BlobReader {
    chunks: Receiver<Result<Vec<u8>>>,
    current: io::Cursor<Vec<u8>>,
}

impl BlobReader {
    fn spawn(produce: impl FnOnce(&mut ChunkWriter) -> Result<()> + Send + 'static) -> BlobReader {
        let (sender, chunks) = sync_channel(STREAM_CHUNKS_IN_FLIGHT);
        thread::spawn(move || {
            let mut writer = ChunkWriter {
                sender,
                buffer: Vec::with_capacity(STREAM_CHUNK_SIZE),
            };
            let result = produce(&mut writer).and_then(|()| writer.flush_chunk());
            if let Err(e) = result {
                // The reader may be gone already; nobody is left to tell.
                let _ = writer.sender.send(Err(e));
            }
        });
        BlobReader {
            chunks,
            current: io::Cursor::new(Vec::new()),
        }
    }

    /// Turns an error returned by [`Read::read`] back into the library error
    /// it carries.
    pub fn into_error(error: io::Error) -> Error {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<ErrorCarrier>())
        {
            Some(_) => {
                *error
                    .into_inner()
                    .expect("checked above")
                    .downcast::<ErrorCarrier>()
                    .expect("checked above")
                    .0
            }
            None => Error::Output(error),
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = io::Cursor::new(chunk),
                Ok(Err(e)) => return Err(io::Error::other(ErrorCarrier(Box::new(e)))),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// An [`Error`] travelling inside an `io::Error`.
#[derive(Debug)]
struct ErrorCarrier(Box<Error>);

impl std::fmt::Display for ErrorCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ErrorCarrier {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

struct ChunkWriter {
    sender: SyncSender<Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(STREAM_CHUNK_SIZE));
        self.sender.send(Ok(chunk)).map_err(|_| {
            Error::Output(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "blob reader dropped",
            ))
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(STREAM_CHUNK_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == STREAM_CHUNK_SIZE {
            self.flush_chunk()
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "blob reader dropped"))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes of a layer's tar.
#[derive(Clone, Copy)]
enum TarSource<'a> {
    /// Regenerated from these roots.
    Paths(&'a [PathSpec]),
    /// Read from a stored tar.
    File(&'a Path),
}

/// Writes the tar through `compression` into `out`; returns the tar's
/// digest and size, and `out`.
fn produce<W: Write>(
    source: TarSource<'_>,
    compression: &Compression,
    out: W,
) -> Result<(Digest, u64, W)> {
    let mut tar = HashingWriter::new(compression.encoder(out)?);
    match source {
        TarSource::Paths(paths) => write_tar(paths, &mut tar)?,
        TarSource::File(path) => {
            let mut file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
            let mut buffer = vec![0; STREAM_CHUNK_SIZE];
            loop {
                let n = file.read(&mut buffer).map_err(Error::io("reading", path))?;
                if n == 0 {
                    break;
                }
                tar.write_all(&buffer[..n]).map_err(Error::Output)?;
            }
            // As `write_tar` does; a flush never changes compressed bytes.
            tar.flush().map_err(Error::Output)?;
        }
    }
    let (digest, size, encoder) = tar.finish();
    Ok((digest, size, encoder.finish()?))
}

/// The tar's digest and size and the blob's, computed in one pass and
/// written nowhere. An uncompressed blob is the tar, so it is hashed once.
fn digests(source: TarSource<'_>, compression: &Compression) -> Result<(Digest, u64, Digest, u64)> {
    if compression.is_none() {
        let (diff_id, size, _) = produce(source, compression, io::sink())?;
        return Ok((diff_id.clone(), size, diff_id, size));
    }
    let (diff_id, tar_size, blob) = produce(source, compression, HashingWriter::new(io::sink()))?;
    let (digest, size, _) = blob.finish();
    Ok((diff_id, tar_size, digest, size))
}

/// The history entry upstream gives every layer by default.
pub fn default_history() -> History {
    let mut history = History::default();
    history.set_created_by(Some("nix2container".to_owned()));
    history
}

/// Reads a `--paths` file: a JSON list of [`PathSpec`]s.
pub fn read_path_specs(path: &Path) -> Result<Vec<PathSpec>> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "paths file (a JSON list of {\"path\", \"rewrite\"?, \"perms\"?})",
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored tar is what transports read, and only this layer's paths
    /// are in it (upstream #219).
    #[test]
    fn stored_tars_are_read_instead_of_the_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, out) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("out"),
        );
        for (path, content) in [(&a, "a"), (&b, "b")] {
            std::fs::create_dir_all(path).unwrap();
            std::fs::write(path.join("f"), content).unwrap();
        }
        std::fs::create_dir_all(&out).unwrap();
        let compression = Compression::Gzip { level: 6 };
        let stored = [&a, &b].map(|p| {
            Layer::compute_stored(
                vec![PathSpec::plain(p)],
                default_history(),
                compression,
                &out,
            )
            .unwrap()
        });
        let computed =
            Layer::compute(vec![PathSpec::plain(&a)], default_history(), compression).unwrap();
        assert_eq!(stored[0].digest, computed.digest);
        assert_eq!(stored[0].diff_id, computed.diff_id);
        assert_ne!(stored[0].diff_id, stored[1].diff_id);
        let tar_path = stored[0].tar_path.clone().unwrap();
        assert_eq!(
            tar_path,
            out.join(format!("{}.tar", computed.diff_id.digest()))
        );
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);

        // The store path may change; the stored tar is what counts.
        std::fs::write(a.join("f"), "changed").unwrap();
        let mut blob = Vec::new();
        stored[0].blob_reader().read_to_end(&mut blob).unwrap();
        assert_eq!(crate::hash::sha256_of(&blob), stored[0].digest);
        let mut tar = Vec::new();
        stored[0].tar_reader().read_to_end(&mut tar).unwrap();
        assert_eq!(tar, std::fs::read(&tar_path).unwrap());
    }

    #[test]
    fn reader_streams_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 600_000]).unwrap();
        let layer = Layer::compute(
            vec![PathSpec::plain(dir.path())],
            default_history(),
            Compression::Gzip { level: 6 },
        )
        .unwrap();
        let mut bytes = Vec::new();
        layer.tar_reader().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, layer.tar_size);
        assert_eq!(crate::hash::sha256_of(&bytes), layer.diff_id);
        let mut blob = Vec::new();
        layer.blob_reader().read_to_end(&mut blob).unwrap();
        assert_eq!(blob.len() as u64, layer.size);
        assert_eq!(crate::hash::sha256_of(&blob), layer.digest);
        assert_ne!(layer.digest, layer.diff_id);

        std::fs::write(dir.path().join("f"), vec![8u8; 600_000]).unwrap();
        let err = layer.tar_reader().read_to_end(&mut Vec::new()).unwrap_err();
        match BlobReader::into_error(err) {
            Error::DigestMismatch { store_path, .. } => assert_eq!(store_path, dir.path()),
            other => panic!("expected a digest mismatch, got {other}"),
        }
    }
}
