# Offline stand-in for nixpkgs (tests only). `import ./tests/offline-nixpkgs { }` returns the same set
# as the flake's legacyPackages.x86_64-linux. Only the few attributes our library, examples and tests use
# are provided; each comment names the nixpkgs attribute it imitates.
#
# Bootstrapping: `bash` and `busybox` are copied from the host (Debian packages bash-static and
# busybox-static) by `__noChroot` derivations, and `hello`/`rustPlatform` compile with host tools.
# These need `sandbox = relaxed` (or sandbox = false). Everything else is built by that static bash
# with busybox on PATH, so it also builds with `--option sandbox true` once bash/busybox are built.
#
# Accepts (and ignores) the usual `import nixpkgs { system; overlays; config; }` arguments.
{ system ? "x86_64-linux", ... }:

if system != "x86_64-linux" then
  throw "offline-nixpkgs: only x86_64-linux is supported (got ${system})"
else

let
  # Derivation copying host files; runs outside the sandbox (hence __noChroot) with the host's /bin/sh.
  # Builders get PATH=/path-not-set, so the script uses absolute paths.
  hostDrv = name: script: derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-eu" "-c" script ];
    __noChroot = true;
    preferLocalBuild = true;
    allowSubstitutes = false;
  };

  # Fail with an actionable message when a host file is missing.
  needHost = file: debPackage: ''
    if [ ! -x ${file} ]; then
      echo "offline-nixpkgs: ${file} not found; install the Debian package ${debPackage}" >&2
      exit 1
    fi
  '';

  binPath = pkgs: builtins.concatStringsSep ":" (map (p: "${p}/bin") pkgs);

  # Generic sandbox-friendly builder (plays the role of stdenv.mkDerivation for our builders):
  # runs `script` with the static bash, PATH = inputs + bash + busybox, `$out` set. Sets `meta` and
  # `passthru` are kept on the result instead of being passed to `derivation` (which rejects sets).
  # Structured attrs (`__structuredAttrs = true`) are supported like stdenv does: source .attrs.sh.
  mkDrv = { name, script, inputs ? [ ], meta ? { }, passthru ? { }, ... }@attrs:
    let
      drv = derivation (removeAttrs attrs [ "script" "inputs" "meta" "passthru" ] // {
        inherit name system;
        builder = "${bash}/bin/bash";
        args = [ "-c" ''
          set -eo pipefail
          export PATH=${binPath (inputs ++ [ bash busybox ])}
          if [ -e "$NIX_BUILD_TOP/.attrs.sh" ]; then
            source "$NIX_BUILD_TOP/.attrs.sh"
            for o in "''${!outputs[@]}"; do export "$o=''${outputs[$o]}"; done
          fi
          ${script}
        '' ];
      });
    in drv // passthru // { inherit meta; };

  # nixpkgs: bash / bashInteractive. Debian's static bash, with bin/sh -> bash like nixpkgs.
  bash = hostDrv "bash" ''
    ${needHost "/bin/bash-static" "bash-static"}
    /bin/mkdir -p $out/bin
    /bin/cp /bin/bash-static $out/bin/bash
    /bin/ln -s bash $out/bin/sh
  '';

  # nixpkgs: busybox. Debian's static busybox with one relative symlink per applet, except `sh`
  # (and `bash`): sh comes from `bash`, so buildEnv [ bash busybox ] has no collision.
  busybox = hostDrv "busybox" ''
    ${needHost "/bin/busybox" "busybox-static"}
    /bin/mkdir -p $out/bin
    /bin/cp /bin/busybox $out/bin/busybox
    for a in $(/bin/busybox --list); do
      case $a in busybox|sh|bash) ;; *) /bin/ln -s busybox "$out/bin/$a" ;; esac
    done
    # applets our builders rely on
    for a in cat chmod cmp cp dirname find ln ls mkdir readlink rm; do
      [ -e "$out/bin/$a" ] || { echo "offline-nixpkgs: busybox lacks applet $a" >&2; exit 1; }
    done
  '';

  # GNU coreutils program names; `coreutils` links those that busybox implements.
  coreutilsNames = [
    "[" "arch" "base32" "base64" "basename" "cat" "chgrp" "chmod" "chown" "chroot" "cksum" "comm" "cp"
    "csplit" "cut" "date" "dd" "df" "dirname" "du" "echo" "env" "expand" "expr" "factor" "false" "fold"
    "groups" "head" "hostid" "id" "install" "join" "kill" "link" "ln" "logname" "ls" "md5sum" "mkdir"
    "mkfifo" "mknod" "mktemp" "mv" "nice" "nl" "nohup" "nproc" "od" "paste" "printenv" "printf" "pwd"
    "readlink" "realpath" "rm" "rmdir" "seq" "sha1sum" "sha256sum" "sha512sum" "shred" "shuf" "sleep"
    "sort" "split" "stat" "stty" "sum" "sync" "tac" "tail" "tee" "test" "timeout" "touch" "tr" "true"
    "truncate" "tsort" "tty" "uname" "unexpand" "uniq" "unlink" "wc" "who" "whoami" "yes"
  ];

  self = {
    inherit system bash busybox;

    # nixpkgs: bashInteractive (Debian's bash-static has no readline; good enough for images/tests).
    bashInteractive = bash;

    # nixpkgs: coreutils. Absolute symlinks into `busybox` (so coreutils' closure includes busybox).
    coreutils = mkDrv {
      name = "coreutils";
      script = ''
        mkdir -p $out/bin
        for a in ${builtins.concatStringsSep " " (map (n: "'${n}'") coreutilsNames)}; do
          if [ -e ${busybox}/bin/"$a" ]; then ln -s ${busybox}/bin/busybox "$out/bin/$a"; fi
        done
      '';
    };

    # nixpkgs: hello. Static C program printing "Hello, world!", compiled by the host's gcc
    # (outside the sandbox), so it runs anywhere: in the sandbox, in a scratch image.
    hello = let
      drv = hostDrv "hello-1.0" ''
        ${needHost "/usr/bin/gcc" "gcc (plus libc6-dev for the static libc)"}
        export PATH=/usr/bin:/bin   # gcc looks up as/ld through PATH
        /bin/mkdir -p $out/bin
        /usr/bin/gcc -static -O2 -s -o $out/bin/hello ${./hello.c}
      '';
    in drv // { pname = "hello"; version = "1.0"; meta.mainProgram = "hello"; };

    # Three small packages referencing each other by store path, so closures have depth:
    # foobar-app -> libbar -> libfoo, and foobar-app -> libfoo, hello, bash. Not in nixpkgs.
    libfoo = mkDrv {
      name = "libfoo-1.0";
      script = ''
        mkdir -p $out/share/libfoo
        echo "libfoo data" > $out/share/libfoo/data.txt
      '';
    };
    libbar = mkDrv {
      name = "libbar-1.0";
      script = ''
        mkdir -p $out/share/libbar $out/lib
        echo "foo_data=${self.libfoo}/share/libfoo/data.txt" > $out/share/libbar/config
        ln -s ${self.libfoo} $out/lib/libfoo   # a reference through a symlink, too
      '';
    };
    foobar-app = mkDrv {
      name = "foobar-app-1.0";
      meta.mainProgram = "foobar-app";
      script = ''
        mkdir -p $out/bin
        cat > $out/bin/foobar-app <<'EOS'
        #!${bash}/bin/bash
        # Prints hello's greeting, then libfoo's data found through libbar's config.
        ${self.hello}/bin/hello
        source ${self.libbar}/share/libbar/config
        while IFS= read -r line; do echo "$line"; done < "$foo_data"
        echo "libfoo: ${self.libfoo}"
        EOS
        chmod +x $out/bin/foobar-app
      '';
    };

    # nixpkgs: runtimeShell (the shell used by writeShellScript*).
    runtimeShell = "${bash}/bin/bash";

    # nixpkgs: writeTextFile and friends (pkgs/build-support/trivial-builders). Text is passed via
    # passAsFile (works in and out of the sandbox in Nix 2.8), so any size/characters are fine.
    writeTextFile = { name, text, executable ? false, destination ? "", checkPhase ? ""
                    , meta ? { }, passthru ? { } }:
      if destination != "" && builtins.substring 0 1 destination != "/"
      then throw "writeTextFile: destination must start with / (got ${destination})"
      else mkDrv {
        inherit name text executable destination checkPhase meta passthru;
        passAsFile = [ "text" ];
        preferLocalBuild = true;
        allowSubstitutes = false;
        script = ''
          target=$out$destination
          if [ -n "$destination" ]; then mkdir -p "$(dirname "$target")"; fi
          cp "$textPath" "$target"
          if [ -n "$executable" ]; then chmod +x "$target"; fi
          eval "$checkPhase"
        '';
      };
    writeText = name: text: self.writeTextFile { inherit name text; };
    writeScript = name: text: self.writeTextFile { inherit name text; executable = true; };
    writeScriptBin = name: text: self.writeTextFile {
      inherit name text; executable = true; destination = "/bin/${name}";
    };
    writeShellScript = name: text: self.writeTextFile {
      inherit name;
      executable = true;
      text = "#!${self.runtimeShell}\n${text}\n";
      checkPhase = ''${bash}/bin/bash -n -O extglob "$target"'';
    };
    writeShellScriptBin = name: text: self.writeTextFile {
      inherit name;
      executable = true;
      destination = "/bin/${name}";
      text = "#!${self.runtimeShell}\n${text}\n";
      checkPhase = ''${bash}/bin/bash -n -O extglob "$target"'';
      meta.mainProgram = name;
    };

    # nixpkgs: runCommand name env script. `script` runs in bash with `$out` set and PATH =
    # nativeBuildInputs/buildInputs bin dirs + bash + busybox. Like nixpkgs, the script is in the
    # `buildCommand` attribute (passAsFile; from .attrs.sh with __structuredAttrs).
    runCommand = name: env: buildCommand: mkDrv (env // {
      inherit name buildCommand;
      passAsFile = [ "buildCommand" ] ++ (env.passAsFile or [ ]);
      inputs = (env.nativeBuildInputs or [ ]) ++ (env.buildInputs or [ ]);
      script = ''
        if [ -n "''${buildCommandPath:-}" ]; then source "$buildCommandPath"; else eval "$buildCommand"; fi
      '';
    });
    # nixpkgs: runCommandLocal (same, never substituted).
    runCommandLocal = name: env: self.runCommand name
      ({ preferLocalBuild = true; allowSubstitutes = false; } // env);

    # nixpkgs: symlinkJoin { name, paths, postBuild ? "" }: like `lndir` of every path into $out:
    # real directories, absolute symlinks to files, symlinks copied as-is, first path wins.
    symlinkJoin = { name, paths, postBuild ? "", meta ? { }, passthru ? { } }: mkDrv {
      inherit name paths postBuild meta passthru;
      mode = "symlinkJoin";
      script = "source ${./link-tree.sh}";
    };

    # nixpkgs: buildEnv { name, paths, pathsToLink ? ["/"], ignoreCollisions ? false, postBuild ? "" }.
    # Like nixpkgs' builder.pl: a directory provided by one path only becomes one symlink to it; it is
    # split into a real directory of symlinks (recursively) as soon as a second path provides it.
    # Identical files are not collisions; other collisions fail unless ignoreCollisions (first wins).
    # Not supported: priorities, extraOutputsToInstall, extraPrefix, nix-support special files.
    buildEnv = { name, paths, pathsToLink ? [ "/" ], ignoreCollisions ? false, postBuild ? ""
               , meta ? { }, passthru ? { }, ... }: mkDrv {
      inherit name paths pathsToLink ignoreCollisions postBuild meta passthru;
      mode = "buildEnv";
      script = "source ${./link-tree.sh}";
    };

    # nixpkgs: rustPlatform.buildRustPackage, built for real with the machine's cargo (see rust.nix).
    rustPlatform = import ./rust.nix { inherit system bash; };

    # nixpkgs: stdenv platform attributes (no stdenv.mkDerivation: use runCommand).
    stdenv = let platform = { inherit system; isLinux = true; isDarwin = false; isx86_64 = true; };
      in { hostPlatform = platform; buildPlatform = platform; targetPlatform = platform; inherit system; };

    # nixpkgs: buildPackages / pkgs (no cross-compilation here: the same set).
    buildPackages = self;
    pkgs = self;

    # nixpkgs: callPackage (simple: no .override, no error for missing arguments beyond Nix's own).
    callPackage = f: args:
      let fn = if builtins.isPath f then import f else f;
      in fn (builtins.intersectAttrs (builtins.functionArgs fn) self // args);
  };
in
self
