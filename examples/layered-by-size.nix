# Layers chosen by size: the largest store paths get a layer each (with the
# paths only they use), so that images sharing them share those layers; the
# small rest shares one layer.
{ pkgs, buildImage, ... }:

let
  # Prints hello's greeting and the kernel's name: a closure of a few
  # paths (with a real nixpkgs, many more: glibc, …).
  greet = pkgs.writeShellScript "greet" ''
    ${pkgs.hello}/bin/hello
    ${pkgs.coreutils}/bin/uname -s
  '';
in
buildImage {
  name = "layered-by-size";
  tag = "latest";
  config.entrypoint = [ greet ];
  maxLayers = 4;
  layering = "size";
}
