//! nix2container: container images from Nix closures, without tarballs in
//! the store.
//!
//! A layer is recorded as the list of store paths it holds plus the digest of
//! the tar those paths produce ([`tar`]); the tar is regenerated, bit for
//! bit, whenever a transport needs its bytes. [`image::Image`] opens the
//! image JSON a Nix build writes; [`transport`] copies it somewhere.

pub mod base_image;
pub mod cli;
pub mod closure;
pub mod compression;
pub mod document;
pub mod error;
pub mod hash;
pub mod image;
pub mod layer;
pub mod nar;
pub mod nix_builder;
pub mod nix_database;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod tar;
pub mod transport;

pub use error::{Error, Result};
pub use oci_spec;
