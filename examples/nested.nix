# Layers over layers: each store path is in exactly one layer, the lowest
# that has it, however the parents are combined.
{ pkgs, buildImage, buildLayer }:

let
  # Prints hello's greeting and the kernel's name (./greet.nix).
  greet = import ./greet.nix { inherit pkgs; };
  coreutils = buildLayer { deps = [ pkgs.coreutils ]; };
  bash = buildLayer { deps = [ pkgs.bash ]; layers = [ coreutils ]; };
  app = buildLayer { deps = [ greet ]; layers = [ bash coreutils ]; };
in
buildImage {
  name = "nested";
  tag = "latest";
  config.entrypoint = [ greet ];
  isolatedDeps = [ app ];
}
