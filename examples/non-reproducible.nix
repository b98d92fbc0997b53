# A layer whose tar is stored in its output (reproducible = false): copies
# read that tar instead of regenerating it from the store, so a store path
# that would not rebuild identically (here, a build date) is shipped as it
# was when the layer was built.
{ pkgs, buildImage, buildLayer }:

let
  stamp = pkgs.runCommand "build-date" { } ''
    mkdir -p $out
    date > $out/date
  '';
  show = pkgs.writeScript "show-date" ''
    read -r date < ${stamp}/date
    echo "built on $date"
  '';
in
buildImage {
  name = "non-reproducible";
  tag = "latest";
  config.entrypoint = [ "${pkgs.bash}/bin/bash" show ];
  isolatedDeps = [
    (buildLayer { deps = [ stamp pkgs.bash ]; maxLayers = 2; reproducible = false; })
  ];
}
