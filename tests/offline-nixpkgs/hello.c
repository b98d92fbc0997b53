/* Stand-in for nixpkgs' `hello` (GNU hello): prints the same default greeting.
   Compiled with `gcc -static` so it runs inside the Nix sandbox and in empty images. */
#include <stdio.h>

int main(void)
{
    puts("Hello, world!");
    return 0;
}
