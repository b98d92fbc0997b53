//! Test images without Nix.
//!
//! [`hello_image`] lays out two directories the way store paths would be (a
//! static `hello` binary; a few files, modes and a symlink), computes their
//! layers with the library, and writes the image JSON a `buildImage`
//! derivation would write. [`snapshot`] describes a file tree, to compare
//! what a container tool unpacked with what went in; [`umoci_unpack`] and
//! [`validate_layout`] run the strictest readers of OCI layouts.
//!
//! Include it with `#[path = "../support/images.rs"] mod images;`. Needs a C
//! compiler with a static libc (`gcc`, `libc6-dev`).

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix2container::compression::Compression;
use nix2container::document::{IMAGE_VERSION, ImageDocument};
use nix2container::image::Image;
use nix2container::layer::Layer;
use nix2container::oci_spec::image::{Config, ConfigBuilder, History};
use nix2container::tar::{PathSpec, Rewrite};

use crate::util::{assert_success, path_str, tool};

/// What `/bin/hello` prints.
pub const HELLO_OUTPUT: &str = "Hello, world!\n";

/// `created` of the images, unless a test needs two different ones.
pub const CREATED: &str = "1970-01-01T00:00:01Z";

/// An image JSON and the directories its layers are made of.
pub struct TestImage {
    dir: tempfile::TempDir,
    /// The image JSON.
    pub json: PathBuf,
    /// The layer roots, bottom first; their contents land at `/`.
    pub layer_roots: Vec<PathBuf>,
    /// The document in `json`.
    pub document: ImageDocument,
}

impl TestImage {
    /// A scratch directory that lives as long as the image.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The image as transports see it.
    pub fn image(&self) -> Image {
        Image::from_document(self.document.clone())
    }

    /// The config digest, which Docker takes as the image ID.
    pub fn id(&self) -> String {
        self.image().config_descriptor().digest().to_string()
    }

    /// The file tree the image's layers add up to.
    pub fn rootfs(&self) -> BTreeMap<PathBuf, Node> {
        let mut tree = BTreeMap::new();
        for root in &self.layer_roots {
            tree.extend(snapshot(root));
        }
        tree
    }
}

/// What varies between test images.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec<'a> {
    /// The config's `created`: changes the config and manifest digests.
    pub created: &'a str,
    /// What `/etc/greeting` holds: changes the second layer's digests.
    pub greeting: &'a str,
    /// How both layer blobs are compressed.
    pub compression: Compression,
}

impl Default for ImageSpec<'_> {
    fn default() -> Self {
        ImageSpec {
            created: CREATED,
            greeting: "Hello from a layer\n",
            compression: Compression::None,
        }
    }
}

/// [`build_image`] of the default spec but for `created`.
pub fn hello_image(created: &str) -> TestImage {
    build_image(&ImageSpec {
        created,
        ..ImageSpec::default()
    })
}

/// A two-layer image whose entrypoint prints [`HELLO_OUTPUT`]: `/bin/hello`
/// and `/bin/hi` (a symlink) in the first layer; `/etc/greeting` (0644),
/// `/etc/secret` (0600) and `/var/empty` (a 0700 directory) in the second.
/// Two images built from the same spec are identical, digests included,
/// though their files are in different directories.
pub fn build_image(spec: &ImageSpec<'_>) -> TestImage {
    let ImageSpec {
        created,
        greeting,
        compression,
    } = *spec;
    let dir = tempfile::tempdir().unwrap();
    let programs = dir.path().join("hello-root");
    let files = dir.path().join("files-root");
    std::fs::create_dir_all(programs.join("bin")).unwrap();
    std::fs::copy(hello_binary(), programs.join("bin/hello")).unwrap();
    std::os::unix::fs::symlink("hello", programs.join("bin/hi")).unwrap();
    std::fs::create_dir_all(files.join("etc")).unwrap();
    std::fs::create_dir_all(files.join("var/empty")).unwrap();
    std::fs::write(files.join("etc/greeting"), greeting).unwrap();
    std::fs::write(files.join("etc/secret"), "s3cret\n").unwrap();
    set_mode(&files.join("etc/greeting"), 0o644);
    set_mode(&files.join("etc/secret"), 0o600);
    set_mode(&files.join("var/empty"), 0o700);

    let layer_roots = vec![programs, files];
    let layers = layer_roots
        .iter()
        .enumerate()
        // Not the path: images made from different directories are identical.
        .map(|(index, root)| layer_at_root(root, &format!("test layer {index}"), compression))
        .collect();
    let config = ConfigBuilder::default()
        .entrypoint(vec!["/bin/hello".to_owned()])
        .build()
        .unwrap();
    let (json, document) = write_image(dir.path(), created, config, layers);
    TestImage {
        dir,
        json,
        layer_roots,
        document,
    }
}

