# Layers chosen by size: the largest store paths get a layer each (with the
# paths only they use), so that images sharing them share those layers; the
# small rest shares one layer.
{ pkgs, buildImage, ... }:

let
  # Prints hello's greeting and the kernel's name (./greet.nix).
  greet = import ./greet.nix { inherit pkgs; };
in
buildImage {
  name = "layered-by-size";
  tag = "latest";
  config.entrypoint = [ greet ];
  maxLayers = 4;
  layering = "size";
}
