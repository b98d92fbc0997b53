# A layer over two identical parents: the parent appears once in the image,
# which has exactly two layers (upstream #186 listed it twice).
{ pkgs, buildImage, buildLayer }:

let
  bash = buildLayer { deps = [ pkgs.bash ]; };
  sameBash = buildLayer { deps = [ pkgs.bash ]; };
in
buildImage {
  name = "duplicated";
  tag = "latest";
  config.entrypoint = [ "${pkgs.hello}/bin/hello" ];
  isolatedDeps = [ (buildLayer { deps = [ pkgs.hello ]; layers = [ bash sameBash ]; }) ];
}
