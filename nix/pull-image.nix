# pullImage :: set -> base image
#
# A base image for buildImage's `fromImage`, pulled from a registry by
# digest. Two derivations: a fixed-output one, whose builder is the
# nix2container executable, pulls the manifest (for an image index, the
# one of `os`/`arch`), the config and the layer blobs into its output, laid
# out as skopeo's `dir:` transport lays them out and checked against their
# digests; `sha256` is the hash of that directory. A second, local one
# writes the image JSON whose layers are those blobs. Documented in
# docs/nix-api.md.
{ internal, pkgs }:

{
  # The image's name, with its registry: "alpine", "ghcr.io/me/base".
  imageName
, # The digest of its manifest, or of its image index (multi-platform).
  imageDigest
, # The hash of the pulled files (nix-hash --type sha256 of the output);
  # `nix2container pull` prints it.
  sha256
, # The platform chosen from an image index.
  os ? "linux"
, arch ? internal.goArch pkgs.stdenv.hostPlatform.system
, # false: no TLS certificate check, plain HTTP allowed (local registries).
  tlsVerify ? true
, # The name of the fixed-output derivation (upstream's default).
  name ? internal.storeName "docker-image-${imageName}"
, # CA certificates the pull trusts (the sandbox has none): nixpkgs' cacert
  # when the package set has it.
  sslCertFile ? internal.caBundle
}:

let
  function = "pullImage";
  checked =
    assert internal.checkPullArgs function { inherit imageName os arch tlsVerify sslCertFile; };
    if !builtins.isString imageDigest || builtins.match "sha256:[0-9a-f]{64}" imageDigest == null then
      throw "nix2container.pullImage: `imageDigest` must be the digest of the image's manifest or index, \"sha256:\" and 64 hexadecimal digits (`skopeo inspect docker://${toString imageName}` or `nix2container pull docker://${toString imageName}:TAG DIR` print it); got ${builtins.toJSON imageDigest}"
    else if !builtins.isString sha256 then
      throw "nix2container.pullImage: `sha256` must be a string, the hash of the pulled files (`nix2container pull` prints it; \"\" gives a build that fails saying which one it is); got ${builtins.typeOf sha256}"
    else if !builtins.isString name || name == "" then
      throw "nix2container.pullImage: `name` must be a non-empty string; got ${builtins.toJSON name}"
    else true;

  # Fixed-output: it may use the network, and its output path depends only
  # on `name` and `sha256` (the same as upstream's for the same image).
  pulled = builtins.derivation (internal.derivationBase // {
    inherit name imageName imageDigest os arch tlsVerify sslCertFile;
    args = [ "nix-builder" "pull" ];
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = sha256;
    impureEnvVars = internal.proxyImpureEnvVars;
    # A download anyone may substitute: its content is fixed.
    allowSubstitutes = true;
  });

  image = internal.baseImage {
    name = "${internal.storeName imageName}.json";
    reference = imageName;
    dir = pulled;
  };
in
assert checked;
image // {
  inherit imageName imageDigest pulled;
}
