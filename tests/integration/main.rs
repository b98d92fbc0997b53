//! Integration tests that need no Nix and no daemons: the command line and
//! the golden layer digests. One binary, so it links once.

mod cli;
mod golden;
mod util;
