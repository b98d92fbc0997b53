# An interactive shell with core utilities in /bin: copyToRoot puts the
# content of a buildEnv at `/`, while its dependencies stay in /nix/store.
{ pkgs, buildImage, ... }:

buildImage {
  name = "bash";
  tag = "latest";
  copyToRoot = pkgs.buildEnv {
    name = "root";
    paths = [ pkgs.bashInteractive pkgs.coreutils ];
  };
  config = {
    Cmd = [ "/bin/bash" ];
    Env = [ "PATH=/bin" ];
  };
}
