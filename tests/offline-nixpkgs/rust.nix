# Stand-in for nixpkgs' rustPlatform. buildRustPackage really compiles the crate, with the cargo
# installed by rustup for the user running the build (no Rust toolchain in this package set), so it
# runs outside the sandbox (__noChroot; needs `sandbox = relaxed` or `sandbox = false`).
# Differences from nixpkgs: dependencies come from the machine's cargo cache ($CARGO_HOME, or
# crates.io) instead of a vendored, hash-checked directory, so cargoHash/cargoSha256 and
# cargoLock.outputHashes are accepted and ignored; only the release profile is built. As in nixpkgs,
# doCheck defaults to true and runs `cargo test --release $cargoTestFlags -- $checkFlags`.
{ system, bash }:
{
  buildRustPackage =
    { pname, version, src, cargoLock ? { }, cargoBuildFlags ? [ ], cargoTestFlags ? [ ]
    , checkFlags ? [ ], doCheck ? true
    , meta ? { }, passthru ? { }, ... }@args:
    let
      drv = derivation (removeAttrs args [ "cargoLock" "cargoHash" "cargoSha256" "meta" "passthru" ] // {
        name = "${pname}-${version}";
        inherit system src cargoBuildFlags cargoTestFlags checkFlags doCheck;
        # Checked against src's Cargo.lock (copied in if src has none), like nixpkgs' cargoLock.
        lockFile = cargoLock.lockFile or "";
        builder = "${bash}/bin/bash";
        args = [ ./build-rust-package.sh ];
        __noChroot = true;
        preferLocalBuild = true;
        allowSubstitutes = false;
      });
    in drv // passthru // { inherit pname version meta; };
}
