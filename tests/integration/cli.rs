//! The command line on bad input: a clear message naming the problem, exit
//! status 1 (2 for usage errors), and nothing written.

use std::path::Path;

use crate::util::{run_in, stdout_of};

/// An image JSON whose one layer holds `root`.
fn write_image(dir: &Path, root: &Path) -> std::path::PathBuf {
    std::fs::write(
        dir.join("paths.json"),
        format!(r#"[{{"path": "{}"}}]"#, root.display()),
    )
    .unwrap();
    let digest = stdout_of(&run_in(dir, &["tar-digest", "--paths", "paths.json"]));
    let (digest, size) = digest.trim().split_once(' ').unwrap();
    let image = serde_json::json!({
        "version": 1,
        "helper": env!("CARGO_BIN_EXE_nix2container"),
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {"Entrypoint": ["/bin/true"]},
        "layers": [{
            "digest": digest, "size": size.parse::<u64>().unwrap(),
            "media_type": "application/vnd.oci.image.layer.v1.tar",
            "diff_id": digest, "tar_size": size.parse::<u64>().unwrap(),
            "paths": [{"path": root}],
            "history": {"created_by": "test"}
        }]
    });
    let path = dir.join("image.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&image).unwrap()).unwrap();
    path
}

struct BadInput {
    name: &'static str,
    /// Edits the working directory before the run.
    setup: fn(&Path),
    args: &'static [&'static str],
    code: i32,
    message: &'static str,
}

const BAD_INPUTS: &[BadInput] = &[
    BadInput {
        name: "malformed image JSON",
        setup: |dir| std::fs::write(dir.join("image.json"), "{ nope").unwrap(),
        args: &["copy", "image.json", "oci:out"],
        code: 1,
        message: "image.json is not a valid image JSON",
    },
    BadInput {
        name: "future image JSON version",
        setup: |dir| std::fs::write(dir.join("image.json"), r#"{"version": 7}"#).unwrap(),
        args: &["copy", "image.json", "oci:out"],
        code: 1,
        message: "has image JSON version 7, but this nix2container reads version 1",
    },
    BadInput {
        name: "missing image JSON",
        setup: |_| {},
        args: &["inspect", "absent.json"],
        code: 1,
        message: "reading absent.json: No such file or directory",
    },
    BadInput {
        name: "unsupported destination",
        setup: |dir| {
            write_image(dir, &dir.join("root"));
        },
        args: &["copy", "image.json", "ftp://example.com/x"],
        code: 1,
        message: "unsupported destination \"ftp://example.com/x\": use oci:DIR[:TAG]",
    },
    BadInput {
        name: "bad image name",
        setup: |dir| {
            write_image(dir, &dir.join("root"));
        },
        args: &["copy", "image.json", "docker-daemon:Hello:latest"],
        code: 1,
        message: "invalid image reference \"Hello:latest\"",
    },
    BadInput {
        name: "missing store path in a paths file",
        setup: |dir| {
            std::fs::write(
                dir.join("paths.json"),
                r#"[{"path": "/nix/store/absent-x"}]"#,
            )
            .unwrap()
        },
        args: &["tar-digest", "--paths", "paths.json"],
        code: 1,
        message: "walking /nix/store/absent-x: No such file or directory",
    },
    BadInput {
        name: "invalid perms regex",
        setup: |dir| {
            std::fs::write(
                dir.join("paths.json"),
                r#"[{"path": "root", "perms": [{"regex": "(", "mode": "0644"}]}]"#,
            )
            .unwrap()
        },
        args: &["tar-digest", "--paths", "paths.json"],
        code: 1,
        message: "invalid regex \"(\" for root",
    },
    BadInput {
        name: "invalid perms mode",
        setup: |dir| {
            std::fs::write(
                dir.join("paths.json"),
                r#"[{"path": "root", "perms": [{"regex": "x", "mode": "0999"}]}]"#,
            )
            .unwrap()
        },
        args: &["tar-digest", "--paths", "paths.json"],
        code: 1,
        message: "invalid mode \"0999\"",
    },
    BadInput {
        name: "unknown subcommand",
        setup: |_| {},
        args: &["push"],
        code: 2,
        message: "unrecognized subcommand 'push'",
    },
];

#[test]
fn bad_input_gives_a_clear_error_and_no_output() {
    for case in BAD_INPUTS {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("root/file"), "x").unwrap();
        (case.setup)(dir.path());
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let output = run_in(dir.path(), case.args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(case.code),
            "{}: {stderr}",
            case.name
        );
        assert!(
            stderr.contains(case.message),
            "{}: expected {:?} in:\n{stderr}",
            case.name,
            case.message
        );
        assert!(output.stdout.is_empty(), "{}: wrote to stdout", case.name);
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after, "{}: left files behind", case.name);
    }
}

#[test]
fn tar_refuses_a_terminal_but_streams_to_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("paths.json"), r#"[{"path": "root"}]"#).unwrap();
    let digest = stdout_of(&run_in(
        dir.path(),
        &["tar-digest", "--paths", "paths.json"],
    ));
    let output = run_in(dir.path(), &["tar", "--paths", "paths.json"]);
    let tar = &output.stdout;
    assert!(output.status.success());
    let expected = format!("{} {}", nix2container::hash::sha256_of(tar), tar.len());
    assert_eq!(digest.trim(), expected);
}

#[test]
fn inspect_shows_layers_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    write_image(dir.path(), &dir.path().join("root"));
    let summary = stdout_of(&run_in(dir.path(), &["inspect", "image.json"]));
    assert!(summary.contains("platform  linux/amd64"), "{summary}");
    assert!(
        summary.contains(&format!("  {}", dir.path().join("root").display())),
        "{summary}"
    );
    let manifest: serde_json::Value = serde_json::from_str(&stdout_of(&run_in(
        dir.path(),
        &["inspect", "image.json", "--manifest"],
    )))
    .unwrap();
    let config = stdout_of(&run_in(dir.path(), &["inspect", "image.json", "--config"]));
    assert_eq!(
        manifest["config"]["digest"],
        nix2container::hash::sha256_of(config.as_bytes()).to_string()
    );
    assert_eq!(manifest["config"]["size"], config.len());
}

#[test]
fn tar_digest_prints_the_compressed_blob_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/file"), "x".repeat(10_000)).unwrap();
    std::fs::write(dir.path().join("paths.json"), r#"[{"path": "root"}]"#).unwrap();
    let plain = stdout_of(&run_in(
        dir.path(),
        &["tar-digest", "--paths", "paths.json"],
    ));
    for algorithm in ["gzip", "zstd"] {
        let both = stdout_of(&run_in(
            dir.path(),
            &[
                "tar-digest",
                "--paths",
                "paths.json",
                "--compression",
                algorithm,
            ],
        ));
        let lines: Vec<&str> = both.lines().collect();
        assert_eq!(lines.len(), 2, "{both}");
        assert_eq!(
            lines[0],
            plain.trim(),
            "the tar does not depend on compression"
        );
        let (_, size) = lines[1].split_once(' ').unwrap();
        assert!(size.parse::<u64>().unwrap() < 2_000, "{algorithm}: {both}");
    }
    let bad = run_in(
        dir.path(),
        &["tar-digest", "--paths", "paths.json", "--compression", "xz"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown compression \"xz\""));
}
