# bench/rebuild.nix: the images bench/image.sh builds to time a rebuild after
# an application change. `app` is the text of the application script (change
# it to change the application); `depsMiB` of deterministic data is the
# dependency, in a layer of its own when `withDeps`.
{ helper, app, depsMiB ? 1024, withDeps ? true }:

let
  t = import ../tests/nix { inherit helper; };
  inherit (t) pkgs buildImage buildLayer;
  files = if depsMiB >= 64 then depsMiB / 64 else 1;
  fileBytes = depsMiB * 1048576 / files;
  deps = pkgs.runCommand "bench-deps-${toString depsMiB}MiB" { } ''
    mkdir -p $out/share/bench
    i=0
    while [ $i -lt ${toString files} ]; do
      # yes dies of SIGPIPE when head has enough.
      yes "nix2container benchmark dependency, file $i" | head -c ${toString fileBytes} > $out/share/bench/data-$i || true
      i=$((i + 1))
    done
  '';
  application = pkgs.writeScript "bench-app" ''
    echo ${builtins.toJSON app}
    ls ${if withDeps then deps else ""}
  '';
in
buildImage {
  name = "bench-rebuild";
  config.entrypoint = [ application ];
  isolatedDeps = if withDeps then [ (buildLayer { deps = [ deps ]; }) ] else [ ];
}
