# Several copyToRoot roots merged at `/`: hello and bash both have a /bin,
# which holds both programs; a single file (writeText "motd") lands at
# /motd, named after its store path without the hash.
{ pkgs, buildImage, ... }:

buildImage {
  name = "copy-to-root";
  tag = "latest";
  copyToRoot = [ pkgs.hello pkgs.bash (pkgs.writeText "motd" "Welcome aboard\n") ];
  config.Cmd = [ "/bin/bash" "-c" "/bin/hello && read -r line < /motd && echo $line" ];
}
