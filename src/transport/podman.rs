//! Loading an image into Podman's local storage with the `podman` command,
//! when no Podman service is listening (the common case: the service is
//! socket-activated or not set up at all).
//!
//! The docker archive streams into `podman load` on its standard input. When
//! a layer's bytes turn out wrong, `podman` is killed before the archive
//! ends, so it loads nothing.

use std::io::{self, Read};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;

use super::Progress;
use super::archive::ArchiveStream;
use super::docker;

/// The program run; found on `PATH`.
const PODMAN: &str = "podman";

/// Loads `image` as `reference` with `podman load`.
pub(crate) fn load(image: &Image, reference: &Reference, progress: Progress) -> Result<()> {
    let failed = |message: String| Error::Daemon {
        daemon: "podman command",
        endpoint: PODMAN.into(),
        message,
    };
    let mut child = Command::new(PODMAN)
        .args(["load", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot run it ({e}); install podman, or start `podman system service` and set CONTAINER_HOST"
            ))
        })?;
    let mut stream = ArchiveStream::new(
        image,
        docker::archive_entries(image, Some(reference)),
        progress,
    );
    let failure = stream.failure();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let copied = io::copy(&mut stream, &mut stdin);
    drop(stdin);
    if let Some(error) = failure.take() {
        // Nothing complete reached podman; make sure it stores nothing.
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| failed(format!("waiting for it failed: {e}")))?;
    match (copied, status.success()) {
        (Ok(_), true) => Ok(()),
        (_, false) => Err(failed(format!(
            "`podman load` failed ({status}): {}",
            stderr.trim()
        ))),
        (Err(e), true) => Err(failed(format!("writing to `podman load` failed: {e}"))),
    }
}
