# Nix for a user who is not root: the database and /nix, /nix/store and
# /nix/var belong to uid and gid 1000 (nixUid, nixGid), the user the
# container runs as, whose home perms make its own.
{ pkgs, buildImage, ... }:

let
  accounts = pkgs.runCommand "accounts" { } ''
    mkdir -p $out/etc $out/home/user
    echo 'root:x:0:0:root:/root:/bin/bash' > $out/etc/passwd
    echo 'user:x:1000:1000:user:/home/user:/bin/bash' >> $out/etc/passwd
    echo 'root:x:0:' > $out/etc/group
    echo 'user:x:1000:' >> $out/etc/group
  '';
in
buildImage {
  name = "nix-user";
  tag = "latest";
  initializeNixDatabase = true;
  nixUid = 1000;
  nixGid = 1000;
  copyToRoot = [
    accounts
    (pkgs.buildEnv {
      name = "root";
      paths = [ pkgs.bashInteractive pkgs.coreutils ] ++ (if pkgs ? nix then [ pkgs.nix ] else [ ]);
    })
  ];
  perms = [
    { path = accounts; regex = "/home/user$"; mode = "0744"; uid = 1000; gid = 1000; uname = "user"; gname = "user"; }
  ];
  config = {
    User = "user";
    WorkingDir = "/home/user";
    Cmd = [ "/bin/bash" ];
    Env = [ "PATH=/bin" "HOME=/home/user" "USER=user" ];
  };
}
