{
  description = "Container images from Nix closures, without tarballs in the Nix store";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      supported = [ "x86_64-linux" "aarch64-linux" ];
      # Only the systems the nixpkgs input provides, so that a smaller
      # package set can stand in for it.
      systems = builtins.filter (system: nixpkgs.legacyPackages ? ${system}) supported;
      forAllSystems = f: builtins.listToAttrs (map
        (system: { name = system; value = f nixpkgs.legacyPackages.${system}; })
        systems);
      libFor = pkgs: import ./nix { inherit pkgs; };
      examplesFor = pkgs: import ./examples { inherit pkgs; nix2container = libFor pkgs; };
    in
    {
      overlays.default = import ./overlay.nix;

      lib = forAllSystems libFor;

      packages = forAllSystems (pkgs: rec {
        nix2container = (libFor pkgs).nix2container-bin;
        default = nix2container;
      });

      # Under legacyPackages so that `nix build .#examples.hello` works
      # (packages may only hold derivations).
      legacyPackages = forAllSystems (pkgs: { examples = examplesFor pkgs; });

      checks = forAllSystems (pkgs:
        { nix2container = (libFor pkgs).nix2container-bin; }
        // builtins.listToAttrs (map
          (name: { name = "example-${name}"; value = (examplesFor pkgs).${name}; })
          (builtins.attrNames (examplesFor pkgs))));
    };
}
