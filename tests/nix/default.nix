# The library wired to the offline package set, for end-to-end tests that
# need expressions of their own. The executable comes prebuilt (the tests
# build it once through the flake), so each test only builds images.
{ helper }:

let
  pkgs = import ../offline-nixpkgs { };
  nix2container = import ../../nix {
    inherit pkgs;
    nix2container-bin = builtins.storePath helper;
  };
in
{
  inherit pkgs;
  inherit (nix2container) buildImage buildLayer pullImage pullImageFromManifest;
}
