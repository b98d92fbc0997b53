//! `containers-storage:` destinations: Podman's storage, through a Podman
//! service the test starts (its Docker-compatible API), or through the
//! `podman load` command when no service listens. Each test uses private
//! storage; the image ID podman reports must be the config digest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::images::{CREATED, TestImage, hello_image};
use crate::process::{answers_within, spawn_tied_to_process};
use crate::util::{nix2container, run_ok, stdout_ok};

/// Settings that let podman run here as root in a VM without all cgroup
/// controllers, and keep its events out of the journal.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = [ "nofile=1024:1024", "nproc=1000:1000" ]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

/// Private podman storage under a fresh directory.
struct Storage {
    dir: tempfile::TempDir,
}

impl Storage {
    fn new() -> Storage {
        // Short: the service socket lives below it.
        let dir = tempfile::Builder::new()
            .prefix("n2c-podman-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("containers.conf"), CONTAINERS_CONF).unwrap();
        let storage_conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/runroot\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("storage.conf"), storage_conf).unwrap();
        std::fs::create_dir(dir.path().join("xdg")).unwrap();
        Storage { dir }
    }

    /// `podman` using this storage only.
    fn podman(&self) -> Command {
        let mut command = Command::new("podman");
        self.environment(&mut command);
        command
    }

    fn environment(&self, command: &mut Command) {
        command
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            )
            .env("XDG_RUNTIME_DIR", self.dir.path().join("xdg"))
            .env_remove("CONTAINER_HOST");
    }

    /// Starts `podman system service` on this storage; returns its socket.
    fn serve(&self) -> PathBuf {
        let socket = self.dir.path().join("podman.sock");
        let mut command = self.podman();
        command
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        spawn_tied_to_process(command, "podman system service (apt-get install podman)");
        assert!(
            answers_within(&socket, Duration::from_secs(30)),
            "the podman service did not answer on {}",
            socket.display()
        );
        socket
    }

    /// The ID of the image `name`, as podman lists it.
    fn image_id(&self, name: &str) -> String {
        stdout_ok(
            self.podman()
                .args(["image", "inspect", "--format", "{{.Id}}", name]),
        )
        .trim()
        .to_owned()
    }
}

fn copy_to_podman(image: &TestImage, storage: &Storage, socket: Option<&Path>, name: &str) {
    let mut command = nix2container();
    storage.environment(&mut command);
    if let Some(socket) = socket {
        command.env("CONTAINER_HOST", format!("unix://{}", socket.display()));
    }
    run_ok(
        command
            .arg("copy")
            .arg(&image.json)
            .arg(format!("containers-storage:{name}")),
    );
}

/// Copies the hello image to new storage, through a service or not, and
/// checks the ID podman lists.
fn assert_loads(through_service: bool, name: &str) {
    let (image, storage) = (hello_image(CREATED), Storage::new());
    let socket = through_service.then(|| storage.serve());
    copy_to_podman(&image, &storage, socket.as_deref(), name);
    let id = storage.image_id(&format!("localhost/{name}"));
    assert_eq!(format!("sha256:{id}"), image.id());
}

#[test]
fn podman_loads_through_its_service_api() {
    assert_loads(true, "podtest:api");
}

#[test]
fn podman_loads_through_the_command_without_a_service() {
    assert_loads(false, "podtest:command");
}
