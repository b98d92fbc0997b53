# Offline stand-in for nixpkgs, for tests only (no network, no real nixpkgs on the test machines).
# Used as: nix build .#examples.hello --override-input nixpkgs path:./tests/offline-nixpkgs
# It has no inputs, so no flake.lock is needed and nothing is fetched.
{
  description = "Tiny x86_64-linux stand-in for nixpkgs built from host tools (tests only)";

  outputs = { self }: {
    # nixpkgs exposes its package set as legacyPackages.<system>; same here.
    legacyPackages.x86_64-linux = import ./default.nix { system = "x86_64-linux"; };
  };
}
