# buildLayer :: set -> layer
#
# A layer derivation: the closure of `deps` (and `copyToRoot`) minus every
# store path already in the layers given as `layers` and their ancestors.
# Its output holds `layers.json` (the digests and store paths of one or more
# layers, see docs/json-format.md); no tarball is ever written. Documented in
# docs/nix-api.md.
{ internal }:

{
  # Store paths whose closures go into the layer.
  deps ? [ ]
, # Store paths whose content is put at `/` instead of under /nix/store.
  copyToRoot ? null
, # Deprecated alias of copyToRoot.
  contents ? null
, # buildLayer results this layer must not repeat paths of.
  layers ? [ ]
, # Store paths to leave out of the closure (their dependencies stay).
  ignore ? null
, # Ownership and mode overrides: [ { path; regex; mode?; uid?; gid?; uname?; gname?; } ].
  perms ? [ ]
, # Split the paths into at most this many layers (0: one per store path).
  maxLayers ? 1
, # How to split them: "popularity" (upstream's) or "size".
  layering ? "popularity"
, # The OCI history entry of the layer(s).
  metadata ? { created_by = "nix2container"; }
, # Blob compression, computed at build time: "gzip", "zstd" or "none".
  compression ? "gzip"
, # Compression level; null is the algorithm's default (gzip 6, zstd 3).
  compressionLevel ? null
, # false stores each layer's tar in the output; transports read it there.
  reproducible ? true
}@args:

let
  function = "buildLayer";
  copyToRootList = internal.copyToRootList function args;
  depsList = internal.checkStringList function "deps" deps;
  ignoreList = map (p: "${p}") (internal.toList ignore);
  parents = internal.checkLayers function "layers" layers;
  historyKeys = [ "created_by" "author" "comment" "created" "empty_layer" ];
  badHistoryKeys = builtins.filter (k: !builtins.elem k historyKeys) (builtins.attrNames metadata);

  checked =
    if !builtins.isInt maxLayers || maxLayers < 0 || maxLayers > internal.maxImageLayers then
      throw "nix2container.buildLayer: `maxLayers` must be a non-negative integer, at most ${toString internal.maxImageLayers} (the most layers an image may have; 0 means one layer per store path); got ${builtins.toJSON maxLayers}"
    else if !builtins.elem layering internal.layerings then
      throw "nix2container.buildLayer: `layering` must be ${internal.layeringNames}; got ${builtins.toJSON layering}"
    else if !builtins.isBool reproducible then
      throw "nix2container.buildLayer: `reproducible` must be a boolean; got ${builtins.toJSON reproducible}"
    else if !builtins.elem compression [ "gzip" "zstd" "none" ] then
      throw "nix2container.buildLayer: `compression` must be \"gzip\", \"zstd\" or \"none\"; got ${builtins.toJSON compression}"
    else if compressionLevel != null && !builtins.isInt compressionLevel then
      throw "nix2container.buildLayer: `compressionLevel` must be an integer or null; got ${builtins.toJSON compressionLevel}"
    else if !builtins.isAttrs metadata || badHistoryKeys != [ ] then
      throw "nix2container.buildLayer: `metadata` must be an attribute set with keys among ${builtins.concatStringsSep ", " historyKeys}; got ${builtins.toJSON (builtins.attrNames metadata)}"
    else true;

  layer = builtins.derivation (internal.derivationBase // {
    name = "nix2container-layer";
    args = [ "nix-builder" "layers" ];
    exportReferencesGraph.closure = depsList ++ map (p: "${p}") copyToRootList;
    deps = depsList;
    copyToRoot = map (p: "${p}") copyToRootList;
    ignore = ignoreList;
    perms = internal.checkPerms function perms;
    inherit maxLayers layering reproducible metadata compression compressionLevel;
    layers = parents;
  } // (if reproducible then {
    # A stored tar (reproducible = false) holds the files of the layer's
    # paths, which may mention an ignored path: only check the JSON.
    outputChecks.out.disallowedReferences = ignoreList;
  } else { }));

  # Upstream's attribute: every ancestor layer, each once, parents first.
  nestedLayers =
    let
      all = builtins.concatMap (parent: parent.nestedLayers ++ [ parent ]) parents;
      step = acc: l:
        let key = builtins.unsafeDiscardStringContext l.outPath;
        in if acc.seen ? ${key} then acc else { seen = acc.seen // { ${key} = true; }; list = acc.list ++ [ l ]; };
    in
    (builtins.foldl' step { seen = { }; list = [ ]; } all).list;
in
assert checked;
layer // {
  isNix2containerLayer = true;
  inherit nestedLayers;
}
