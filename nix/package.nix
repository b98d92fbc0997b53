# The nix2container executable: the builder of the library's derivations and
# the command-line tool that copies images.
{ rustPlatform }:

let
  manifest = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package;

  # Only what cargo needs to build and to run the tests that can run inside a
  # build: editing Nix files, docs, examples or the end-to-end suites must not
  # rebuild the executable (and with it every layer and image).
  wanted = [ "Cargo.toml" "Cargo.lock" "src" "tests/integration" "tests/support" "tests/data" ];
  root = toString ../.;
  src = builtins.path {
    name = "nix2container-source";
    path = ../.;
    filter = path: _type:
      let relative = builtins.substring (builtins.stringLength root + 1) (-1) (toString path);
      in builtins.any (w: relative == w || builtins.substring 0 (builtins.stringLength w + 1) relative == "${w}/"
        || builtins.substring 0 (builtins.stringLength relative + 1) w == "${relative}/") wanted;
  };
in
rustPlatform.buildRustPackage {
  pname = manifest.name;
  inherit (manifest) version;
  inherit src;
  cargoLock.lockFile = ../Cargo.lock;
  # The crate's own tests include end-to-end suites that need Nix, Docker and
  # a registry; inside a build only the self-contained ones can run.
  cargoTestFlags = [ "--lib" "--test" "integration" ];
  # The golden trees include setuid and setgid files, which Nix's build
  # sandbox does not let a builder create.
  checkFlags = [ "--skip" "golden" ];
  meta = {
    description = manifest.description;
    mainProgram = "nix2container";
    license = "Apache-2.0";
  };
}
