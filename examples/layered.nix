# Three layers from one closure (upstream's popularity split): the two most
# referenced store paths get a layer each, the others share the third.
{ pkgs, buildImage, ... }:

let
  # Prints hello's greeting and the kernel's name (./greet.nix).
  greet = import ./greet.nix { inherit pkgs; };
in
buildImage {
  name = "layered";
  tag = "latest";
  config.entrypoint = [ greet ];
  maxLayers = 3;
}
