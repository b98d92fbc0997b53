# Ownership of one file: perms match the regex against the file's path in
# the store, so test1.txt gets uid and gid 1001 and test2.txt stays root's.
{ pkgs, buildImage, ... }:

let
  files = pkgs.runCommand "files" { } ''
    mkdir -p $out/tmp
    touch $out/tmp/test1.txt $out/tmp/test2.txt
  '';
in
buildImage {
  name = "ownership";
  tag = "latest";
  copyToRoot = [
    files
    (pkgs.buildEnv { name = "root"; paths = [ pkgs.bashInteractive pkgs.coreutils ]; })
  ];
  perms = [
    { path = files; regex = "/tmp/test1\\.txt$"; uid = 1001; gid = 1001; }
  ];
  config = {
    Cmd = [ "/bin/ls" "-ln" "/tmp" ];
    Env = [ "PATH=/bin" ];
  };
}
