# buildImage :: set -> image
#
# An image derivation whose output is the image JSON: the config, and every
# layer's digests and store paths, bottom first (see docs/json-format.md).
# The layers are the `isolatedDeps`/`layers` buildLayer results (with their
# ancestors), then one layer (or up to `maxLayers`) holding what the config
# and `copyToRoot` need beyond them, then, with `initializeNixDatabase`, a
# small layer with the Nix database of all of them. With `fromImage`, the
# base image's layers come first and its config is inherited. Documented in
# docs/nix-api.md.
{ internal, pkgs, buildLayer }:

{
  # Image name; a registry prefix is allowed ("ghcr.io/me/app").
  name
, # Image tag; null gives the hash of the image derivation's output.
  tag ? null
, # The OCI image config (Entrypoint, Cmd, Env, …; keys in any case).
  config ? { }
, # Store paths whose content is put at `/`.
  copyToRoot ? null
, # Deprecated alias of copyToRoot.
  contents ? null
, # buildLayer results, each its own layer derivation (bottom first).
  isolatedDeps ? [ ]
, # Upstream's name for the same thing; both may be given.
  layers ? [ ]
, # RFC 3339 creation time, or "now" for the time of the build.
  created ? "0001-01-01T00:00:00Z"
, # OCI architecture of the image.
  arch ? internal.goArch pkgs.stdenv.hostPlatform.system
, # Ownership and mode overrides for the top layer.
  perms ? [ ]
, # Split the top layer into at most this many layers.
  maxLayers ? 1
, # How: "popularity" (upstream's) or "size".
  layering ? "popularity"
, # The OCI history entry of the top layer(s).
  metadata ? { created_by = "nix2container"; }
, # false stores the top layer's tar in its output.
  reproducible ? true
, # Put a Nix database registering the image's store paths in the image.
  initializeNixDatabase ? false
, # Owner of /nix and the database (with initializeNixDatabase).
  nixUid ? 0
, nixGid ? 0
, # Compression of the top layer's blobs: "gzip", "zstd" or "none".
  compression ? "gzip"
, # Its level; null is the algorithm's default.
  compressionLevel ? null
, # Passed through to the image derivation's `meta`.
  meta ? { }
, # A base image (pullImage or pullImageFromManifest): its layers come first,
  # its config is inherited and this config applied over it.
  fromImage ? null
}@args:

let
  function = "buildImage";
  # Upstream's default is "".
  baseImage = if fromImage == null || fromImage == "" then null else fromImage;
  checked =
    if baseImage != null && !(builtins.isAttrs baseImage && baseImage.isNix2containerBaseImage or false) then
      throw "nix2container.buildImage: `fromImage` must be a pullImage or pullImageFromManifest result, e.g. fromImage = pullImage { imageName = \"alpine\"; imageDigest = \"sha256:…\"; sha256 = \"…\"; }; got ${if builtins.isAttrs baseImage && baseImage ? type then "the derivation ${baseImage.name or "?"}" else builtins.typeOf baseImage}"
    else if !builtins.isString name || name == "" then
      throw "nix2container.buildImage: `name` must be a non-empty string such as \"hello\" or \"ghcr.io/me/hello\"; got ${builtins.toJSON name}"
    else if tag != null && !builtins.isString tag then
      throw "nix2container.buildImage: `tag` must be a string or null; got ${builtins.typeOf tag}"
    else if created != "now" && !internal.isRfc3339 created then
      throw "nix2container.buildImage: `created` must be an RFC 3339 date-time such as \"2024-05-13T09:31:10Z\", or \"now\" for the time of the build; got ${builtins.toJSON created}"
    else if !builtins.isBool initializeNixDatabase then
      throw "nix2container.buildImage: `initializeNixDatabase` must be a boolean; got ${builtins.toJSON initializeNixDatabase}"
    else if !builtins.isInt nixUid || nixUid < 0 || !builtins.isInt nixGid || nixGid < 0 then
      throw "nix2container.buildImage: `nixUid` and `nixGid` must be non-negative integers; got ${builtins.toJSON { inherit nixUid nixGid; }}"
    else if !initializeNixDatabase && (nixUid != 0 || nixGid != 0) then
      throw "nix2container.buildImage: `nixUid` and `nixGid` set the owner of the Nix database and /nix; they need `initializeNixDatabase = true` (got nixUid = ${toString nixUid}, nixGid = ${toString nixGid} without it)"
    else true;

  normalizedConfig = internal.normalizeConfig function config;

  # A file holding the config: its closure minus itself is everything the
  # config refers to (the entrypoint, …), which the top layer must hold.
  configFile = builtins.derivation (internal.derivationBase // {
    name = "config.json";
    args = [ "nix-builder" "config" ];
    config = normalizedConfig;
  });

  baseLayers =
    internal.checkLayers function "isolatedDeps" isolatedDeps
    ++ internal.checkLayers function "layers" layers;

  topLayer = buildLayer {
    deps = [ configFile ];
    ignore = configFile;
    copyToRoot = internal.copyToRootList function args;
    layers = baseLayers;
    inherit perms maxLayers layering metadata reproducible compression compressionLevel;
  };

  # With initializeNixDatabase: a layer of its own on top, holding the
  # database of every store path below it (so it is computed from the
  # layers themselves, never from a second guess of their contents).
  nixDatabase = internal.nixDatabase (baseLayers ++ [ topLayer ]);
  databaseLayers =
    if initializeNixDatabase then [
      (buildLayer {
        copyToRoot = nixDatabase;
        layers = baseLayers ++ [ topLayer ];
        perms = internal.nixDatabasePerms nixDatabase nixUid nixGid;
        inherit metadata compression compressionLevel;
      })
    ] else [ ];

  image = builtins.derivation (internal.derivationBase // {
    name = "image-${baseNameOf name}.json";
    args = [ "nix-builder" "image" ];
    config = normalizedConfig;
    layers = baseLayers ++ [ topLayer ] ++ databaseLayers;
    architecture = arch;
    os = "linux";
    inherit created;
    fromImage = baseImage;
  });

  imageName = internal.toLower name;
  imageTag = if tag != null then tag else builtins.substring 0 32 (baseNameOf image.outPath);

  copyScript = scriptName: destination: pkgs.writeShellScriptBin scriptName ''
    exec ${internal.builder} copy ${image} ${destination} "$@"
  '';
  copyToDockerDaemon = copyScript "copy-to-docker-daemon" "docker-daemon:${imageName}:${imageTag}";
in
assert checked;
image // {
  inherit imageName imageTag meta copyToDockerDaemon;
  config = normalizedConfig;
  imageRefUnsafe = builtins.unsafeDiscardStringContext "${imageName}:${imageTag}";
  # Every layer of the image, bottom first (buildLayer results).
  layers = topLayer.nestedLayers ++ [ topLayer ] ++ databaseLayers;
  # The spelling of upstream's README.
  pushToDockerDeamon = copyToDockerDaemon;
  # Upstream's passthru of the argument.
  fromImage = baseImage;
  # Pushes to the registry the name says (docker.io without one).
  copyToRegistry = copyScript "copy-to-registry" "docker://${imageName}:${imageTag}";
  # Loads into Podman's storage (its service, or `podman load`).
  copyToPodman = copyScript "copy-to-podman" "containers-storage:${imageName}:${imageTag}";
  # Runs `nix2container copy IMAGE "$@"`: give a destination and flags.
  copyTo = pkgs.writeShellScriptBin "copy-to" ''
    exec ${internal.builder} copy ${image} "$@"
  '';
}
