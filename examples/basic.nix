# The smallest useful image: hello as the entrypoint. Its closure becomes
# the single layer.
{ pkgs, buildImage, ... }:

buildImage {
  name = "basic";
  tag = "latest";
  config = {
    entrypoint = [ "${pkgs.hello}/bin/hello" ];
  };
}
