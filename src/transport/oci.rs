//! OCI image layouts, as a directory (`oci:`) or as a tar of one
//! (`oci-archive:`).
//!
//! Both hold `oci-layout`, `index.json` and `blobs/<algorithm>/<hex>`. A
//! directory may already hold other images, which must survive any copy: it
//! is updated in an order that never lets the index name a missing blob
//! (blobs first, each renamed into place once verified, `index.json`
//! replaced last), and what a failed copy added is removed again.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageIndex, MediaType, OciLayout, OciLayoutBuilder,
};

use crate::document::canonical_json;
use crate::error::{Error, Result};
use crate::image::Image;

use super::Progress;
use super::archive::Entry;
use super::blob::{Blob, FailureSlot};
use super::file::write_atomically;

/// The image layout version this module writes and accepts.
const LAYOUT_VERSION: &str = "1.0.0";

/// The file that marks a directory as a layout.
const LAYOUT_FILE: &str = "oci-layout";

/// The index of the images in a layout.
const INDEX_FILE: &str = "index.json";

/// The entries of an oci-archive holding only `image`.
pub(crate) fn archive_entries(image: &Image, tag: Option<&str>) -> Vec<Entry> {
    let mut index = new_index();
    add_manifest(&mut index, image, tag);
    let mut entries = vec![
        Entry::File(LAYOUT_FILE.into(), layout_file()),
        Entry::File(INDEX_FILE.into(), canonical_json(&index)),
    ];
    // The config and the manifest first, so that a reader of the stream
    // knows what follows.
    let mut blobs = Blob::oci(image);
    blobs.rotate_right(2);
    entries.extend(
        blobs
            .into_iter()
            .map(|blob| Entry::Blob(blob_path(&blob.digest), blob)),
    );
    entries
}

/// Adds `image` to the layout in `dir`, creating the layout if needed.
pub(crate) fn write_layout(
    image: &Image,
    dir: &Path,
    tag: Option<&str>,
    progress: Progress,
) -> Result<()> {
    let mut additions = Additions::start(dir)?;
    let mut index = open_layout(dir, &mut additions)?;
    for blob in Blob::oci(image) {
        write_blob(image, dir, &blob, &mut additions, progress)?;
    }
    add_manifest(&mut index, image, tag);
    write_atomically(
        &dir.join(INDEX_FILE),
        &canonical_json(&index)[..],
        &FailureSlot::default(),
    )?;
    additions.keep();
    Ok(())
}

/// `blobs/sha256/<hex>`.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.digest())
}

fn layout_file() -> Vec<u8> {
    let layout = OciLayoutBuilder::default()
        .image_layout_version(LAYOUT_VERSION)
        .build()
        .expect("the layout version is set");
    canonical_json(&layout)
}

fn new_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index
}

/// Points `index` at the image's manifest. A tagged manifest replaces the
/// one with the same tag; an untagged one is added unless already there.
fn add_manifest(index: &mut ImageIndex, image: &Image, tag: Option<&str>) {
    let mut descriptor = image.manifest_descriptor();
    let ref_name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME).cloned())
    };
    let tag = tag.map(str::to_owned);
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|existing| match &tag {
            Some(_) => ref_name(existing) != tag,
            None => ref_name(existing).is_some() || existing.digest() != descriptor.digest(),
        })
        .cloned()
        .collect();
    if let Some(tag) = tag {
        descriptor.set_annotations(Some(HashMap::from([(ANNOTATION_REF_NAME.to_owned(), tag)])));
    }
    manifests.push(descriptor);
    index.set_manifests(manifests);
}

