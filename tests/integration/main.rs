//! Integration tests that need no Nix and no daemons: the command line and
//! the golden layer digests. One binary, so it links once; it also runs
//! inside the Nix build of the package.

mod cli;
mod golden;
#[path = "../support/util.rs"]
mod util;
