# Sourced by the symlinkJoin and buildEnv builders of default.nix (bash + busybox, runs in the sandbox).
# Environment: mode (symlinkJoin|buildEnv), paths, pathsToLink, ignoreCollisions, postBuild, out.
set -u
shopt -s nullglob dotglob   # iterate over hidden entries too; empty dirs give no iterations

# symlinkJoin = `lndir -silent SRC $out` for each path: real directories, symlinks to files,
# symlinks in SRC are copied verbatim, existing entries are kept (first path wins).
join_dir() { # src-dir dst-dir
  local e t
  for e in "$1"/*; do
    t=$2/${e##*/}
    if [ -d "$e" ] && [ ! -L "$e" ]; then
      if [ ! -e "$t" ] && [ ! -L "$t" ]; then mkdir "$t"; fi
      if [ -d "$t" ] && [ ! -L "$t" ]; then join_dir "$e" "$t"; fi
    elif [ ! -e "$t" ] && [ ! -L "$t" ]; then
      if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$t"; else ln -s "$e" "$t"; fi
    fi
  done
}

# buildEnv, after nixpkgs' builder.pl: link the entry SRC at DST; a directory already linked from
# another path is replaced by a real directory holding links to both ("unsymlinking").
env_entry() { # src dst
  local e=$1 t=$2 old
  if [ ! -e "$t" ] && [ ! -L "$t" ]; then ln -s "$e" "$t"; return; fi
  if [ -d "$e" ] && [ -d "$t" ]; then
    if [ -L "$t" ]; then
      old=$(readlink "$t"); rm "$t"; mkdir "$t"; env_dir "$old" "$t"
    fi
    env_dir "$e" "$t"; return
  fi
  if [ "$(readlink -f "$e")" = "$(readlink -f "$t")" ]; then return; fi
  if [ -f "$e" ] && [ -f "$t" ] && cmp -s "$e" "$t"; then return; fi
  if [ -n "$ignoreCollisions" ]; then
    echo "warning: collision between $e and $(readlink "$t"), keeping the first" >&2; return
  fi
  echo "error: collision between $e and $(readlink "$t") (use ignoreCollisions = true)" >&2
  exit 1
}
env_dir() { # src-dir dst-dir
  local e
  for e in "$1"/*; do env_entry "$e" "$2/${e##*/}"; done
}

mkdir -p "$out"
for p in $paths; do
  if [ ! -d "$p" ]; then
    echo "error: $p is not a directory and cannot be merged by $mode" >&2; exit 1
  fi
  if [ "$mode" = symlinkJoin ]; then join_dir "$p" "$out"; continue; fi
  for x in $pathsToLink; do
    x=${x%/}                                    # "/" -> "", "/bin/" -> "/bin"
    if [ -z "$x" ]; then env_dir "$p" "$out"
    elif [ -e "$p$x" ]; then mkdir -p "$(dirname "$out$x")"; env_entry "$p$x" "$out$x"
    fi
  done
done
eval "$postBuild"
