# The examples, each an image built with the library. CI builds them all;
# `nix build .#examples.<name>` builds one. They use only packages that the
# tests' offline package set also has.
{ pkgs, nix2container }:

let
  call = file: import file { inherit pkgs; inherit (nix2container) buildImage buildLayer; };
in
{
  basic = call ./basic.nix;
  hello = call ./hello.nix;
  bash = call ./bash.nix;
  openbar = call ./openbar.nix;
  ownership = call ./ownership.nix;
  created = call ./created.nix;
  metadata = call ./metadata.nix;
  duplicated = call ./duplicated.nix;
  nonReproducible = call ./non-reproducible.nix;
  layered = call ./layered.nix;
  layeredBySize = call ./layered-by-size.nix;
  nested = call ./nested.nix;
  copyToRoot = call ./copy-to-root.nix;
  nix = call ./nix.nix;
  nix-user = call ./nix-user.nix;
}
