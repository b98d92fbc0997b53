# Private helpers shared by the public functions. Nothing here is part of the
# API: the attribute set returned by ./default.nix does not include it.
{ pkgs, helper }:

let
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];

  describe = value:
    if builtins.isAttrs value && value ? type && value.type == "derivation" then "the derivation ${value.name or "?"}"
    else if builtins.isString value then "the string \"${value}\""
    else "a ${builtins.typeOf value}";

  isStringLike = value:
    builtins.isString value || builtins.isPath value
    || (builtins.isAttrs value && (value ? outPath || value ? __toString));

  # The OCI image config keys (image-spec v1.1), by lowercased name. Keys are
  # matched without regard to case, as upstream's Go JSON decoding does, so
  # `entrypoint` and `Entrypoint` both work.
  configKeys = {
    user = { name = "User"; kind = "string"; };
    exposedports = { name = "ExposedPorts"; kind = "set"; };
    env = { name = "Env"; kind = "list"; };
    entrypoint = { name = "Entrypoint"; kind = "list"; };
    cmd = { name = "Cmd"; kind = "list"; };
    volumes = { name = "Volumes"; kind = "set"; };
    workingdir = { name = "WorkingDir"; kind = "string"; };
    labels = { name = "Labels"; kind = "labels"; };
    stopsignal = { name = "StopSignal"; kind = "string"; };
  };

  configKeyNames = builtins.concatStringsSep ", " (map (k: configKeys.${k}.name) (builtins.attrNames configKeys));
