//! End-to-end tests with real parts: Nix builds (sandboxed) with the offline
//! package set, the `copy` command, umoci, oci-image-tool, skopeo, and a Docker
//! daemon and registries the tests start themselves. Needs nix, dockerd,
//! docker-registry, htpasswd, openssl, umoci, oci-image-tool, skopeo and gcc on
//! PATH (`.ci/run` installs them); they fail rather than skip without them.

mod base_images;
#[path = "../support/dockerd.rs"]
mod dockerd;
mod examples;
#[path = "../support/faults.rs"]
mod faults;
#[path = "../support/http.rs"]
mod http;
#[path = "../support/images.rs"]
mod images;
mod nix;
mod nix_errors;
mod options;
mod podman;
#[path = "../support/process.rs"]
mod process;
mod registry;
#[path = "../support/registry.rs"]
mod registry_server;
#[path = "../support/token.rs"]
mod token;
mod transport;
#[path = "../support/util.rs"]
mod util;
