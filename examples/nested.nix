# Layers over layers: each store path is in exactly one layer, the lowest
# that has it, however the parents are combined.
{ pkgs, buildImage, buildLayer }:

let
  # Prints hello's greeting and the kernel's name: a closure of a few
  # paths (with a real nixpkgs, many more: glibc, …).
  greet = pkgs.writeShellScript "greet" ''
    ${pkgs.hello}/bin/hello
    ${pkgs.coreutils}/bin/uname -s
  '';
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
