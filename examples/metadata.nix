# The history entry of a layer, shown by `docker history`: who made it,
# with what, and why.
{ pkgs, buildImage, buildLayer }:

buildImage {
  name = "metadata";
  tag = "latest";
  config.entrypoint = [ "${pkgs.hello}/bin/hello" ];
  isolatedDeps = [
    (buildLayer {
      deps = [ pkgs.hello ];
      metadata = {
        created_by = "nix2container: the hello layer";
        author = "Jane Doe <jane@example.com>";
        comment = "hello and nothing else";
      };
    })
  ];
}
