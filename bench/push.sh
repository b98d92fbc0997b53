#!/usr/bin/env bash
# Push benchmark: `nix2container copy IMAGE docker://…` against `skopeo copy
# oci:… docker://…` of the same image, on local registries started here
# (Debian's docker-registry, plain HTTP on 127.0.0.1), as on a fresh CI
# machine: every run gets an empty HOME, and skopeo's blob-info cache is
# emptied before each of its runs.
#
#   bench/push.sh [--quick] [--format table|rows]
#
# prints a markdown table on standard output (--format rows: only the
# rows, in bench/layers' columns, for bench/all). --quick uses a tenth of
# the data: a check that the benchmark works (CI), not a measurement.
#
# Scenarios: the first push of a ~300 MiB, 4-layer image (gzip); the same
# image again from a fresh machine; the image with its small "application"
# layer changed. For skopeo the image must first be an OCI layout, made with
# `nix2container copy IMAGE oci:…` (a row of its own: it regenerates and
# compresses every layer, as a push does). "Uploaded" counts the blobs the
# registry received in full (PUT …?digest= answered 201 in its access log)
# and their sizes.
#
# The data is deterministic and needs no /dev/urandom: AES-CTR of zeros with
# fixed keys, raw (incompressible) or as base64 text (compresses to ~75 %).
# Needs: cargo, docker-registry, skopeo, openssl, jq, curl. Runs in about a
# minute and a half on 2 cores; as root, skopeo's blob-info cache
# (/var/lib/containers/cache/blob-info-cache-v1.{boltdb,sqlite}: skopeo 1.9
# uses the first, later versions the second) is moved aside and restored at
# the end.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

QUICK=0
FORMAT=table
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --format) FORMAT=${2:?--format needs table or rows}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | cut -c3-; exit 0 ;;
    *) echo "usage: bench/push.sh [--quick] [--format table|rows]" >&2; exit 2 ;;
  esac
  shift
done
# MiB per layer: base (raw), libs and tools (text), app (raw).
if ((QUICK)); then SIZES=(12 10 6 2); else SIZES=(120 100 60 16); fi

