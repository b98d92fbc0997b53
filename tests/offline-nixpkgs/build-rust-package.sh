# Builder of rustPlatform.buildRustPackage (rust.nix). Runs outside the sandbox as the user who
# started the build, but with HOME=/homeless-shelter and PATH=/path-not-set: find that user's real
# home to reach the rustup toolchain (~/.cargo/bin) and the crate cache.
set -euo pipefail

for tool in /usr/bin/id /usr/bin/getent; do
  [ -x "$tool" ] || { echo "buildRustPackage: $tool not found" >&2; exit 1; }
done
uid=$(/usr/bin/id -u)
IFS=: read -r _ _ _ _ _ home _ < <(/usr/bin/getent passwd "$uid")
export HOME=$home
export CARGO_HOME=${CARGO_HOME:-$home/.cargo}
export RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}
export PATH=$CARGO_HOME/bin:$home/.cargo/bin:/usr/local/bin:/usr/bin:/bin
if ! command -v cargo >/dev/null; then
  echo "buildRustPackage: no cargo on $PATH (build runs as uid $uid, home $home);" \
       "install Rust with rustup for that user" >&2
  exit 1
fi

cp -r "$src" "$NIX_BUILD_TOP/source"
chmod -R u+w "$NIX_BUILD_TOP/source"
cd "$NIX_BUILD_TOP/source"
if [ -n "$lockFile" ]; then
  if [ ! -e Cargo.lock ]; then
    cp "$lockFile" Cargo.lock
  elif ! cmp -s "$lockFile" Cargo.lock; then
    echo "buildRustPackage: Cargo.lock in src differs from cargoLock.lockFile" >&2; exit 1
  fi
fi

target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=$NIX_BUILD_TOP/target
# Static glibc binaries run in the sandbox (which has no /lib) and in images without a libc.
# The remaps keep host paths (crate cache, build dir) out of the binary.
export RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$CARGO_HOME=/cargo-home --remap-path-prefix=$PWD=/source ${RUSTFLAGS:-}"
if [ "${NIX_BUILD_CORES:-0}" -gt 0 ]; then export CARGO_BUILD_JOBS=$NIX_BUILD_CORES; fi
export CARGO_TERM_COLOR=never   # plain build logs

echo "buildRustPackage: $(cargo --version), CARGO_HOME=$CARGO_HOME"
# shellcheck disable=SC2086  # the *Flags variables are space-separated lists
cargo build --release --locked --target "$target" $cargoBuildFlags
if [ -n "$doCheck" ]; then
  cargo test --release --locked --target "$target" $cargoTestFlags -- $checkFlags
fi

# Install like nixpkgs' cargoInstallHook: every executable at the top of the release dir.
mkdir -p "$out/bin"
find "$CARGO_TARGET_DIR/$target/release" -maxdepth 1 -type f -executable \
  ! -name '*.so' ! -name '*.a' ! -name '*.rlib' ! -name '*.d' -exec cp {} "$out/bin/" \;
if [ -z "$(ls -A "$out/bin")" ]; then
  echo "buildRustPackage: cargo built no binaries" >&2; exit 1
fi
ls -l "$out/bin"