in
rec {
  inherit helper;

  # The system the derivations build on: the helper runs there.
  system = (pkgs.stdenv.buildPlatform or pkgs.stdenv.hostPlatform).system;

  builder = "${helper}/bin/nix2container";

  # Most layers an image may have (Docker's limit; MAX_IMAGE_LAYERS in
  # src/nix_builder.rs).
  maxImageLayers = 125;

  # The values of `layering`.
  layerings = [ "popularity" "size" ];
  layeringNames = "\"popularity\" (upstream's: the most referenced store paths get their own layers) or \"size\" (the largest store paths get their own layers)";

  # RFC 3339 date-times, as OCI configs and Docker accept them.
  isRfc3339 = value: builtins.isString value
    && builtins.match "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})" value != null;

  # The Nix database of an image (initializeNixDatabase): registers the
  # store paths the given layer derivations (and their ancestors) put under
  # /nix/store, read from their closures. Its output is a root to copy to
  # `/`: nix/var/nix/db, nix/var/nix/gcroots/docker, nix/store/.links.
  nixDatabase = layers: builtins.derivation (derivationBase // {
    name = "nix-database";
    args = [ "nix-builder" "nix-database" ];
    exportReferencesGraph.closure = layers;
    inherit layers;
  });

  # Ownership of the database root: directories 0755 and files 0644, all
  # owned by uid:gid, so that this user can run Nix in the container.
  nixDatabasePerms = database: uid: gid: [
    { path = database; regex = ".*"; mode = "0755"; inherit uid gid; }
    { path = database; regex = "/nix/var/nix/db/[^/]+$"; mode = "0644"; inherit uid gid; }
    { path = database; regex = "/nix/var/nix/gcroots/docker/[^/]+$"; mode = "0777"; inherit uid gid; }
  ];

  toLower = builtins.replaceStrings upper lower;

  toList = value: if value == null then [ ] else if builtins.isList value then value else [ value ];

  # OCI (Go) architecture names for the CPU part of a Nix system string.
  goArch = nixSystem:
    let
      cpu = builtins.head (builtins.split "-" nixSystem);
      names = {
        x86_64 = "amd64";
        aarch64 = "arm64";
        i686 = "386";
        armv6l = "arm";
        armv7l = "arm";
        powerpc64le = "ppc64le";
        riscv64 = "riscv64";
        s390x = "s390x";
        loongarch64 = "loong64";
        mips64el = "mips64le";
      };
    in
    names.${cpu} or (throw "nix2container: no OCI architecture is known for the Nix system ${nixSystem}; pass `arch` explicitly");

  # copyToRoot (or its deprecated alias contents) as a list.
  copyToRootList = function: { copyToRoot ? null, contents ? null, ... }:
    if copyToRoot != null && contents != null
    then throw "nix2container.${function}: pass `copyToRoot` only; `contents` is its deprecated alias and both were given"
    else
      let
        list = map check (toList (if copyToRoot != null then copyToRoot else contents));
        # Only whole store paths: copyToRoot relocates a store path's tree.
        check = root:
          if isStringLike root && builtins.match "${builtins.storeDir}/[^/]+" "${root}" != null then root
          else throw "nix2container.${function}: every element of `copyToRoot` must be a store path (a derivation), not a path inside one; got ${if isStringLike root then "\"${root}\"" else describe root}; use a buildEnv or runCommand to shape the tree";
      in if contents != null then builtins.trace "warning: nix2container.${function}: `contents` is deprecated, use `copyToRoot`" list else list;

  # Checks that every element of a `layers`/`isolatedDeps` argument comes
  # from buildLayer.
  checkLayers = function: argument: layers:
    let
      check = layer:
        if builtins.isAttrs layer && layer.isNix2containerLayer or false then layer
        else throw "nix2container.${function}: every element of `${argument}` must be a buildLayer result, e.g. [ (buildLayer { deps = [ pkgs.bash ]; }) ]; got ${describe layer}";
    in
    if builtins.isList layers then map check layers
    else throw "nix2container.${function}: `${argument}` must be a list of buildLayer results; got ${describe layers}";

  checkStringList = function: argument: value:
    if builtins.isList value && builtins.all isStringLike value then map (x: "${x}") value
    else throw "nix2container.${function}: `${argument}` must be a list of strings or derivations, e.g. [ \"\${pkgs.hello}/bin/hello\" ]; got ${describe value}";

  # Normalises an image config: OCI key names whatever the case given, lists
  # where lists are expected, derivations turned into their store paths.
  normalizeConfig = function: config:
    let
      where = "nix2container.${function}: config";
      normalizeKey = key:
        let
          spec = configKeys.${toLower key} or (throw "${where}: unknown key `${key}`; the OCI image config has ${configKeyNames} (keys are case-insensitive)");
          value = config.${key};
          path = "${where}.${spec.name}";
        in
        {
          inherit (spec) name;
          value =
            if spec.kind == "string" then
              (if isStringLike value then "${value}" else throw "${path} must be a string; got ${describe value}")
            else if spec.kind == "list" then
              (if builtins.isList value && builtins.all isStringLike value then map (x: "${x}") value
               else throw "${path} must be a list of strings, e.g. [ \"\${pkgs.hello}/bin/hello\" \"--flag\" ]; got ${describe value}")
            else if spec.kind == "set" then
              (if builtins.isList value && builtins.all builtins.isString value then builtins.listToAttrs (map (k: { name = k; value = { }; }) value)
               else if builtins.isAttrs value then builtins.mapAttrs (_: _: { }) value
               else throw "${path} must be an attribute set such as { \"80/tcp\" = { }; } or a list of strings; got ${describe value}")
            else
              (if builtins.isAttrs value && builtins.all isStringLike (builtins.attrValues value) then builtins.mapAttrs (_: v: "${v}") value
               else throw "${path} must be an attribute set of strings; got ${describe value}");
        };
      normalized = map normalizeKey (builtins.attrNames config);
      names = map (entry: entry.name) normalized;
      duplicates = builtins.filter (name: builtins.length (builtins.filter (n: n == name) names) > 1) names;
    in
    if !builtins.isAttrs config then throw "${where} must be an attribute set; got ${describe config}"
    else if duplicates != [ ] then throw "${where}: the key ${builtins.head duplicates} is given more than once (keys are case-insensitive)"
    else builtins.listToAttrs normalized;

  # Fails evaluation unless `perms` is a list of { path, regex, ... }.
  checkPerms = function: perms:
    let
      allowed = [ "path" "regex" "mode" "uid" "gid" "uname" "gname" ];
      check = perm:
        let
          where = "nix2container.${function}: perms entry";
          extra = builtins.filter (k: !builtins.elem k allowed) (builtins.attrNames perm);
        in
        if !builtins.isAttrs perm then throw "${where} must be an attribute set { path, regex, mode?, uid?, gid?, uname?, gname? }; got ${describe perm}"
        else if extra != [ ] then throw "${where}: unknown key `${builtins.head extra}`; allowed keys are ${builtins.concatStringsSep ", " allowed}"
        else if !(perm ? path) || !(perm ? regex) then throw "${where} needs `path` (the store path it applies to) and `regex` (matched against file paths inside it)"
        else if !builtins.isString perm.regex then throw "${where}: `regex` must be a string (a regular expression matched against file paths inside `path`); got ${describe perm.regex}"
        else if perm ? mode && perm.mode != null && !(builtins.isString perm.mode && builtins.match "0?[0-7]{3,4}" perm.mode != null) then throw "${where}: mode ${describe perm.mode} is not an octal mode such as \"0755\" or \"1777\""
        else if builtins.any (k: perm ? ${k} && !(builtins.isInt perm.${k} && perm.${k} >= 0)) [ "uid" "gid" ] then throw "${where}: `uid` and `gid` must be non-negative integers; got ${builtins.toJSON { uid = perm.uid or 0; gid = perm.gid or 0; }}"
        else if builtins.any (k: perm ? ${k} && !builtins.isString perm.${k}) [ "uname" "gname" ] then throw "${where}: `uname` and `gname` must be strings"
        else perm // { path = "${perm.path}"; };
    in
    if builtins.isList perms then map check perms
    else throw "nix2container.${function}: `perms` must be a list; got ${describe perms}";

  # Proxy variables a fetching (fixed-output) derivation takes from the
  # environment of the Nix daemon, as nixpkgs' fetchers do
  # (lib.fetchers.proxyImpureEnvVars).
  proxyImpureEnvVars = [
    "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy"
    "HTTP_PROXY" "HTTPS_PROXY" "FTP_PROXY" "ALL_PROXY" "NO_PROXY"
  ];

  # The CA bundle fetching derivations trust (a build sandbox has no system
  # CAs): nixpkgs' cacert when the package set has it.
  caBundle = if pkgs ? cacert then "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt" else null;

  # A store path name made of an image name: "/" and ":" become "-", as
  # upstream's pullImage names its output.
  storeName = builtins.replaceStrings [ "/" ":" ] [ "-" "-" ];

  # Checks the arguments the fetching functions share, naming them.
  checkPullArgs = function: { imageName, os, arch, tlsVerify, sslCertFile, ... }:
    if !builtins.isString imageName || imageName == "" || builtins.match ".*[@ ].*|(.*/)?[^/]*:[^/]*" imageName != null then
      throw "nix2container.${function}: `imageName` must be an image name without tag or digest, such as \"alpine\", \"library/alpine\" or \"ghcr.io/me/base\"; got ${builtins.toJSON imageName}"
    else if !builtins.isString os || os == "" then
      throw "nix2container.${function}: `os` must be a non-empty string such as \"linux\"; got ${builtins.toJSON os}"
    else if !builtins.isString arch || arch == "" then
      throw "nix2container.${function}: `arch` must be an OCI architecture such as \"amd64\" or \"arm64\"; got ${builtins.toJSON arch}"
    else if !builtins.isBool tlsVerify then
      throw "nix2container.${function}: `tlsVerify` must be a boolean; got ${builtins.toJSON tlsVerify}"
    else if sslCertFile != null && !isStringLike sslCertFile then
      throw "nix2container.${function}: `sslCertFile` must be the path of a PEM bundle of CA certificates, or null; got ${describe sslCertFile}"
    else true;

  # The base image document of a pulled image: its image JSON, whose
  # layers are the pulled blobs (docs/json-format.md). `dir` is a pullImage
  # download; `manifest` (parsed JSON) and `blobs` (hex digest -> store
  # path) are pullImageFromManifest's.
  baseImage = { name, reference, dir ? null, manifest ? null, blobs ? { } }:
    builtins.derivation (derivationBase // {
      inherit name reference dir manifest blobs;
      args = [ "nix-builder" "base-image" ];
    }) // { isNix2containerBaseImage = true; };

  # Attributes every derivation of the library shares.
  derivationBase = {
    inherit system builder;
    __structuredAttrs = true;
    # Digests describe files of the local store, so these outputs are never
    # worth fetching from a cache (upstream #172, #175).
    preferLocalBuild = true;
    allowSubstitutes = false;
  };
}
