# The nix2container Nix library: wires the public functions together. Each
# lives in its own file; docs/nix-api.md documents them.
{ pkgs
, # The nix2container executable. It runs on the build machine.
  nix2container-bin ? (pkgs.buildPackages or pkgs).callPackage ./package.nix { }
}:

let
  internal = import ./internal.nix { inherit pkgs; helper = nix2container-bin; };
  buildLayer = import ./build-layer.nix { inherit internal; };
  buildImage = import ./build-image.nix { inherit internal pkgs buildLayer; };
  pullImage = import ./pull-image.nix { inherit internal pkgs; };
  pullImageFromManifest = import ./pull-image-from-manifest.nix { inherit internal pkgs; };
in
{
  inherit nix2container-bin buildLayer buildImage pullImage pullImageFromManifest;
}
