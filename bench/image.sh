#!/usr/bin/env bash
# bench/image.sh: whole-image figures of issue 5, as markdown table rows in
# bench/layers' columns (--format rows, for bench/all) or as a table.
#
#   bench/image.sh [--quick] [--format table|rows] [--no-nix]
#
# - 4 layers on 1 core vs 2 cores: the layer builder (`nix2container
#   nix-builder layers`, what a buildLayer derivation runs) on 4 store-like
#   paths of AES-CTR data (4 x 128 MiB; --quick 4 x 4 MiB), uncompressed
#   and gzip, pinned with taskset to one core, then to two.
# - Rebuild after an application change, with a 1 GiB dependency in an
#   isolated layer (bench/rebuild.nix), vs building the image of the
#   application alone: real `nix-build`s in the sandbox through the offline
#   package set, Nix evaluation included. The first build of the dependency
#   layer is a warm-up, not timed.
# - Store bytes the image adds (image JSON, layer documents, config) over
#   the image's size.
#
# The Nix rows need nix, and build the helper through the flake (as the
# e2e tests do; NIX2CONTAINER_HELPER=/nix/store/…-nix2container-… uses that
# one instead); --no-nix skips them. Needs taskset (util-linux), openssl,
# jq. Set NIX2CONTAINER to time a given executable in the first rows.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

QUICK=0
FORMAT=table
NIX_ROWS=1
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --format) FORMAT=${2:?--format needs table or rows}; shift ;;
    --no-nix) NIX_ROWS=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | cut -c3-; exit 0 ;;
    *) echo "usage: bench/image.sh [--quick] [--format table|rows] [--no-nix]" >&2; exit 2 ;;
  esac
  shift
done
if ((QUICK)); then LAYER_MIB=4 DEPS_MIB=8 REPS=1; else LAYER_MIB=128 DEPS_MIB=1024 REPS=3; fi
progress() { echo "bench/image.sh: $*" >&2; }
command -v nix-build >/dev/null || NIX_ROWS=0

