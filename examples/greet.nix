# Not an image: the `greet` script that the layered and nested examples put
# in their images. It prints hello's greeting and the kernel's name, and its
# closure is a few store paths (with a real nixpkgs, many more: glibc, …).
{ pkgs }:

pkgs.writeShellScript "greet" ''
  ${pkgs.hello}/bin/hello
  ${pkgs.coreutils}/bin/uname -s
''
