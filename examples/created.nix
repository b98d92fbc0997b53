# A fixed creation date in the image config (the default is
# 0001-01-01T00:00:00Z; "now" gives the time of the build).
{ pkgs, buildImage, ... }:

buildImage {
  name = "created";
  tag = "latest";
  created = "2024-05-13T09:31:10Z";
  config.entrypoint = [ "${pkgs.hello}/bin/hello" ];
}