/// Writes the image JSON a `buildImage` derivation would write for
/// `layers` and `config` to `dir/image.json`; returns its path and the
/// document.
pub fn write_image(
    dir: &Path,
    created: &str,
    config: Config,
    layers: Vec<Layer>,
) -> (PathBuf, ImageDocument) {
    let document = ImageDocument {
        version: IMAGE_VERSION,
        helper: env!("CARGO_BIN_EXE_nix2container").into(),
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
        created: created.into(),
        config,
        layers,
        history: None,
    };
    let json = dir.join("image.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    (json, document)
}

/// The layer of `root`, with `root`'s contents at `/`.
pub fn layer_at_root(root: &Path, created_by: &str, compression: Compression) -> Layer {
    let spec = PathSpec {
        path: root.to_path_buf(),
        rewrite: Some(Rewrite {
            regex: format!("^{}", regex::escape(&root.to_string_lossy())),
            repl: String::new(),
        }),
        perms: Vec::new(),
    };
    let mut history = History::default();
    history.set_created_by(Some(created_by.to_owned()));
    Layer::compute(vec![spec], history, compression).unwrap()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A static `hello` binary, compiled once per test process.
pub fn hello_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hello-binary");
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join(format!("hello-{}.c", std::process::id()));
        let temporary = dir.join(format!("hello-{}", std::process::id()));
        std::fs::write(
            &source,
            "#include <stdio.h>\nint main(void) { fputs(\"Hello, world!\\n\", stdout); return 0; }\n",
        )
        .unwrap();
        let output = Command::new("gcc")
            .args(["-static", "-Os", "-o"])
            .arg(&temporary)
            .arg(&source)
            .output()
            .expect("gcc runs (apt-get install gcc libc6-dev)");
        assert_success(&output, "gcc -static");
        // Other test processes may be compiling too: publish atomically.
        let binary = dir.join("hello");
        std::fs::rename(&temporary, &binary).unwrap();
        std::fs::remove_file(&source).unwrap();
        binary
    })
}

/// How a file looks, for comparing trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Permission bits and setuid, setgid, sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// What the file holds.
    pub kind: Kind,
}

/// The type and content of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Directory,
    /// A regular file's content.
    File(Vec<u8>),
    /// A symlink's target.
    Symlink(PathBuf),
}

/// Every file below `root` (not `root` itself), by path relative to `root`.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.path().symlink_metadata().unwrap();
            let kind = if metadata.is_dir() {
                Kind::Directory
            } else if metadata.is_symlink() {
                Kind::Symlink(std::fs::read_link(entry.path()).unwrap())
            } else {
                Kind::File(std::fs::read(entry.path()).unwrap())
            };
            let node = Node {
                mode: if metadata.is_symlink() {
                    0
                } else {
                    metadata.mode() & 0o7777
                },
                uid: metadata.uid(),
                gid: metadata.gid(),
                kind,
            };
            (entry.path().strip_prefix(root).unwrap().to_path_buf(), node)
        })
        .collect()
}

/// The paths at which two snapshots differ.
pub fn differences<'a>(
    before: &'a BTreeMap<PathBuf, Node>,
    after: &'a BTreeMap<PathBuf, Node>,
) -> Vec<&'a PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect()
}

/// Unpacks the image `tag` of the OCI layout `layout` into the bundle
/// `bundle` with umoci, the strictest reader (digests, sizes, media types,
/// diff_ids); returns the bundle's root file system.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{tag}", path_str(layout)),
            path_str(bundle),
        ],
    );
    bundle.join("rootfs")
}

/// Checks the OCI layout `layout` with oci-image-tool.
pub fn validate_layout(layout: &Path) {
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", path_str(layout)],
    );
}

/// Unpacks `layout:tag` into `bundle` as [`umoci_unpack`] does, and asserts
/// that the files are `expected`; `what` names the image in the message.
pub fn assert_unpacks_to(
    expected: &BTreeMap<PathBuf, Node>,
    layout: &Path,
    tag: &str,
    bundle: &Path,
    what: &str,
) {
    let unpacked = snapshot(&umoci_unpack(layout, tag, bundle));
    let differences = differences(expected, &unpacked);
    assert!(
        differences.is_empty(),
        "{what} unpacks differently from its source at {differences:?}"
    );
}
