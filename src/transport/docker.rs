//! Docker archives: what `docker save` writes and `docker load` reads.
//!
//! `manifest.json` names the config file, the image's tags and one
//! uncompressed tar per layer; Docker checks each tar against the config's
//! `rootfs.diff_ids` and takes the config's digest as the image ID. The
//! manifest and the config come first so that a reader of the stream knows
//! what follows. The legacy `repositories` file and per-layer `json` and
//! `VERSION` files are left out: Docker has not needed them since 1.10.

use serde::Serialize;

use crate::document::canonical_json;
use crate::image::Image;
use crate::reference::Reference;

use super::archive::Entry;
use super::blob::Blob;

/// One image in `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The entries of a docker archive of `image`, tagged `reference` if given.
pub(crate) fn archive_entries(image: &Image, reference: Option<&Reference>) -> Vec<Entry> {
    let config = Blob::config(image);
    let layer_path = |diff_id: &oci_spec::image::Digest| format!("{}/layer.tar", diff_id.digest());
    let manifest = [ManifestEntry {
        config: format!("{}.json", config.digest.digest()),
        repo_tags: reference.map(Reference::name_and_tag).into_iter().collect(),
        layers: image
            .layers()
            .iter()
            .map(|l| layer_path(&l.diff_id))
            .collect(),
    }];
    let mut entries = vec![
        Entry::File("manifest.json".into(), canonical_json(&manifest)),
        Entry::Blob(format!("{}.json", config.digest.digest()), config),
    ];
    entries.extend(
        Blob::layer_tars(image)
            .into_iter()
            .map(|blob| Entry::Blob(layer_path(&blob.digest), blob)),
    );
    entries
}