/// Checks that `dir` is a layout, or makes it one, and returns its index.
fn open_layout(dir: &Path, additions: &mut Additions) -> Result<ImageIndex> {
    let layout_path = dir.join(LAYOUT_FILE);
    let layout: OciLayout = match read_json(&layout_path, "OCI layout file")? {
        Some(layout) => layout,
        None => {
            let not_empty = std::fs::read_dir(dir)
                .map_err(Error::io("listing", dir))?
                .next()
                .is_some();
            if not_empty {
                return Err(Error::Destination(format!(
                    "{} is not an OCI image layout (it has files but no {LAYOUT_FILE}); \
                     give a new or empty directory, or an existing layout",
                    dir.display()
                )));
            }
            additions.write(&layout_path, &layout_file()[..], &FailureSlot::default())?;
            return Ok(new_index());
        }
    };
    if layout.image_layout_version() != LAYOUT_VERSION {
        return Err(Error::Destination(format!(
            "{} has image layout version {:?}; this nix2container writes version {LAYOUT_VERSION}",
            layout_path.display(),
            layout.image_layout_version()
        )));
    }
    Ok(read_json(&dir.join(INDEX_FILE), "OCI image index")?.unwrap_or_else(new_index))
}

/// Parses a JSON file, or `None` if there is no such file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json {
                what,
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path)(e)),
    }
}

/// Copies `blob` into the layout unless a file of its size is there already
/// (blob files are named by digest).
fn write_blob(
    image: &Image,
    dir: &Path,
    blob: &Blob,
    additions: &mut Additions,
    progress: Progress,
) -> Result<()> {
    let path = dir.join(blob_path(&blob.digest));
    if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == blob.size) {
        progress.present(blob);
        return Ok(());
    }
    progress.copying(blob);
    let failure = FailureSlot::default();
    let reader = blob.open(image, &failure)?;
    additions.create_parents(&path)?;
    additions.write(&path, reader, &failure)
}

/// What a copy added to a layout: removed again unless the copy completes.
struct Additions {
    /// The outermost directory the copy created; removed whole.
    created_root: Option<PathBuf>,
    /// Files and directories added to a layout that existed, in order.
    paths: Vec<PathBuf>,
    kept: bool,
}

impl Additions {
    /// Creates `dir` (and missing parents) if it does not exist.
    fn start(dir: &Path) -> Result<Additions> {
        let created_root = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .last()
            .map(Path::to_path_buf);
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        Ok(Additions {
            created_root,
            paths: Vec::new(),
            kept: false,
        })
    }

    fn create_parents(&mut self, path: &Path) -> Result<()> {
        let mut missing: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .take_while(|a| !a.exists())
            .collect();
        missing.reverse();
        for dir in missing {
            std::fs::create_dir(dir).map_err(Error::io("creating", dir))?;
            self.paths.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn write(&mut self, path: &Path, source: impl io::Read, failure: &FailureSlot) -> Result<()> {
        let existed = path.exists();
        write_atomically(path, source, failure)?;
        if !existed {
            self.paths.push(path.to_path_buf());
        }
        Ok(())
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Additions {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Best effort: the copy's own error is the one to report.
        if let Some(root) = &self.created_root {
            let _ = std::fs::remove_dir_all(root);
            return;
        }
        for path in self.paths.iter().rev() {
            let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fixtures::{self, CREATED};

    fn refs(index: &ImageIndex) -> Vec<(Option<String>, String)> {
        index
            .manifests()
            .iter()
            .map(|d| {
                let name = d
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME).cloned());
                (name, d.digest().to_string())
            })
            .collect()
    }

    #[test]
    fn tags_replace_and_untagged_manifests_are_not_repeated() {
        let (a, b) = (
            fixtures::image(CREATED, Vec::new()),
            fixtures::image("1970-01-01T00:00:02Z", Vec::new()),
        );
        let (da, db) = (
            a.manifest_digest().to_string(),
            b.manifest_digest().to_string(),
        );
        let mut index = new_index();
        let steps: &[(&Image, Option<&str>)] = &[
            (&a, Some("v1")),
            (&a, None),
            (&b, Some("v2")),
            (&b, Some("v1")),
            (&a, None),
        ];
        for (image, tag) in steps {
            add_manifest(&mut index, image, *tag);
        }
        assert_eq!(
            refs(&index),
            [
                (Some("v2".into()), db.clone()),
                (Some("v1".into()), db),
                (None, da),
            ]
        );
    }
}
