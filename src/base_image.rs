//! Base images (`fromImage`).
//!
//! A pulled image (`pullImage`, `pullImageFromManifest`) is read into an
//! image document like any other: its layers are the pulled blobs
//! (`blob_path`), sized and checked here, once, by decompressing each
//! (the manifest gives the blob's digest and size, the config the tar's
//! digest, and only reading the blob gives the tar's size). An image built
//! on it ([`build_on`]) gets the base's layers first, the base's history,
//! and the base's config with its own on top ([`inherit_config`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Config, Digest, History, ImageConfiguration, MediaType};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::compression::Compression;
use crate::document::{IMAGE_VERSION, ImageDocument};
use crate::error::{Error, Result};
use crate::hash::{HashingWriter, sha256_digest, sha256_of};
use crate::layer::Layer;

/// `created` of a base image whose config has none: upstream's default,
/// Go's zero time.
const DEFAULT_CREATED: &str = "0001-01-01T00:00:00Z";

/// Size of the buffer blobs are copied and decompressed through.
const COPY_BUFFER_SIZE: usize = 256 * 1024;

/// How a layer blob encodes its tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Tar,
    Gzip,
    Zstd,
}

/// The OCI media type of a pulled layer, from its descriptor's (Docker's
/// are mapped to OCI's, as upstream does), and how its blob is encoded.
fn layer_media_type(media_type: &str) -> Result<(MediaType, Encoding)> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => (MediaType::ImageLayer, Encoding::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            (MediaType::ImageLayerGzip, Encoding::Gzip)
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            (MediaType::ImageLayerZstd, Encoding::Zstd)
        }
        other => {
            return Err(Error::BaseImage(format!(
                "the base image has a layer of media type {other:?}, which nix2container cannot \
                 use (it reads tar, tar+gzip and tar+zstd layers; foreign and non-distributable \
                 layers are not supported)"
            )));
        }
    })
}

/// How the blob of a layer of media type `media_type` encodes its tar.
fn encoding_of(media_type: &MediaType) -> Encoding {
    match media_type {
        MediaType::ImageLayerGzip => Encoding::Gzip,
        MediaType::ImageLayerZstd => Encoding::Zstd,
        _ => Encoding::Tar,
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    fn finish(self) -> (Digest, u64) {
        (sha256_digest(self.hasher), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// What reading a blob through its decoder found.
struct Decoded {
    blob_digest: Digest,
    blob_size: u64,
    tar_digest: Digest,
    tar_size: u64,
}

/// Decodes the blob at `path` into `out`, hashing the blob and the tar.
fn decode<W: Write>(path: &Path, encoding: Encoding, out: W) -> Result<Decoded> {
    let file = File::open(path).map_err(Error::io("opening", path))?;
    let mut blob = HashingReader::new(BufReader::with_capacity(COPY_BUFFER_SIZE, file));
    let mut tar = HashingWriter::new(out);
    let corrupt = |e: io::Error| {
        Error::BaseImage(format!(
            "the layer blob {} is not valid {}: {e}",
            path.display(),
            match encoding {
                Encoding::Tar => "data",
                Encoding::Gzip => "gzip",
                Encoding::Zstd => "zstd",
            }
        ))
    };
    {
        let mut decoder: Box<dyn Read + '_> = match encoding {
            Encoding::Tar => Box::new(&mut blob),
            Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut blob)),
            Encoding::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(&mut blob).map_err(corrupt)?)
            }
        };
        let mut buffer = vec![0; COPY_BUFFER_SIZE];
        loop {
            let n = decoder.read(&mut buffer).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            tar.write_all(&buffer[..n]).map_err(Error::Output)?;
        }
    }
    // What the decoder left unread (padding after the stream) is still
    // part of the blob.
    io::copy(&mut blob, &mut io::sink()).map_err(Error::io("reading", path))?;
    tar.flush().map_err(Error::Output)?;
    let (tar_digest, tar_size, _) = tar.finish();
    let (blob_digest, blob_size) = blob.finish();
    Ok(Decoded {
        blob_digest,
        blob_size,
        tar_digest,
        tar_size,
    })
}

