# The examples, each an image built with the library. CI builds them all;
# `nix build .#examples.<name>` builds one.
{ pkgs, nix2container }:

let
  call = file: import file { inherit pkgs; inherit (nix2container) buildImage buildLayer; };
in
{
  basic = call ./basic.nix;
  hello = call ./hello.nix;
  bash = call ./bash.nix;
}
