//! The executable as the builder of the Nix library's derivations.
//!
//! Each derivation uses `__structuredAttrs`, so its attributes arrive as one
//! JSON document (`.attrs.json`) instead of environment variables, and
//! `exportReferencesGraph` puts closure graphs into that same document.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::image::{Config, History};
use rayon::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::closure::{ClosureEntry, popularity_order, split_for_layers};
use crate::compression::Compression;
use crate::document::{
    IMAGE_VERSION, ImageDocument, LAYERS_FILE_NAME, LAYERS_VERSION, LayersDocument,
    canonical_json_pretty,
};
use crate::error::{Error, Result};
use crate::layer::{Layer, default_history};
use crate::tar::{Mode, PathSpec, Perm, Rewrite};

/// Name of the structured attributes file in the build directory.
const ATTRS_FILE_NAME: &str = ".attrs.json";

/// Reads the derivation's structured attributes.
///
/// `NIX_ATTRS_JSON_FILE` names the file, except that Nix 2.8 sets it to the
/// path outside the sandbox; the file is always in the build directory too.
fn read_attrs<T: DeserializeOwned>() -> Result<T> {
    let named = std::env::var_os("NIX_ATTRS_JSON_FILE")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    let path = named.unwrap_or_else(|| PathBuf::from(ATTRS_FILE_NAME));
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        action: "reading the structured attributes (is this running as a derivation builder with __structuredAttrs?) at",
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "structured attributes file",
        path,
        source,
    })
}

#[derive(Deserialize)]
struct Outputs {
    out: PathBuf,
}

/// Attributes of a layer derivation (`nix/build-layer.nix`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerAttrs {
    outputs: Outputs,
    /// The closure of `deps` and `copyToRoot`.
    closure: Vec<ClosureEntry>,
    #[serde(default)]
    copy_to_root: Vec<PathBuf>,
    #[serde(default)]
    ignore: Vec<PathBuf>,
    #[serde(default)]
    perms: Vec<PermAttr>,
    max_layers: usize,
    /// Outputs of the parent layer derivations.
    #[serde(default)]
    layers: Vec<PathBuf>,
    #[serde(default)]
    metadata: Option<History>,
    /// `gzip`, `zstd` or `none`.
    compression: String,
    #[serde(default)]
    compression_level: Option<i64>,
}

/// A `perms` element: the store path it applies to, and the perm itself.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermAttr {
    path: PathBuf,
    regex: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default)]
    uname: String,
    #[serde(default)]
    gname: String,
}

/// Builds a layer derivation: writes `$out/layers.json`.
pub fn build_layers() -> Result<()> {
    let attrs: LayerAttrs = read_attrs()?;
    let out = attrs.outputs.out.clone();
    let document = plan_and_compute_layers(attrs)?;
    std::fs::create_dir_all(&out).map_err(Error::io("creating", &out))?;
    let path = out.join(LAYERS_FILE_NAME);
    std::fs::write(&path, canonical_json_pretty(&document)).map_err(Error::io("writing", &path))
}

