# A world-writable /tmp: perms give a directory of a copyToRoot root the
# mode 1777 (store paths are read-only, 0555), like /tmp on any system.
{ pkgs, buildImage, ... }:

let
  tmp = pkgs.runCommand "tmp" { } "mkdir -p $out/tmp";
in
buildImage {
  name = "openbar";
  tag = "latest";
  copyToRoot = [
    tmp
    (pkgs.buildEnv { name = "root"; paths = [ pkgs.bashInteractive pkgs.coreutils ]; })
  ];
  perms = [
    { path = tmp; regex = "/tmp$"; mode = "1777"; }
  ];
  config = {
    Cmd = [ "/bin/ls" "-ld" "/tmp" ];
    Env = [ "PATH=/bin" ];
  };
}