fn mismatch(path: &Path, expected: &Digest, found: &Digest) -> Error {
    Error::DigestMismatch {
        store_path: path.to_path_buf(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

impl Layer {
    /// A base-image layer: the blob at `blob_path`, with the digest, size
    /// and media type its manifest descriptor gives and the `diff_id` the
    /// image config gives. The blob is read once, decompressed, to check
    /// both digests and to learn the tar's size.
    pub fn from_pulled_blob(
        blob_path: PathBuf,
        media_type: &str,
        digest: Digest,
        size: u64,
        diff_id: Digest,
        history: History,
        origin: String,
    ) -> Result<Layer> {
        let (media_type, encoding) = layer_media_type(media_type)?;
        let decoded = decode(&blob_path, encoding, io::sink())?;
        if decoded.blob_digest != digest || decoded.blob_size != size {
            return Err(Error::BaseImage(format!(
                "the layer blob {} has digest {} and {} bytes, but the manifest says {digest} and \
                 {size} bytes",
                blob_path.display(),
                decoded.blob_digest,
                decoded.blob_size
            )));
        }
        if decoded.tar_digest != diff_id {
            return Err(Error::BaseImage(format!(
                "the layer {digest} of {origin} uncompresses to a tar whose digest is {}, but the \
                 image config lists {diff_id} for it",
                decoded.tar_digest
            )));
        }
        Ok(Layer {
            digest,
            size,
            media_type,
            // The blob is stored as pulled, never compressed here.
            compression: Compression::None,
            diff_id,
            tar_size: decoded.tar_size,
            paths: Vec::new(),
            tar_path: None,
            blob_path: Some(blob_path),
            origin: Some(origin),
            history,
        })
    }

    /// [`Layer::write_blob`] of a pulled layer: the blob file, checked.
    pub(crate) fn write_pulled_blob<W: Write>(&self, blob_path: &Path, out: W) -> Result<()> {
        let file = File::open(blob_path).map_err(Error::io("opening", blob_path))?;
        let mut blob = HashingReader::new(file);
        let mut out = out;
        let mut buffer = vec![0; COPY_BUFFER_SIZE];
        loop {
            let n = blob
                .read(&mut buffer)
                .map_err(Error::io("reading", blob_path))?;
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n]).map_err(Error::Output)?;
        }
        out.flush().map_err(Error::Output)?;
        let (digest, _) = blob.finish();
        match digest == self.digest {
            true => Ok(()),
            false => Err(mismatch(blob_path, &self.digest, &digest)),
        }
    }

    /// [`Layer::write_tar`] of a pulled layer: the blob decompressed, both
    /// digests checked.
    pub(crate) fn write_pulled_tar<W: Write>(&self, blob_path: &Path, out: W) -> Result<()> {
        let decoded = decode(blob_path, encoding_of(&self.media_type), out)?;
        if decoded.blob_digest != self.digest {
            return Err(mismatch(blob_path, &self.digest, &decoded.blob_digest));
        }
        match decoded.tar_digest == self.diff_id {
            true => Ok(()),
            false => Err(mismatch(blob_path, &self.diff_id, &decoded.tar_digest)),
        }
    }
}

/// The parts of an image manifest (OCI, or Docker's v2s2) a base image
/// needs; an index has `manifests` instead.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    config: Option<DescriptorJson>,
    #[serde(default)]
    layers: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// A blob of a manifest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescriptorJson {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// The config and layer descriptors of the image manifest `bytes` (of
/// `origin`, for messages); an index or another document is an error.
pub(crate) fn image_manifest(
    bytes: &[u8],
    origin: &str,
) -> Result<(DescriptorJson, Vec<DescriptorJson>)> {
    let parsed: ManifestJson = serde_json::from_slice(bytes).map_err(|e| {
        Error::BaseImage(format!("the manifest of {origin} is not valid JSON: {e}"))
    })?;
    match parsed {
        ManifestJson {
            manifests: Some(_), ..
        } => Err(Error::BaseImage(format!(
            "the manifest of {origin} is an image index (a list of manifests, one per \
             platform), not an image manifest: use the manifest of one platform, as \
             `getManifest` prints it for `arch` and `os`"
        ))),
        ManifestJson {
            schema_version: 2,
            config: Some(config),
            layers: Some(layers),
            ..
        } => Ok((config, layers)),
        ManifestJson { schema_version, .. } => Err(Error::BaseImage(format!(
            "the manifest of {origin} is not an OCI or Docker schema 2 image manifest \
             (schemaVersion {schema_version}, or no config and layers)"
        ))),
    }
}

/// Reads a pulled image into an image document: `manifest` is its
/// manifest (exact bytes, or the same JSON reparsed), `blob` finds the file
/// of a blob by digest, `origin` is where it was pulled from
/// (`registry/repository`), and `helper` the executable writing the
/// document.
pub fn read_pulled(
    manifest: &[u8],
    blob: &(dyn Fn(&Digest) -> Result<PathBuf> + Sync),
    origin: &str,
    helper: PathBuf,
) -> Result<ImageDocument> {
    let (config, layers) = image_manifest(manifest, origin)?;
    let config_path = blob(&config.digest)?;
    let config_bytes = std::fs::read(&config_path).map_err(Error::io("reading", &config_path))?;
    let found = sha256_of(&config_bytes);
    if found != config.digest {
        return Err(mismatch(&config_path, &config.digest, &found));
    }
    let configuration: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|source| Error::Json {
            what: "image config",
            path: config_path.clone(),
            source,
        })?;
    let diff_ids = configuration.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(Error::BaseImage(format!(
            "the image {origin} has {} layers but its config lists {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    let (per_layer, history) = align_history(
        configuration.history().as_deref().unwrap_or(&[]),
        layers.len(),
    );
    let layers = layers
        .into_par_iter()
        .zip(diff_ids.par_iter())
        .zip(per_layer.into_par_iter())
        .map(|((descriptor, diff_id), history)| {
            let diff_id: Digest = diff_id.parse().map_err(|_| {
                Error::BaseImage(format!(
                    "the config of {origin} lists an invalid diff_id {diff_id:?}"
                ))
            })?;
            Layer::from_pulled_blob(
                blob(&descriptor.digest)?,
                &descriptor.media_type,
                descriptor.digest,
                descriptor.size,
                diff_id,
                history,
                origin.to_owned(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageDocument {
        version: IMAGE_VERSION,
        helper,
        architecture: configuration.architecture().to_string(),
        os: configuration.os().to_string(),
        variant: configuration.variant().clone(),
        created: configuration
            .created()
            .clone()
            .unwrap_or_else(|| DEFAULT_CREATED.to_owned()),
        config: configuration.config().clone().unwrap_or_default(),
        layers,
        history,
    })
}

/// Each layer's history entry, and the whole history when it holds more
/// (`empty_layer` entries). A history whose non-empty entries do not match
/// the layers one to one (none at all, as upstream nix2container writes
/// them) is replaced by an empty entry per layer, so that Docker's
/// `history` does not pair entries with the wrong layers.
fn align_history(history: &[History], layers: usize) -> (Vec<History>, Option<Vec<History>>) {
    let filled: Vec<History> = history
        .iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .cloned()
        .collect();
    if filled.len() != layers {
        return (vec![History::default(); layers], None);
    }
    let whole = (filled.len() != history.len()).then(|| history.to_vec());
    (filled, whole)
}

/// The image `own` built on `base`: the base's layers first (all of them,
/// even repeated ones), then those of `own` that the base does not have;
/// the base's history, then an entry per layer of `own`; the base's config
/// with `own`'s on top ([`inherit_config`]); the base's CPU variant unless
/// `own` names one. Both must be for the same platform.
pub fn build_on(base: &ImageDocument, own: ImageDocument) -> Result<ImageDocument> {
    if (base.os.as_str(), base.architecture.as_str())
        != (own.os.as_str(), own.architecture.as_str())
    {
        return Err(Error::BaseImage(format!(
            "the base image (fromImage) is for {}/{}, but the image is for {}/{}: pass the same \
             `arch` to pullImage (or pullImageFromManifest) and to buildImage",
            base.os, base.architecture, own.os, own.architecture
        )));
    }
    let in_base: std::collections::HashSet<&Digest> =
        base.layers.iter().map(|l| &l.digest).collect();
    let added: Vec<Layer> = own
        .layers
        .into_iter()
        .filter(|l| !in_base.contains(&l.digest))
        .collect();
    let mut history = base.config_history();
    history.extend(added.iter().map(|l| l.history.clone()));
    let mut layers = base.layers.clone();
    layers.extend(added);
    Ok(ImageDocument {
        config: inherit_config(&base.config, &own.config),
        variant: own.variant.or_else(|| base.variant.clone()),
        layers,
        history: Some(history),
        ..own
    })
}

/// The config of an image built on a base whose config is `base`: each
/// key `own` sets replaces the base's, except that
///
/// - `Env` is merged by variable name: a variable `own` sets replaces the
///   base's in place, new ones are added after the base's;
/// - `Labels`, `ExposedPorts` and `Volumes` are merged entry by entry
///   (`own`'s label wins), as a Dockerfile's `LABEL`, `EXPOSE` and
///   `VOLUME` add to the base's;
/// - an `Entrypoint` without a `Cmd` drops the base's `Cmd`, which was
///   written for the base's entrypoint (Docker does the same).
pub fn inherit_config(base: &Config, own: &Config) -> Config {
    let mut config = base.clone();
    if own.user().is_some() {
        config.set_user(own.user().clone());
    }
    if own.working_dir().is_some() {
        config.set_working_dir(own.working_dir().clone());
    }
    if own.stop_signal().is_some() {
        config.set_stop_signal(own.stop_signal().clone());
    }
    if own.entrypoint().is_some() {
        config.set_entrypoint(own.entrypoint().clone());
        config.set_cmd(None);
    }
    if own.cmd().is_some() {
        config.set_cmd(own.cmd().clone());
    }
    if let Some(env) = own.env() {
        config.set_env(Some(merge_env(base.env().as_deref().unwrap_or(&[]), env)));
    }
    if let Some(ports) = own.exposed_ports() {
        config.set_exposed_ports(Some(union(base.exposed_ports(), ports)));
    }
    if let Some(volumes) = own.volumes() {
        config.set_volumes(Some(union(base.volumes(), volumes)));
    }
    if let Some(labels) = own.labels() {
        let mut merged: HashMap<String, String> = base.labels().clone().unwrap_or_default();
        merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        config.set_labels(Some(merged));
    }
    config
}

/// `base` with each variable of `own` replacing the one of the same name,
/// or added at the end.
fn merge_env(base: &[String], own: &[String]) -> Vec<String> {
    let name = |entry: &str| entry.split_once('=').map_or(entry, |(n, _)| n).to_owned();
    let mut merged = base.to_vec();
    for entry in own {
        match merged.iter_mut().find(|e| name(e) == name(entry)) {
            Some(existing) => existing.clone_from(entry),
            None => merged.push(entry.clone()),
        }
    }
    merged
}

/// The entries of `base`, then those of `own` not in it.
fn union(base: &Option<Vec<String>>, own: &[String]) -> Vec<String> {
    let mut all = base.clone().unwrap_or_default();
    for entry in own {
        if !all.contains(entry) {
            all.push(entry.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, HistoryBuilder};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn base_config() -> Config {
        ConfigBuilder::default()
            .env(strings(&["PATH=/bin", "BASE=1", "LANG=C"]))
            .cmd(strings(&["/bin/sh"]))
            .working_dir("/work")
            .user("1000")
            .labels(HashMap::from([
                ("a".to_owned(), "base".to_owned()),
                ("b".to_owned(), "base".to_owned()),
            ]))
            .exposed_ports(strings(&["80/tcp"]))
            .stop_signal("SIGQUIT")
            .build()
            .unwrap()
    }

    /// Upstream #79: the base's config was dropped.
    #[test]
    fn upstream_79_the_base_config_is_inherited_and_env_merged_by_name() {
        let own = ConfigBuilder::default()
            .env(strings(&["BASE=2", "EXTRA=x"]))
            .labels(HashMap::from([("b".to_owned(), "own".to_owned())]))
            .exposed_ports(strings(&["443/tcp", "80/tcp"]))
            .build()
            .unwrap();
        let config = inherit_config(&base_config(), &own);
        assert_eq!(
            config.env().as_deref(),
            Some(&strings(&["PATH=/bin", "BASE=2", "LANG=C", "EXTRA=x"])[..])
        );
        assert_eq!(config.cmd().as_deref(), Some(&strings(&["/bin/sh"])[..]));
        assert_eq!(config.working_dir().as_deref(), Some("/work"));
        assert_eq!(config.user().as_deref(), Some("1000"));
        assert_eq!(config.stop_signal().as_deref(), Some("SIGQUIT"));
        assert_eq!(
            config.labels().as_ref().unwrap(),
            &HashMap::from([
                ("a".to_owned(), "base".to_owned()),
                ("b".to_owned(), "own".to_owned()),
            ])
        );
        assert_eq!(
            config.exposed_ports().as_deref(),
            Some(&strings(&["80/tcp", "443/tcp"])[..])
        );
        // Nothing given: the base's config as it is.
        assert_eq!(
            inherit_config(&base_config(), &Config::default()),
            base_config()
        );
    }

    #[test]
    fn an_entrypoint_drops_the_base_cmd_unless_a_cmd_is_given() {
        let own = ConfigBuilder::default()
            .entrypoint(strings(&["/app"]))
            .build()
            .unwrap();
        let config = inherit_config(&base_config(), &own);
        assert_eq!(
            config.entrypoint().as_deref(),
            Some(&strings(&["/app"])[..])
        );
        assert_eq!(config.cmd(), &None);
        let own = ConfigBuilder::default()
            .entrypoint(strings(&["/app"]))
            .cmd(strings(&["--serve"]))
            .user("0")
            .working_dir("/")
            .build()
            .unwrap();
        let config = inherit_config(&base_config(), &own);
        assert_eq!(config.cmd().as_deref(), Some(&strings(&["--serve"])[..]));
        assert_eq!(config.user().as_deref(), Some("0"));
        assert_eq!(config.working_dir().as_deref(), Some("/"));
    }

    fn entry(created_by: &str, empty: bool) -> History {
        let mut builder = HistoryBuilder::default().created_by(created_by);
        if empty {
            builder = builder.empty_layer(true);
        }
        builder.build().unwrap()
    }

    #[test]
    fn history_keeps_empty_entries_when_it_matches_the_layers() {
        let history = vec![
            entry("ADD a", false),
            entry("ENV x", true),
            entry("ADD b", false),
            entry("CMD", true),
        ];
        let (per_layer, whole) = align_history(&history, 2);
        assert_eq!(
            per_layer,
            vec![entry("ADD a", false), entry("ADD b", false)]
        );
        assert_eq!(whole, Some(history.clone()));
        // One entry per layer: nothing more to keep.
        let (per_layer, whole) = align_history(&history[..1], 1);
        assert_eq!((per_layer.len(), whole), (1, None));
        // No history (upstream's images), or one that does not match.
        for layers in [0, 1, 3] {
            let (per_layer, whole) = align_history(&[], layers);
            assert_eq!(per_layer, vec![History::default(); layers]);
            assert_eq!(whole, None);
        }
        let (per_layer, whole) = align_history(&history, 3);
        assert_eq!((per_layer, whole), (vec![History::default(); 3], None));
    }

    fn write_blob(dir: &Path, bytes: &[u8]) -> (PathBuf, Digest) {
        let digest = sha256_of(bytes);
        let path = dir.join(digest.digest());
        std::fs::write(&path, bytes).unwrap();
        (path, digest)
    }

    #[test]
    fn pulled_layers_are_checked_and_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let tar = vec![42u8; 300_000];
        let diff_id = sha256_of(&tar);
        let gzip = {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        };
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (bytes, media_type, expected) in [
            (
                &gzip,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                MediaType::ImageLayerGzip,
            ),
            (
                &zstd,
                "application/vnd.oci.image.layer.v1.tar+zstd",
                MediaType::ImageLayerZstd,
            ),
            (
                &tar,
                "application/vnd.oci.image.layer.v1.tar",
                MediaType::ImageLayer,
            ),
        ] {
            let (path, digest) = write_blob(dir.path(), bytes);
            let layer = Layer::from_pulled_blob(
                path.clone(),
                media_type,
                digest.clone(),
                bytes.len() as u64,
                diff_id.clone(),
                History::default(),
                "r.io/base".into(),
            )
            .unwrap();
            assert_eq!(layer.media_type, expected);
            assert_eq!(
                layer.tar_size,
                tar.len() as u64,
                "{media_type}: never 0 (upstream #207)"
            );
            assert_eq!(layer.size, bytes.len() as u64);
            let mut read = Vec::new();
            layer.tar_reader().read_to_end(&mut read).unwrap();
            assert_eq!(read, tar);
            let mut read = Vec::new();
            layer.blob_reader().read_to_end(&mut read).unwrap();
            assert_eq!(&read, bytes);

            // A wrong diff_id is refused when the layer is read in.
            let error = Layer::from_pulled_blob(
                path.clone(),
                media_type,
                digest,
                bytes.len() as u64,
                sha256_of(b"other"),
                History::default(),
                "r.io/base".into(),
            )
            .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("uncompresses to a tar whose digest is"),
                "{error}"
            );

            // A blob changed since: both readers fail.
            std::fs::write(&path, b"changed").unwrap();
            let error = layer
                .blob_reader()
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert!(matches!(
                crate::layer::BlobReader::into_error(error),
                Error::DigestMismatch { .. }
            ));
            assert!(layer.tar_reader().read_to_end(&mut Vec::new()).is_err());
        }
        let error = layer_media_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
            .unwrap_err();
        assert!(error.to_string().contains("foreign"), "{error}");
    }

    fn document(
        architecture: &str,
        layers: Vec<Layer>,
        history: Option<Vec<History>>,
    ) -> ImageDocument {
        ImageDocument {
            version: IMAGE_VERSION,
            helper: "nix2container".into(),
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
            created: DEFAULT_CREATED.into(),
            config: Config::default(),
            layers,
            history,
        }
    }

    /// An uncompressed pulled layer holding `bytes`.
    fn pulled_layer(dir: &Path, bytes: &[u8], created_by: &str) -> Layer {
        let (path, digest) = write_blob(dir, bytes);
        Layer::from_pulled_blob(
            path,
            "application/vnd.oci.image.layer.v1.tar",
            digest.clone(),
            bytes.len() as u64,
            digest,
            entry(created_by, false),
            "r.io/base".into(),
        )
        .unwrap()
    }

    #[test]
    fn an_image_on_a_base_has_its_layers_and_history_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            pulled_layer(dir.path(), b"a", "ADD a"),
            pulled_layer(dir.path(), b"b", "ADD b"),
            pulled_layer(dir.path(), b"c", "nix2container"),
        );
        let mut base = document(
            "arm64",
            vec![a.clone(), a.clone(), b.clone()],
            Some(vec![
                entry("ADD a", false),
                entry("ADD a", false),
                entry("ENV x", true),
                entry("ADD b", false),
            ]),
        );
        base.variant = Some("v8".into());
        // `b` is in the base already: not repeated.
        let own = document("arm64", vec![b.clone(), c.clone()], None);
        let image = build_on(&base, own).unwrap();
        assert_eq!(image.layers, vec![a.clone(), a, b, c]);
        assert_eq!(
            image.config_history(),
            vec![
                entry("ADD a", false),
                entry("ADD a", false),
                entry("ENV x", true),
                entry("ADD b", false),
                entry("nix2container", false),
            ]
        );
        assert_eq!(image.variant.as_deref(), Some("v8"));
        // The history lines up with the layers, as Docker needs.
        let filled = image
            .config_history()
            .iter()
            .filter(|h| !h.empty_layer().unwrap_or(false))
            .count();
        assert_eq!(filled, image.layers.len());

        let error = build_on(&base, document("amd64", Vec::new(), None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the base image (fromImage) is for linux/arm64, but the image is for linux/amd64: \
             pass the same `arch` to pullImage (or pullImageFromManifest) and to buildImage"
        );
    }

    #[test]
    fn an_index_is_not_a_base_image() {
        let error = read_pulled(
            br#"{"schemaVersion": 2, "manifests": []}"#,
            &|_| unreachable!(),
            "r.io/base",
            "nix2container".into(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("is an image index"), "{error}");
    }
}