fn plan_and_compute_layers(attrs: LayerAttrs) -> Result<LayersDocument> {
    let mut perms: Vec<(PathBuf, Perm)> = Vec::new();
    for perm in attrs.perms {
        let mode = match perm.mode.as_deref() {
            None | Some("") => None,
            Some(mode) => Some(mode.parse::<Mode>().map_err(|e| {
                Error::Invalid(format!("perms entry for {}: {e}", perm.path.display()))
            })?),
        };
        perms.push((
            perm.path,
            Perm {
                regex: perm.regex,
                mode,
                uid: perm.uid,
                gid: perm.gid,
                uname: perm.uname,
                gname: perm.gname,
            },
        ));
    }

    let inherited = ancestor_paths(&attrs.layers)?;
    let ignored: HashSet<&PathBuf> = attrs.ignore.iter().collect();
    let specs: Vec<PathSpec> = popularity_order(&attrs.closure)
        .into_iter()
        .filter(|path| !ignored.contains(path))
        .map(|path| {
            let rewrite = attrs.copy_to_root.contains(&path).then(|| Rewrite {
                regex: format!("^{}", regex::escape(&path.to_string_lossy())),
                repl: String::new(),
            });
            let perms = perms
                .iter()
                .filter(|(p, _)| *p == path)
                .map(|(_, perm)| perm.clone())
                .collect();
            PathSpec {
                path,
                rewrite,
                perms,
            }
        })
        .filter(|spec| !inherited.contains(spec))
        .collect();

    let compression = Compression::from_name(&attrs.compression, attrs.compression_level)?;
    let history = attrs.metadata.unwrap_or_else(default_history);
    let layers = split_for_layers(specs, attrs.max_layers)
        .into_par_iter()
        .map(|paths| Layer::compute(paths, history.clone(), compression))
        .collect::<Result<Vec<_>>>()?;
    Ok(LayersDocument {
        version: LAYERS_VERSION,
        layers,
        parents: attrs.layers,
    })
}

/// Every path spec in the given layer outputs and all their ancestors.
fn ancestor_paths(outputs: &[PathBuf]) -> Result<HashSet<PathSpec>> {
    let mut specs = HashSet::new();
    walk_layer_outputs(outputs, &mut HashSet::new(), &mut |document| {
        specs.extend(document.layers.iter().flat_map(|l| l.paths.iter().cloned()));
    })?;
    Ok(specs)
}

/// Visits the layer documents of `outputs` depth first, each parent before
/// its children and each output once.
fn walk_layer_outputs(
    outputs: &[PathBuf],
    visited: &mut HashSet<PathBuf>,
    visit: &mut dyn FnMut(&LayersDocument),
) -> Result<()> {
    for output in outputs {
        if !visited.insert(output.clone()) {
            continue;
        }
        let document = LayersDocument::from_output(output)?;
        walk_layer_outputs(&document.parents, visited, visit)?;
        visit(&document);
    }
    Ok(())
}

/// Attributes of an image derivation (`nix/build-image.nix`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageAttrs {
    outputs: Outputs,
    /// This executable, as the derivation names it.
    builder: PathBuf,
    config: Config,
    /// Layer derivation outputs, bottom first.
    layers: Vec<PathBuf>,
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    created: String,
}

/// Builds an image derivation: writes the image JSON to `$out`.
pub fn build_image() -> Result<()> {
    let attrs: ImageAttrs = read_attrs()?;
    let document = ImageDocument {
        version: IMAGE_VERSION,
        helper: attrs.builder,
        architecture: attrs.architecture,
        os: attrs.os,
        variant: attrs.variant,
        created: attrs.created,
        config: attrs.config,
        layers: collect_layers(&attrs.layers)?,
    };
    let out = &attrs.outputs.out;
    std::fs::write(out, canonical_json_pretty(&document)).map_err(Error::io("writing", out))
}

/// The layers of `outputs` and their ancestors, parents first, each layer
/// once even when several paths lead to it (upstream #186).
fn collect_layers(outputs: &[PathBuf]) -> Result<Vec<Layer>> {
    let mut layers: Vec<Layer> = Vec::new();
    let mut seen = HashSet::new();
    walk_layer_outputs(outputs, &mut HashSet::new(), &mut |document| {
        for layer in &document.layers {
            if seen.insert(layer.digest.clone()) {
                layers.push(layer.clone());
            }
        }
    })?;
    Ok(layers)
}

/// Attributes of the config derivation (`nix/build-image.nix`).
#[derive(Deserialize)]
struct ConfigAttrs {
    outputs: Outputs,
    config: Config,
}

/// Writes the image config to `$out`, so that the closure of that file is
/// everything the config refers to.
pub fn write_config() -> Result<()> {
    let attrs: ConfigAttrs = read_attrs()?;
    let out = &attrs.outputs.out;
    std::fs::write(out, canonical_json_pretty(&attrs.config)).map_err(Error::io("writing", out))
}
