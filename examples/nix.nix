# An image that Nix can run in: a Nix database registering every store
# path of the image (hello's, from its own layer, included). With a real
# nixpkgs, pkgs.nix is added, so `nix-store -qR` works in the container;
# the tests' offline package set has no Nix, so they lend the machine's Nix
# to the container to query the database there.
{ pkgs, buildImage, buildLayer }:

buildImage {
  name = "nix";
  tag = "latest";
  initializeNixDatabase = true;
  copyToRoot = pkgs.buildEnv {
    name = "root";
    paths = [ pkgs.bashInteractive pkgs.coreutils ] ++ (if pkgs ? nix then [ pkgs.nix ] else [ ]);
  };
  isolatedDeps = [ (buildLayer { deps = [ pkgs.hello ]; }) ];
  config = {
    Cmd = [ "/bin/bash" ];
    Env = [ "PATH=/bin" ];
  };
}
