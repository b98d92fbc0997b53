//! The executable as the builder of the Nix library's derivations.
//!
//! Each derivation uses `__structuredAttrs`, so its attributes arrive as one
//! JSON document (`.attrs.json`) instead of environment variables, and
//! `exportReferencesGraph` puts closure graphs into that same document.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::image::{Config, Digest, History};
use rayon::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::base_image;
use crate::closure::{ClosureEntry, Layering, popularity_order, size_groups, split_for_layers};
use crate::compression::Compression;
use crate::document::{
    IMAGE_VERSION, ImageDocument, LAYERS_FILE_NAME, LAYERS_VERSION, LayersDocument,
    canonical_json_pretty,
};
use crate::error::{Error, Result};
use crate::layer::{Layer, default_history};
use crate::nar;
use crate::nix_database::{self, NIX_SCHEMA_VERSION, Registration};
use crate::pull;
use crate::registry::{AccessOptions, Platform, Puller, RegistryReference};
use crate::tar::{Mode, PathSpec, Perm, Rewrite};

/// Most layers an image may have: Docker's limit (`maxLayerDepth` in
/// moby's layer store), which overlayfs-based runtimes share in practice.
pub const MAX_IMAGE_LAYERS: usize = 125;

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
    /// The `deps` argument, to tell which copyToRoot paths are also wanted
    /// in /nix/store.
    #[serde(default)]
    deps: Vec<PathBuf>,
    #[serde(default)]
    copy_to_root: Vec<PathBuf>,
    #[serde(default)]
    ignore: Vec<PathBuf>,
    #[serde(default)]
    perms: Vec<PermAttr>,
    max_layers: usize,
    /// How the paths are split into `max_layers` layers.
    #[serde(default)]
    layering: Layering,
    /// false: store each layer's tar in `$out`.
    #[serde(default = "reproducible_default")]
    reproducible: bool,
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

