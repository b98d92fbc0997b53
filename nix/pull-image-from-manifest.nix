# pullImageFromManifest :: set -> base image
#
# A base image for buildImage's `fromImage`, pinned by a manifest file
# committed with the expression (the lock file): one fixed-output
# derivation per blob (config and layers), whose hash is the blob's
# registry digest, so no other hash is needed; then the image JSON whose
# layers are those blobs. `getManifest` prints the manifest to commit, or
# to refresh it. Documented in docs/nix-api.md.
{ internal, pkgs }:

{
  # The image's name in its registry: "library/alpine", "me/base".
  imageName
, # The manifest (a file, e.g. ./manifest.json) as `getManifest` prints it.
  imageManifest ? null
, # For getManifest: the tag to read, and the platform to choose from an
  # image index.
  imageTag ? "latest"
, os ? "linux"
, arch ? internal.goArch pkgs.stdenv.hostPlatform.system
, # false: no TLS certificate check, plain HTTP allowed (local registries).
  tlsVerify ? true
, # The registry's address.
  registryUrl ? "registry-1.docker.io"
, # CA certificates the downloads trust (the sandbox has none): nixpkgs'
  # cacert when the package set has it.
  sslCertFile ? internal.caBundle
}:

let
  function = "pullImageFromManifest";
  reference = "${registryUrl}/${imageName}";
  where = "nix2container.${function}";

  checked =
    assert internal.checkPullArgs function { inherit imageName os arch tlsVerify sslCertFile; };
    if !builtins.isString imageTag || imageTag == "" then
      throw "${where}: `imageTag` must be a non-empty string; got ${builtins.toJSON imageTag}"
    else if !builtins.isString registryUrl || registryUrl == "" then
      throw "${where}: `registryUrl` must be a registry address such as \"registry-1.docker.io\" or \"ghcr.io\"; got ${builtins.toJSON registryUrl}"
    else true;

  # Read only when the image is built: `getManifest` works without it.
  manifest =
    let
      parsed =
        if imageManifest == null then
          throw "${where}: `imageManifest` is needed to build the image: write the manifest with `nix run .#<this image>.getManifest > manifest.json` and pass `imageManifest = ./manifest.json;`"
        else builtins.fromJSON (builtins.readFile imageManifest);
    in
    if parsed ? manifests then
      throw "${where}: ${toString imageManifest} is an image index (one manifest per platform), not an image manifest: write the manifest of one platform with `getManifest`, which chooses it with `os` and `arch`"
    else if !(parsed ? config && parsed ? layers) then
      throw "${where}: ${toString imageManifest} is not an image manifest (it has no `config` and `layers`)"
    else parsed;

  # A blob, fetched by the nix2container executable; its store path is
  # upstream's for the same blob (same name, same flat hash).
  blob = descriptor:
    let
      matched = builtins.match "sha256:([0-9a-f]{64})" descriptor.digest;
      hex = if matched == null
        then throw "${where}: the manifest names the blob ${builtins.toJSON descriptor.digest}; only sha256 digests are supported"
        else builtins.head matched;
    in
    {
      name = hex;
      value = builtins.derivation (internal.derivationBase // {
        name = hex;
        args = [ "nix-builder" "pull-blob" ];
        repository = reference;
        inherit (descriptor) digest size;
        inherit tlsVerify sslCertFile;
        outputHashMode = "flat";
        outputHashAlgo = "sha256";
        outputHash = descriptor.digest;
        impureEnvVars = internal.proxyImpureEnvVars;
        allowSubstitutes = true;
      });
    };

  blobs = builtins.listToAttrs (map blob ([ manifest.config ] ++ manifest.layers));

  image = internal.baseImage {
    name = "${internal.storeName imageName}.json";
    inherit reference manifest blobs;
  };

  # Prints the manifest of imageName:imageTag (for an index, that of
  # os/arch): `nix run .#<image>.getManifest > manifest.json`.
  getManifest = pkgs.writeShellScriptBin "get-manifest" ''
    exec ${internal.builder} get-manifest docker://${reference}:${imageTag} \
      --os ${os} --arch ${arch} ${if tlsVerify then "" else "--tls-verify=false"} "$@"
  '';
in
assert checked;
image // {
  inherit imageName imageTag getManifest;
}