WORK=$(mktemp -d "${TMPDIR:-/tmp}/n2c-image-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -n "${NIX2CONTAINER:-}" ]; then
  N2C=$NIX2CONTAINER
else
  progress "cargo build --release"
  cargo build --release --quiet
  N2C=${CARGO_TARGET_DIR:-$PWD/target}/release/nix2container
fi

now_us() { echo "${EPOCHREALTIME/./}"; }
ROWS=()
NOTES=()

# ------------------------------------------------ 4 layers, 1 vs 2 cores

progress "generating 4 x $LAYER_MIB MiB"
closure="" deps=""
for i in 1 2 3 4; do
  dir=$WORK/store/0000000000000000000000000000000$i-layer-$i
  mkdir -p "$dir/lib"
  openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
    -iv "$(printf '%032x' "$((i + 100))")" </dev/zero 2>/dev/null |
    head -c $((LAYER_MIB << 20)) >"$dir/lib/data.bin" || true
  closure+="${closure:+,}{\"path\": \"$dir\", \"references\": []}"
  deps+="${deps:+,}\"$dir\""
done
cat "$WORK"/store/*/lib/data.bin >/dev/null # page-cache it

# layers CORES COMPRESSION: median wall time (µs) of the layer builder.
layers() {
  local cores=$1 compression=$2 rep start
  local -a times=()
  for ((rep = 1; rep <= REPS; rep++)); do
    rm -rf "$WORK/out"
    printf '{"outputs": {"out": "%s"}, "closure": [%s], "deps": [%s], "maxLayers": 4, "compression": "%s"}\n' \
      "$WORK/out" "$closure" "$deps" "$compression" >"$WORK/attrs.json"
    start=$(now_us)
    NIX_ATTRS_JSON_FILE=$WORK/attrs.json taskset -c "$cores" "$N2C" nix-builder layers
    times+=($(($(now_us) - start)))
  done
  [[ $(jq '.layers | length' "$WORK/out/layers.json") == 4 ]] ||
    { echo "bench/image.sh: expected 4 layers" >&2; exit 1; }
  median "${times[@]}"
}
if [[ $(nproc) -ge 2 ]]; then
  for compression in none gzip; do
    progress "4 layers, $compression, 1 core then 2 cores"
    one=$(layers 0 "$compression")
    two=$(layers 0,1 "$compression")
    r=$(awk -v a="$one" -v b="$two" 'BEGIN { printf "%.2f", a / b }')
    ROWS+=("| image of 4 layers of $LAYER_MIB MiB, $compression: 2 cores vs 1 core (speed-up) | $(seconds "$two") on 2 cores | $(seconds "$one") on 1 core | ${r}× | $(verdict "$r" ge 1.7 "≥ 1.7×") |")
  done
else
  ROWS+=("| image of 4 layers: 2 cores vs 1 core | n/a: one core |  |  | ≥ 1.7× |")
fi

# ------------------------------------------------ Nix: rebuild, store bytes

# nix_env [SANDBOX] COMMAND…: COMMAND with the tests' Nix settings (offline,
# flakes), the sandbox on unless SANDBOX says otherwise.
nix_env() {
  local sandbox=true
  [ "$1" = relaxed ] && { sandbox=relaxed; shift; }
  env NIX_CONFIG="substituters =
experimental-features = nix-command flakes
build-users-group =
sandbox = $sandbox
warn-dirty = false
" "$@"
}

# image APP WITH_DEPS: builds bench/rebuild.nix; prints the image path.
image() {
  nix_env nix-build --no-out-link --quiet -E \
    "import ./bench/rebuild.nix { helper = \"$HELPER\"; app = \"$1\"; depsMiB = $DEPS_MIB; withDeps = $2; }" 2>"$WORK/nix.err" ||
    { cat "$WORK/nix.err" >&2; exit 1; }
}

if ((NIX_ROWS)); then
  progress "building the helper through the flake"
  HELPER=${NIX2CONTAINER_HELPER:-}
  # As the e2e tests do: the helper (built with the machine's cargo) and
  # the package set's host tools need the sandbox relaxed; images do not.
  nix_env relaxed nix-build --no-out-link --quiet tests/offline-nixpkgs -A bash -A busybox >/dev/null 2>"$WORK/nix.err" ||
    { cat "$WORK/nix.err" >&2; exit 1; }
  [ -n "$HELPER" ] || HELPER=$(nix_env relaxed nix build --no-link --json --override-input nixpkgs path:./tests/offline-nixpkgs .#default 2>"$WORK/nix.err" |
    jq -r '.[0].outputs.out') || { cat "$WORK/nix.err" >&2; exit 1; }
  progress "warm-up: the $DEPS_MIB MiB dependency and its layer"
  image "warm-up $$" true >/dev/null
  tag="$(date +%s%N)"
  declare -a with=() alone=()
  for ((rep = 1; rep <= REPS; rep++)); do
    progress "rebuild $rep/$REPS"
    start=$(now_us)
    img=$(image "changed $tag $rep" true)
    with+=($(($(now_us) - start)))
    start=$(now_us)
    image "alone $tag $rep" false >/dev/null
    alone+=($(($(now_us) - start)))
  done
  w=$(median "${with[@]}") a=$(median "${alone[@]}")
  r=$(awk -v a="$w" -v b="$a" 'BEGIN { printf "%.2f", a / b }')
  ROWS+=("| rebuild after an app change, $DEPS_MIB MiB dependency layer, vs the app-only image (\`nix-build\`, evaluation included) | $(seconds "$w") | $(seconds "$a") | ${r}× | $(verdict "$r" le 1.5 "≤ 1.5×") |")

  # What the image adds to the store: the outputs of the derivations the
  # helper builds (image JSON, layer documents, config), found in the
  # image derivation's closure by their builder.
  : >"$WORK/added"
  for drv in $(nix-store -qR "$(nix-store -qd "$img")" | grep '\.drv$'); do
    builder=$(nix_env nix show-derivation "$drv" 2>/dev/null | jq -r '.[].builder' || true)
    [ "$builder" = "$HELPER/bin/nix2container" ] || continue
    for out in $(nix-store -q --outputs "$drv"); do
      [ -e "$out" ] && echo "$out" >>"$WORK/added"
    done
  done
  added=0
  while read -r path; do
    added=$((added + $(nix-store -q --size "$path")))
  done <"$WORK/added"
  # The image's size unpacked (its layers' tars); the dependency is text
  # that gzip shrinks a thousandfold, so blob bytes would say little.
  image_bytes=$(jq '[.layers[].tar_size] | add' "$img")
  pct=$(awk -v a="$added" -v i="$image_bytes" 'BEGIN { printf "%.4f", 100 * a / i }')
  ROWS+=("| store bytes added per image ($(wc -l <"$WORK/added") paths: image JSON, layer documents, config) vs the image's size (its layer tars) | $added B | $image_bytes B | ${pct} % | $(verdict "$pct" le 0.1 "≤ 0.1 %") |")
  NOTES+=("image rows: $REPS run(s), median; Nix $(nix --version | grep -o '[0-9][0-9.]*' | head -n1), sandbox on, offline package set; the app-only image has no dependency layer")
else
  ROWS+=("| rebuild after an app change vs the app-only image | not run (no nix, or --no-nix) |  |  | ≤ 1.5× |")
  ROWS+=("| store bytes added per image | not run (no nix, or --no-nix) |  |  | ≤ 0.1 % |")
fi
((QUICK)) && NOTES+=("image --quick: small data; this run only checks that the benchmark works.")

if [ "$FORMAT" = table ]; then
  echo "| figure | ours | peer / limit (same run) | ratio | target (issue 5) |"
  echo "|---|---|---|---|---|"
fi
printf '%s\n' "${ROWS[@]}"
for note in "${NOTES[@]}"; do echo "- $note"; done
