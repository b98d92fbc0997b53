# Three layers from one closure (upstream's popularity split): the two most
# referenced store paths get a layer each, the others share the third.
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
  name = "layered";
  tag = "latest";
  config.entrypoint = [ greet ];
  maxLayers = 3;
}
