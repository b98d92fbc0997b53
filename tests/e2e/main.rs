//! End-to-end tests with real parts: Nix builds (sandboxed) with the offline
//! package set, the `copy` command, umoci, oci-image-tool, skopeo and a Docker
//! daemon the tests start themselves. Needs nix, dockerd, umoci,
//! oci-image-tool, skopeo and gcc on PATH (`.ci/run` installs them); they
//! fail rather than skip without them.

#[path = "../support/dockerd.rs"]
mod dockerd;
mod examples;
#[path = "../support/images.rs"]
mod images;
mod nix;
mod nix_errors;
mod podman;
#[path = "../support/process.rs"]
mod process;
mod transport;
#[path = "../support/util.rs"]
mod util;
