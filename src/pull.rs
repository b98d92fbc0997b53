//! Pulling an image from a registry into a directory, laid out as skopeo's
//! `dir:` transport lays it out (what upstream's `pullImage` stored):
//!
//! ```text
//! manifest.json   the manifest, byte for byte (for an index: the
//!                 manifest of the platform asked for)
//! <hex>           each blob (config and layers), named by its digest
//! version         "Directory Transport Version: 1.1\n"
//! ```
//!
//! Every blob is checked against its digest. The same image gives the same
//! files, so the directory's NAR hash (`pullImage`'s `sha256`) is that of
//! `skopeo copy docker://… dir:…`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use rayon::prelude::*;

use crate::base_image;
use crate::error::{Error, Result};
use crate::registry::{AccessOptions, Platform, PulledManifest, Puller, RegistryReference};
use crate::transport::human_size;

/// The manifest's file in a pulled directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The version file skopeo writes in a `dir:` directory, and its content.
const VERSION_FILE: &str = "version";
const VERSION: &str = "Directory Transport Version: 1.1\n";

/// The file of the blob `digest` in a pulled directory.
pub fn blob_file(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(digest.digest())
}

/// Pulls `reference` (for `platform`, if it names an index) into `dir`,
/// which must not exist or be empty; returns the manifest pulled.
/// Progress lines go to standard error unless `quiet`.
pub fn pull_to_dir(
    reference: &RegistryReference,
    platform: &Platform,
    options: &AccessOptions,
    dir: &Path,
    quiet: bool,
) -> Result<PulledManifest> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io("listing", dir)(e)),
    };
    if !empty {
        return Err(Error::Destination(format!(
            "{} is not empty: pull into a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let puller = Puller::connect(reference, options, quiet)?;
    let manifest = puller.manifest(platform)?;
    match &manifest.index {
        Some(index) => puller.line(&format!(
            "manifest {} for {platform}, from the index {index}",
            manifest.digest
        )),
        None => puller.line(&format!("manifest {}", manifest.digest)),
    }
    let (config, layers) = base_image::image_manifest(&manifest.bytes, &reference.to_string())?;
    let mut seen = BTreeSet::new();
    let blobs: Vec<(&'static str, Digest, u64)> = std::iter::once(("config", config))
        .chain(layers.into_iter().map(|layer| ("layer", layer)))
        .map(|(kind, descriptor)| (kind, descriptor.digest, descriptor.size))
        .filter(|(_, digest, _)| seen.insert(digest.to_string()))
        .collect();
    blobs.par_iter().try_for_each(|(kind, digest, size)| {
        let path = blob_file(dir, digest);
        let result = puller.blob_to_file(digest, Some(*size), &path);
        if result.is_err() {
            // Only complete, checked blobs stay.
            let _ = std::fs::remove_file(&path);
        }
        result.map(|bytes| puller.line(&format!("{kind} {digest} pulled ({})", human_size(bytes))))
    })?;
    // Written last: a directory with a manifest is complete.
    let version = dir.join(VERSION_FILE);
    std::fs::write(&version, VERSION).map_err(Error::io("writing", &version))?;
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, &manifest.bytes).map_err(Error::io("writing", &path))?;
    Ok(manifest)
}