fn reproducible_default() -> bool {
    true
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

/// Builds a layer derivation: writes `$out/layers.json` (and, for
/// `reproducible = false`, the layers' tars).
pub fn build_layers() -> Result<()> {
    let attrs: LayerAttrs = read_attrs()?;
    let out = attrs.outputs.out.clone();
    std::fs::create_dir_all(&out).map_err(Error::io("creating", &out))?;
    let document = plan_and_compute_layers(attrs, &out)?;
    let path = out.join(LAYERS_FILE_NAME);
    std::fs::write(&path, canonical_json_pretty(&document)).map_err(Error::io("writing", &path))
}

fn plan_and_compute_layers(attrs: LayerAttrs, out: &Path) -> Result<LayersDocument> {
    let mut perms: Vec<(PathBuf, Perm)> = Vec::new();
    for perm in attrs.perms {
        let mode = match perm.mode.as_deref() {
            None | Some("") => None,
            Some(mode) => Some(mode.parse::<Mode>().map_err(|e| {
                Error::Invalid(format!("perms entry for {}: {e}", perm.path.display()))
            })?),
        };
        // Fail here, naming the entry, rather than when the tar is written.
        regex::bytes::Regex::new(&perm.regex).map_err(|source| Error::Regex {
            regex: perm.regex.clone(),
            path: perm.path.clone(),
            source: Box::new(source),
        })?;
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

    if let Some(inside) = attrs
        .copy_to_root
        .iter()
        .find(|path| !attrs.closure.iter().any(|entry| entry.path == **path))
    {
        return Err(Error::Invalid(format!(
            "copyToRoot entry {} is not a store path: give the derivation (or its store path), \
             not a path inside it",
            inside.display()
        )));
    }
    let inherited = ancestor_paths(&attrs.layers)?;
    let ignored: HashSet<&PathBuf> = attrs.ignore.iter().collect();
    let relocated: HashSet<&PathBuf> = attrs.copy_to_root.iter().collect();
    let wanted_in_store = wanted_in_store(&attrs.closure, &attrs.deps);
    let perms_of = |path: &PathBuf| -> Vec<Perm> {
        perms
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, perm)| perm.clone())
            .collect()
    };

    // Each kept store path with its specs: under /nix/store, relocated to
    // `/` (copyToRoot), or both (a copyToRoot path something refers to).
    let mut kept: Vec<(PathBuf, Vec<PathSpec>)> = Vec::new();
    for path in popularity_order(&attrs.closure) {
        if ignored.contains(&path) {
            continue;
        }
        let mut specs = Vec::new();
        let is_relocated = relocated.contains(&path);
        if !is_relocated || wanted_in_store.contains(&path) {
            specs.push(PathSpec {
                path: path.clone(),
                rewrite: None,
                perms: perms_of(&path),
            });
        }
        if is_relocated {
            specs.push(PathSpec {
                path: path.clone(),
                rewrite: Some(copy_to_root_rewrite(&path)?),
                perms: perms_of(&path),
            });
        }
        specs.retain(|spec| !inherited.contains(spec));
        if !specs.is_empty() {
            kept.push((path, specs));
        }
    }

    let groups: Vec<Vec<PathSpec>> = match attrs.layering {
        Layering::Popularity => split_for_layers(
            kept.into_iter().flat_map(|(_, specs)| specs).collect(),
            attrs.max_layers,
        ),
        Layering::Size => {
            let paths: Vec<PathBuf> = kept.iter().map(|(path, _)| path.clone()).collect();
            let mut specs: Vec<Option<Vec<PathSpec>>> =
                kept.into_iter().map(|(_, specs)| Some(specs)).collect();
            size_groups(&attrs.closure, &paths, attrs.max_layers)
                .into_iter()
                .map(|group| {
                    group
                        .into_iter()
                        .flat_map(|i| specs[i].take().expect("each path is in one group"))
                        .collect()
                })
                .collect()
        }
    };
    if groups.len() > MAX_IMAGE_LAYERS {
        return Err(Error::Invalid(format!(
            "this layer derivation would make {} layers, more than the {MAX_IMAGE_LAYERS} an \
             image may have; give buildLayer a `maxLayers` of at most {MAX_IMAGE_LAYERS} \
             (0 means one layer per store path)",
            groups.len()
        )));
    }

    let compression = Compression::from_name(&attrs.compression, attrs.compression_level)?;
    let history = attrs.metadata.unwrap_or_else(default_history);
    let reproducible = attrs.reproducible;
    let layers = groups
        .into_par_iter()
        .map(|paths| {
            if reproducible {
                Layer::compute(paths, history.clone(), compression)
            } else {
                Layer::compute_stored(paths, history.clone(), compression, out)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LayersDocument {
        version: LAYERS_VERSION,
        layers,
        parents: attrs.layers,
    })
}

/// The copyToRoot paths that must also stay at their store path: those
/// another path of the closure refers to (the config's entrypoint, a
/// script), and those also given in `deps`. Upstream relocated them only,
/// leaving dangling references (upstream #157).
fn wanted_in_store(closure: &[ClosureEntry], deps: &[PathBuf]) -> HashSet<PathBuf> {
    let mut wanted: HashSet<PathBuf> = closure
        .iter()
        .flat_map(|entry| entry.references.iter().filter(move |r| **r != entry.path))
        .cloned()
        .collect();
    wanted.extend(
        closure
            .iter()
            .filter(|entry| deps.iter().any(|dep| dep.starts_with(&entry.path)))
            .map(|entry| entry.path.clone()),
    );
    wanted
}

/// Where copyToRoot puts a store path: a directory's content at `/`; a
/// single file (or symlink) at `/<name>`, its name without the hash
/// (upstream put nothing at all).
fn copy_to_root_rewrite(path: &Path) -> Result<Rewrite> {
    let regex = format!("^{}", regex::escape(&path.to_string_lossy()));
    let metadata =
        std::fs::symlink_metadata(path).map_err(Error::io("reading metadata of", path))?;
    if metadata.is_dir() {
        return Ok(Rewrite {
            regex,
            repl: String::new(),
        });
    }
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = base.split_once('-').map_or(base.as_str(), |(_, name)| name);
    Ok(Rewrite {
        regex,
        repl: format!("/{}", name.replace('$', "$$")),
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
    /// A base image document (`fromImage`): its layers come first and its
    /// config is inherited.
    #[serde(default)]
    from_image: Option<PathBuf>,
}

/// The `created` value that asks for the time of the build.
const CREATED_NOW: &str = "now";

/// Builds an image derivation: writes the image JSON to `$out`.
pub fn build_image() -> Result<()> {
    let attrs: ImageAttrs = read_attrs()?;
    let created = if attrs.created == CREATED_NOW {
        rfc3339_utc(std::time::SystemTime::now())
    } else {
        attrs.created
    };
    let mut document = ImageDocument {
        version: IMAGE_VERSION,
        helper: attrs.builder,
        architecture: attrs.architecture,
        os: attrs.os,
        variant: attrs.variant,
        created,
        config: attrs.config,
        layers: collect_layers(&attrs.layers)?,
        history: None,
    };
    if let Some(base) = &attrs.from_image {
        document = base_image::build_on(&ImageDocument::from_file(base)?, document)?;
    }
    let layers = &document.layers;
    if layers.len() > MAX_IMAGE_LAYERS {
        return Err(Error::Invalid(format!(
            "the image would have {} layers, more than the {MAX_IMAGE_LAYERS} Docker and \
             overlayfs accept; lower the `maxLayers` of buildImage or of the buildLayer \
             results it uses, or merge `isolatedDeps`/`layers` into fewer buildLayer calls",
            layers.len()
        )));
    }
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

/// Where `pullImage` and `pullImageFromManifest` builds look for registry
/// credentials: upstream's path, which users bind-mount into the sandbox
/// with `extra-sandbox-paths` (docs/nix-api.md).
pub const BUILD_AUTH_FILE: &str = "/etc/skopeo/auth.json";

/// How the fetching derivations reach a registry: the auth file if the
/// build can see one, `tlsVerify`, and a CA bundle (a sandbox has no
/// system CAs).
fn build_access(tls_verify: bool, ca_file: Option<PathBuf>) -> AccessOptions {
    let auth_file = Path::new(BUILD_AUTH_FILE);
    AccessOptions {
        authfile: auth_file.is_file().then(|| auth_file.to_path_buf()),
        tls_verify: Some(tls_verify),
        ca_file,
        ..AccessOptions::default()
    }
}

/// Attributes of a `pullImage` fixed-output derivation
/// (`nix/pull-image.nix`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullAttrs {
    outputs: Outputs,
    image_name: String,
    image_digest: String,
    os: String,
    arch: String,
    tls_verify: bool,
    #[serde(default)]
    ssl_cert_file: Option<PathBuf>,
    /// The `sha256` given, to say which one is right when it is wrong.
    #[serde(default)]
    output_hash: String,
}

/// Builds a `pullImage` fixed-output derivation: pulls the image into
/// `$out` as skopeo's `dir:` transport lays it out.
pub fn pull() -> Result<()> {
    let attrs: PullAttrs = read_attrs()?;
    let source = format!("{}@{}", attrs.image_name, attrs.image_digest);
    let reference: RegistryReference = source.parse()?;
    let platform = Platform {
        os: attrs.os,
        architecture: attrs.arch,
        variant: None,
    };
    let out = &attrs.outputs.out;
    let access = build_access(attrs.tls_verify, attrs.ssl_cert_file);
    pull::pull_to_dir(&reference, &platform, &access, out, false)?;
    let hash = nar::sha256(out)?;
    if nar::parse_sha256(&attrs.output_hash) != Some(hash) {
        // Nix reports the mismatch next, with the hash it computed too.
        eprintln!(
            "nix2container: the image {source} pulled for {platform} has the hash {}; if that \
             is the image you want, set `sha256 = \"{}\";` in pullImage (the digest pins the \
             image, the sha256 pins the files pulled for it)",
            nar::to_sri(&hash),
            nar::to_sri(&hash),
        );
    }
    Ok(())
}

/// Attributes of a `pullImageFromManifest` blob, a flat fixed-output
/// derivation (`nix/pull-image-from-manifest.nix`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullBlobAttrs {
    outputs: Outputs,
    /// `registry/repository`.
    repository: String,
    digest: Digest,
    #[serde(default)]
    size: Option<u64>,
    tls_verify: bool,
    #[serde(default)]
    ssl_cert_file: Option<PathBuf>,
}

/// Builds one blob of `pullImageFromManifest` into `$out`.
pub fn pull_blob() -> Result<()> {
    let attrs: PullBlobAttrs = read_attrs()?;
    let reference: RegistryReference = attrs.repository.parse()?;
    let access = build_access(attrs.tls_verify, attrs.ssl_cert_file);
    let puller = Puller::connect(&reference, &access, false)?;
    let out = &attrs.outputs.out;
    puller.blob_to_file(&attrs.digest, attrs.size, out)?;
    Ok(())
}

/// Attributes of the derivation turning a pulled image into a base image
/// document (`baseImage` in `nix/internal.nix`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BaseImageAttrs {
    outputs: Outputs,
    builder: PathBuf,
    /// The image's name with its registry: where it was pulled from.
    reference: String,
    /// `pullImage`: the directory pulled.
    #[serde(default)]
    dir: Option<PathBuf>,
    /// `pullImageFromManifest`: the manifest, and each blob by hex digest.
    #[serde(default)]
    manifest: Option<serde_json::Value>,
    #[serde(default)]
    blobs: BTreeMap<String, PathBuf>,
}

/// Builds a base image document: the image JSON of a pulled image, whose
/// layers are the pulled blobs.
pub fn build_base_image() -> Result<()> {
    let attrs: BaseImageAttrs = read_attrs()?;
    let reference: RegistryReference = attrs.reference.parse()?;
    let origin = format!("{}/{}", reference.registry(), reference.repository());
    let manifest = match (&attrs.dir, &attrs.manifest) {
        (Some(dir), _) => {
            let path = dir.join(pull::MANIFEST_FILE);
            std::fs::read(&path).map_err(Error::io("reading", &path))?
        }
        (None, Some(manifest)) => serde_json::to_vec(manifest).expect("JSON serialises"),
        (None, None) => {
            return Err(Error::Invalid(
                "a base image derivation needs `dir` or `manifest`".into(),
            ));
        }
    };
    let blob = |digest: &Digest| -> Result<PathBuf> {
        match &attrs.dir {
            Some(dir) => Ok(pull::blob_file(dir, digest)),
            None => attrs.blobs.get(digest.digest()).cloned().ok_or_else(|| {
                Error::BaseImage(format!(
                    "the manifest of {origin} names the blob {digest}, which was not fetched"
                ))
            }),
        }
    };
    let document = base_image::read_pulled(&manifest, &blob, &origin, attrs.builder)?;
    let out = &attrs.outputs.out;
    std::fs::write(out, canonical_json_pretty(&document)).map_err(Error::io("writing", out))
}

/// `time` as RFC 3339 in UTC, to the second: `2024-05-13T09:31:10Z`.
fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Attributes of the Nix database derivation (`nix/build-image.nix`).
#[derive(Deserialize)]
struct NixDatabaseAttrs {
    outputs: Outputs,
    /// The closure of the layer outputs: every path they list.
    closure: Vec<ClosureEntry>,
    /// The image's layer derivation outputs, bottom first.
    layers: Vec<PathBuf>,
}

/// Name of the directory, under `/nix/var/nix/gcroots`, holding a root for
/// every registered path.
const GCROOTS_DIR: &str = "docker";

/// Builds the Nix database of an image (`initializeNixDatabase`):
/// `$out/nix/var/nix/db/{db.sqlite,schema}`, a GC root per registered path
/// in `$out/nix/var/nix/gcroots/docker`, and an empty `$out/nix/store/.links`.
///
/// Registered are the paths the layers put under /nix/store: not the
/// copyToRoot paths they only relocate (upstream #165), and not a path
/// whose references are not all in the image (an `ignore`d dependency),
/// since a Nix database only holds closed sets.
pub fn write_nix_database() -> Result<()> {
    let attrs: NixDatabaseAttrs = read_attrs()?;
    let mut in_store = BTreeSet::new();
    walk_layer_outputs(&attrs.layers, &mut HashSet::new(), &mut |document| {
        for layer in &document.layers {
            in_store.extend(
                layer
                    .paths
                    .iter()
                    .filter(|spec| spec.rewrite.is_none())
                    .map(|spec| spec.path.clone()),
            );
        }
    })?;
    let graph: HashMap<&PathBuf, &ClosureEntry> =
        attrs.closure.iter().map(|e| (&e.path, e)).collect();
    let mut registered = in_store.clone();
    loop {
        let incomplete: Vec<(PathBuf, PathBuf)> = registered
            .iter()
            .filter_map(|path| {
                let entry = graph.get(path)?;
                entry
                    .references
                    .iter()
                    .find(|r| !registered.contains(*r))
                    .map(|r| (path.clone(), r.clone()))
            })
            .collect();
        if incomplete.is_empty() {
            break;
        }
        for (path, missing) in incomplete {
            eprintln!(
                "nix2container: not registering {} in the Nix database: it refers to {}, which is not in the image's /nix/store",
                path.display(),
                missing.display()
            );
            registered.remove(&path);
        }
    }
    let registrations = registered
        .iter()
        .map(|path| {
            let entry = graph.get(path).ok_or_else(|| {
                Error::Invalid(format!(
                    "no closure information for {}: the layers are not in the derivation's exportReferencesGraph",
                    path.display()
                ))
            })?;
            let hash = entry.nar_hash.as_deref().ok_or_else(|| {
                Error::Invalid(format!("no NAR hash for {} in the closure graph", path.display()))
            })?;
            Ok(Registration {
                path: path.clone(),
                nar_hash: nix_database::database_nar_hash(hash)?,
                nar_size: entry.nar_size,
                references: entry.references.iter().cloned().collect(),
                ca: entry.ca.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let out = &attrs.outputs.out;
    let db = out.join("nix/var/nix/db");
    let gcroots = out.join("nix/var/nix/gcroots").join(GCROOTS_DIR);
    let links = out.join("nix/store/.links");
    for dir in [&db, &gcroots, &links] {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    }
    nix_database::write_database(&db.join("db.sqlite"), &registrations)?;
    let schema = db.join("schema");
    std::fs::write(&schema, NIX_SCHEMA_VERSION.to_string())
        .map_err(Error::io("writing", &schema))?;
    for path in &registered {
        let name = gcroots.join(path.file_name().unwrap_or(path.as_os_str()));
        std::os::unix::fs::symlink(path, &name).map_err(Error::io("creating", &name))?;
    }
    eprintln!(
        "nix2container: the Nix database registers {} store paths",
        registrations.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:01Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_715_592_670, "2024-05-13T09:31:10Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for &(seconds, expected) in cases {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            assert_eq!(rfc3339_utc(time), expected, "{seconds}");
        }
    }

    #[test]
    fn copy_to_root_puts_a_single_file_at_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("0123abcd-motd.txt");
        std::fs::write(&file, "hi").unwrap();
        let rewrite = copy_to_root_rewrite(&file).unwrap();
        assert_eq!(rewrite.repl, "/motd.txt");
        let tree = dir.path().join("4567-root");
        std::fs::create_dir(&tree).unwrap();
        assert_eq!(copy_to_root_rewrite(&tree).unwrap().repl, "");
    }
}
