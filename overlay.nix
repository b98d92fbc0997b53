# Adds `pkgs.nix2container` (buildImage, buildLayer, nix2container-bin).
final: _prev: {
  nix2container = import ./nix { pkgs = final; };
}
