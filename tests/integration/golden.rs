//! Golden layer digests: the tar format is a file format, and these trees
//! pin it. Each digest was produced by upstream nix2container's own code for
//! the same tree and paths file; a failure means our tars are no longer
//! byte-identical to upstream's, so recorded digests would stop matching.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::util::{run_in, stdout_of};

struct Golden {
    spec: &'static str,
    digest: &'static str,
    size: u64,
}

const GOLDEN: &[Golden] = &[
    // Upstream's TestTar, TestNewLayers and TestPerms (nix/*_test.go).
    Golden {
        spec: "upstream-tar.json",
        digest: "sha256:1ea63d00b937dc24c711265b80444cc9e7e63751fb7f349b160be61d31381983",
        size: 4096,
    },
    Golden {
        spec: "upstream-new-layers.json",
        digest: "sha256:cc45bd46eca903b0900ebb997dffd5778904dca9ec02e7375dd1e653dfb61e2e",
        size: 3072,
    },
    Golden {
        spec: "upstream-perms.json",
        digest: "sha256:adf74a52f9e1bcd7dab77193455fa06743b979cf5955148010e5becedba4f72d",
        size: 3072,
    },
    // Trees checked against upstream's tool built from its source.
    Golden {
        spec: "g1-long-names.json",
        digest: "sha256:80628dfeda170e7cfafb723470287729c63fef1d52c00ae2cebbb96568d2a436",
        size: 12288,
    },
    Golden {
        spec: "g2-modes-and-sizes.json",
        digest: "sha256:705b4b14b4b941587b6d66fd1ea56147841fe585be4c2a867e1a8669f23328a7",
        size: 12288,
    },
    Golden {
        spec: "g3-rewrite-perms-unicode.json",
        digest: "sha256:b29f03a63f84cf066bd47884c7169a64eb1bd12eb7ae50969e3e335a44ebf43a",
        size: 12800,
    },
];

/// Creates the tree a spec describes under `base/<tree>` and the paths file
/// in `base/run`, the directory to run from.
fn materialize(spec: &Value, base: &Path) {
    let tree = base.join(spec.get("tree").and_then(Value::as_str).unwrap_or("tree"));
    let entries = spec["entries"].as_array().expect("entries");
    for entry in entries {
        let path = tree.join(entry["path"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match entry["type"].as_str().unwrap() {
            "dir" => std::fs::create_dir_all(&path).unwrap(),
            "file" => {
                let content = match (&entry["content"], &entry["repeat"]) {
                    (Value::String(s), _) => s.clone().into_bytes(),
                    (_, Value::Array(r)) => {
                        vec![r[0].as_u64().unwrap() as u8; r[1].as_u64().unwrap() as usize]
                    }
                    _ => panic!("file without content: {entry}"),
                };
                std::fs::write(&path, content).unwrap();
            }
            "symlink" => {
                std::os::unix::fs::symlink(entry["target"].as_str().unwrap(), &path).unwrap()
            }
            "hardlink" => {
                std::fs::hard_link(tree.join(entry["target"].as_str().unwrap()), &path).unwrap()
            }
            other => panic!("unknown entry type {other}"),
        }
    }
    // Modes last and deepest first, so read-only directories block nothing.
    let mut with_modes: Vec<&Value> = entries.iter().filter(|e| e.get("mode").is_some()).collect();
    with_modes.sort_by_key(|e| std::cmp::Reverse(e["path"].as_str().unwrap().matches('/').count()));
    for entry in with_modes {
        let mode = u32::from_str_radix(entry["mode"].as_str().unwrap(), 8).unwrap();
        let path = tree.join(entry["path"].as_str().unwrap());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(base.join("run")).unwrap();
    std::fs::write(
        base.join("run/paths.json"),
        serde_json::to_vec(&spec["input"]).unwrap(),
    )
    .unwrap();
}

/// Read-only directories would make the temporary directory undeletable.
fn make_writable(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn golden_layer_digests() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    for golden in GOLDEN {
        let spec: Value =
            serde_json::from_slice(&std::fs::read(data.join(golden.spec)).unwrap()).unwrap();
        let base = tempfile::tempdir().unwrap();
        materialize(&spec, base.path());
        let output = run_in(
            &base.path().join("run"),
            &["tar-digest", "--paths", "paths.json"],
        );
        let got = stdout_of(&output);
        make_writable(base.path());
        assert_eq!(
            got.trim(),
            format!("{} {}", golden.digest, golden.size),
            "{}: {}. The layer tar format changed; digests recorded by earlier builds (ours and upstream's) would no longer match",
            golden.spec,
            spec["about"].as_str().unwrap_or("")
        );
    }
}
