//! The `nix2container` executable; everything lives in the library.

fn main() -> std::process::ExitCode {
    nix2container::cli::main()
}