for tool in docker-registry skopeo openssl jq curl; do
  command -v "$tool" >/dev/null || { echo "bench/push.sh: $tool is missing" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/n2c-push-bench.XXXXXX")
SKOPEO_CACHES=(/var/lib/containers/cache/blob-info-cache-v1.boltdb
               /var/lib/containers/cache/blob-info-cache-v1.sqlite)
mkdir "$WORK/saved-caches"

cleanup() {
  for pidfile in "$WORK"/*/registry.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for cache in "${SKOPEO_CACHES[@]}"; do
    rm -f "$cache"
    if [ -e "$WORK/saved-caches/$(basename "$cache")" ]; then
      mv -f "$WORK/saved-caches/$(basename "$cache")" "$cache"
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
for cache in "${SKOPEO_CACHES[@]}"; do
  if [ -e "$cache" ]; then mv "$cache" "$WORK/saved-caches/"; fi
done

if [ -n "${NIX2CONTAINER:-}" ]; then
  N2C=$NIX2CONTAINER
else
  echo "building nix2container (release)…" >&2
  cargo build --release --quiet
  N2C=${CARGO_TARGET_DIR:-$PWD/target}/release/nix2container
fi

# --- data ---------------------------------------------------------------

# stream KEY_HEX: an endless deterministic byte stream.
stream() {
  openssl enc -aes-128-ctr -K "$1" -iv 00000000000000000000000000000000 -nosalt -in /dev/zero 2>/dev/null
}

# layer DIR KEY MIB KIND: a layer root with one file of MIB MiB, raw or text.
layer() {
  local dir=$1 key=$2 mib=$3 kind=$4
  mkdir -p "$dir/opt/$(basename "$dir")"
  case $kind in
    raw) stream "$key" | head -c $((mib << 20)) > "$dir/opt/$(basename "$dir")/data.bin" ;;
    text) stream "$key" | head -c $((mib * 3 << 18)) | base64 -w 76 > "$dir/opt/$(basename "$dir")/data.txt" ;;
  esac
}

# layer_json DIR: the layer object of DIR (contents at /), gzip level 6.
layer_json() {
  local dir=$1
  printf '[{"path": "%s", "rewrite": {"regex": "^%s", "repl": ""}}]' "$dir" "$dir" > "$dir.paths.json"
  "$N2C" tar-digest --paths "$dir.paths.json" --compression gzip | {
    read -r diff_id tar_size
    read -r digest size
    jq -n --arg dir "$dir" --arg diff_id "$diff_id" --argjson tar_size "$tar_size" \
      --arg digest "$digest" --argjson size "$size" '{
        digest: $digest, size: $size,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        compression: {algorithm: "gzip", level: 6},
        diff_id: $diff_id, tar_size: $tar_size,
        paths: [{path: $dir, rewrite: {regex: ("^" + $dir), repl: ""}}],
        history: {created_by: ("bench " + ($dir | split("/") | last))}
      }'
  } > "$dir.layer.json"
}

# image_json OUT LAYER_DIR…: an image JSON of those layers, bottom first.
image_json() {
  local out=$1; shift
  local layers=()
  for dir in "$@"; do layers+=("$dir.layer.json"); done
  jq -s --arg helper "$N2C" '{
    version: 1, helper: $helper, architecture: "amd64", os: "linux",
    created: "1970-01-01T00:00:01Z",
    config: {Entrypoint: ["/opt/app/data.bin"]},
    layers: .
  }' "${layers[@]}" > "$out"
}

echo "generating $((SIZES[0] + SIZES[1] * 4 / 3 + SIZES[2] * 4 / 3 + SIZES[3])) MiB of layer data…" >&2
D=$WORK/data
layer "$D/base" 00000000000000000000000000000001 "${SIZES[0]}" raw &
layer "$D/libs" 00000000000000000000000000000002 "${SIZES[1]}" text &
wait
layer "$D/tools" 00000000000000000000000000000003 "${SIZES[2]}" text &
layer "$D/app" 00000000000000000000000000000004 "${SIZES[3]}" raw &
layer "$D/app2" 00000000000000000000000000000005 "${SIZES[3]}" raw &
wait
mv "$D/app2/opt/app2" "$D/app2/opt/app"

echo "computing layer digests (what the Nix build does)…" >&2
layer_json "$D/base" & layer_json "$D/libs" & wait
layer_json "$D/tools" & layer_json "$D/app" & layer_json "$D/app2" & wait
image_json "$WORK/image.json" "$D/base" "$D/libs" "$D/tools" "$D/app"
image_json "$WORK/changed.json" "$D/base" "$D/libs" "$D/tools" "$D/app2"

# --- registries ---------------------------------------------------------

# registry NAME: starts a registry in $WORK/NAME; prints its port.
registry() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  cat > "$dir/config.yml" <<EOF
version: 0.1
log: { level: info, accesslog: { disabled: false } }
storage: { filesystem: { rootdirectory: $dir/data } }
http: { addr: "127.0.0.1:0", secret: bench-only }
EOF
  docker-registry serve "$dir/config.yml" > "$dir/access.log" 2> "$dir/registry.log" &
  echo $! > "$dir/registry.pid" # this runs in a subshell: cleanup reads the file
  local port=""
  for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$dir/registry.log" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "docker-registry did not start:" >&2; cat "$dir/registry.log" >&2; exit 1; }
  echo "$port"
}

# uploaded NAME FROM_LINE: "blobs bytes" the registry NAME received in full
# since line FROM_LINE of its access log.
uploaded() {
  local dir=$WORK/$1 from=$2 blobs=0 bytes=0 hex
  sleep 0.3 # the access log is written after the answer
  for hex in $(tail -n +"$((from + 1))" "$dir/access.log" \
      | grep -E '"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256%3A[0-9a-f]{64}[^ ]* HTTP/1\.1" 201' \
      | grep -oE 'digest=sha256%3A[0-9a-f]{64}' | cut -c 17-); do
    blobs=$((blobs + 1))
    bytes=$((bytes + $(stat -c %s "$dir/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data")))
  done
  echo "$blobs $bytes"
}

lines() { wc -l < "$WORK/$1/access.log"; }

# fresh_env: the environment of a machine that never pushed anything.
fresh_env() {
  local home
  home=$(mktemp -d "$WORK/home.XXXXXX")
  echo "HOME=$home XDG_CONFIG_HOME=$home/.config XDG_CACHE_HOME=$home/.cache XDG_DATA_HOME=$home/.local/share XDG_RUNTIME_DIR=$home/run"
}

ROWS=()
declare -A SECONDS_OF BLOBS_OF MIB_OF
# run LABEL TOOL REGISTRY COMMAND…: times COMMAND in a fresh environment and
# records a table row, and the figures under KEY (LABEL/TOOL's first word).
run() {
  local label=$1 tool=$2 reg=$3; shift 3
  local key="$label/${tool%% *}"
  [[ $tool == *"oci: (layout"* ]] && key="$label/layout"
  local before start end counts
  rm -f "${SKOPEO_CACHES[@]}"
  before=$( [ "$reg" = - ] && echo 0 || lines "$reg")
  start=$(date +%s.%N)
  # shellcheck disable=SC2046
  env -u REGISTRY_AUTH_FILE -u DOCKER_CONFIG $(fresh_env) "$@" > "$WORK/last.out" 2> "$WORK/last.err" || {
    echo "failed: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
  end=$(date +%s.%N)
  if [ "$reg" = - ]; then counts="– –"; else counts=$(uploaded "$reg" "$before"); fi
  read -r blobs bytes <<< "$counts"
  local mib="–"
  [ "$bytes" != "–" ] && mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
  local wall
  wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
  SECONDS_OF[$key]=$wall BLOBS_OF[$key]=$blobs MIB_OF[$key]=$mib
  ROWS+=("| $label | $tool | $wall | $blobs | $mib |")
  echo "  $label, $tool: done" >&2
}

OURS=$(registry ours)
THEIRS=$(registry skopeo)
FLOOR=$(registry floor)
echo "registries on 127.0.0.1:$OURS (nix2container) and 127.0.0.1:$THEIRS (skopeo)" >&2

N2C_FLAGS=(--dest-tls-verify=false --quiet)
SKOPEO_FLAGS=(--dest-tls-verify=false --quiet)

run "first push" "nix2container copy docker://" ours \
  "$N2C" copy "$WORK/image.json" "docker://127.0.0.1:$OURS/bench/app:v1" "${N2C_FLAGS[@]}"
run "first push" "nix2container copy oci: (layout for skopeo)" - \
  "$N2C" copy "$WORK/image.json" "oci:$WORK/layout-v1:v1" --quiet
run "first push" "skopeo copy oci: docker://" skopeo \
  skopeo copy "${SKOPEO_FLAGS[@]}" "oci:$WORK/layout-v1:v1" "docker://127.0.0.1:$THEIRS/bench/app:v1"

# put_blobs PORT LAYOUT: every blob of LAYOUT sent with curl at once, one
# monolithic upload each: what the registry itself needs to take the bytes,
# the floor under any client that sends them (no manifest).
put_blobs() {
  local port=$1 layout=$2 blob location
  for blob in "$layout"/blobs/sha256/*; do
    (
      location=$(curl -sS -D - -o /dev/null -X POST "http://127.0.0.1:$port/v2/bench/app/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
      case $location in http*) ;; *) location="http://127.0.0.1:$port$location" ;; esac
      curl -sS -f -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$blob" "$location&digest=sha256%3A$(basename "$blob")"
    ) &
  done
  wait
}
run "first push" "curl PUT of the layout's blobs (registry floor)" floor \
  bash -c "$(declare -f put_blobs); put_blobs \"\$@\"" put_blobs "$FLOOR" "$WORK/layout-v1"

run "unchanged, fresh machine" "nix2container copy docker://" ours \
  "$N2C" copy "$WORK/image.json" "docker://127.0.0.1:$OURS/bench/app:v1" "${N2C_FLAGS[@]}"
run "unchanged, fresh machine" "skopeo copy oci: docker://, empty cache" skopeo \
  skopeo copy "${SKOPEO_FLAGS[@]}" "oci:$WORK/layout-v1:v1" "docker://127.0.0.1:$THEIRS/bench/app:v1"

run "one layer changed, fresh machine" "nix2container copy docker://" ours \
  "$N2C" copy "$WORK/changed.json" "docker://127.0.0.1:$OURS/bench/app:v2" "${N2C_FLAGS[@]}"
run "one layer changed, fresh machine" "nix2container copy oci: (layout for skopeo)" - \
  "$N2C" copy "$WORK/changed.json" "oci:$WORK/layout-v2:v2" --quiet
run "one layer changed, fresh machine" "skopeo copy oci: docker://, empty cache" skopeo \
  skopeo copy "${SKOPEO_FLAGS[@]}" "oci:$WORK/layout-v2:v2" "docker://127.0.0.1:$THEIRS/bench/app:v2"

image_mib=$(jq '[.layers[].size] | add / 1048576 | . * 10 | round / 10' "$WORK/image.json")
tar_mib=$(jq '[.layers[].tar_size] | add / 1048576 | . * 10 | round / 10' "$WORK/image.json")

cell() { echo "${SECONDS_OF[$1]} s (${BLOBS_OF[$1]} blobs, ${MIB_OF[$1]} MiB sent)"; }
ratio() { awk -v a="${SECONDS_OF[$1]}" -v b="${SECONDS_OF[$2]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
skopeo_cmd='`skopeo copy oci:… docker://…`'
what="image of 4 gzip layers ($tar_mib MiB of tar, $image_mib MiB of blobs)"
r1=$(ratio "first push/nix2container" "first push/skopeo")
r2=$(ratio "unchanged, fresh machine/nix2container" "unchanged, fresh machine/skopeo")
r3=$(ratio "one layer changed, fresh machine/nix2container" "one layer changed, fresh machine/skopeo")
unchanged_ok=$(awk -v s="${SECONDS_OF["unchanged, fresh machine/nix2container"]}" -v m="${MIB_OF["unchanged, fresh machine/nix2container"]}" 'BEGIN { print (s <= 0.2 && m == 0) ? 1 : 2 }')
UNIFIED=(
  "| push, first, $what: wall time vs $skopeo_cmd of its OCI layout | $(cell "first push/nix2container") | $(cell "first push/skopeo") | ${r1}× | $(verdict "$r1" le 0.6 "≤ 0.6×") |"
  "| push, first: making the OCI layout skopeo pushes from (\`nix2container copy … oci:\`; not in skopeo's time) | ${SECONDS_OF["first push/layout"]} s |  |  | none set |"
  "| push, first: the registry's floor, the layout's blobs sent by \`curl\` at once (no client work) | $(cell "first push/curl") | $(cell "first push/skopeo") | $(ratio "first push/curl" "first push/skopeo")× | none set |"
  "| push, unchanged, from a fresh machine (skopeo: empty blob-info cache) | $(cell "unchanged, fresh machine/nix2container") | $(cell "unchanged, fresh machine/skopeo") | ${r2}× | $(verdict "$unchanged_ok" le 1 "0 layer bytes, ≤ 0.2 s") |"
  "| push, after an app change (one $(( SIZES[3] )) MiB layer), fresh machine | $(cell "one layer changed, fresh machine/nix2container") | $(cell "one layer changed, fresh machine/skopeo") | ${r3}× | $(verdict "$r3" le 0.5 "≤ 0.5×") |"
)
if [ "$FORMAT" = rows ]; then
  printf '%s\n' "${UNIFIED[@]}"
  echo "- push: one run of each, registries on 127.0.0.1 (docker-registry, plain HTTP), every run with an empty HOME; $(skopeo --version); blobs counted from the registry's access log (the config blob included)"
  ((QUICK)) && echo "- push --quick: a tenth of the data; this run only checks that the benchmark works."
  exit 0
fi
echo "Image: 4 gzip layers, $tar_mib MiB of tar, $image_mib MiB compressed; $(nproc) cores; $(skopeo --version)."
echo
echo "| scenario | tool | wall time (s) | blobs uploaded | MiB uploaded |"
echo "|---|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| figure | ours | peer (same run) | ratio | target (issue 5) |"
echo "|---|---|---|---|---|"
printf '%s\n' "${UNIFIED[@]}"
