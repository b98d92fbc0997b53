//! The command line: argument definitions (their doc comments are the
//! `--help` text) and the dispatch to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::compression::Compression;
use crate::image::Image;
use crate::layer::{Layer, default_history, read_path_specs};
use crate::transport::{self, CopyOptions, Destination};
use crate::{nix_builder, tar};

/// Exit code for success.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code for any failure after the arguments were accepted.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid arguments (as clap reports them).
pub const EXIT_USAGE: u8 = 2;

/// Container images from Nix closures.
///
/// The Nix library (buildImage, buildLayer) runs this program as the builder
/// of its derivations; an image derivation's output is an image JSON that
/// lists each layer's store paths and digests. `copy` turns an image JSON into
/// a real image anywhere, regenerating each layer from the Nix store.
///
/// Exit status: 0 on success, 1 on failure, 2 on invalid arguments.
#[derive(Debug, Parser)]
#[command(name = "nix2container", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy an image to a directory, an archive or a Docker daemon.
    ///
    /// Examples:
    ///
    ///   nix2container copy ./result oci:out:latest
    ///
    ///   nix2container copy ./result docker-archive:-:hello:latest | docker load
    ///
    ///   nix2container copy ./result docker-daemon:hello:latest
    Copy {
        /// The image JSON, i.e. the output of a buildImage derivation.
        image: PathBuf,
        /// Where to: oci:DIR[:TAG], oci-archive:FILE[:TAG],
        /// docker-archive:FILE[:NAME[:TAG]] (FILE `-` is stdout), or
        /// docker-daemon:NAME[:TAG] (uses DOCKER_HOST, else
        /// /var/run/docker.sock).
        destination: String,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },

    /// Show what an image JSON holds: layers, digests, store paths; or print
    /// its manifest or config blob exactly as transports send them.
    Inspect {
        /// The image JSON.
        image: PathBuf,
        /// Print the OCI manifest instead.
        #[arg(long, conflicts_with = "config")]
        manifest: bool,
        /// Print the OCI config blob instead.
        #[arg(long)]
        config: bool,
    },

    /// Print the digest and size of the layer tar made of some paths, as
    /// `sha256:<hex> <size>`, without writing the tar anywhere.
    ///
    /// Use it to compare a layer against a digest recorded in an image JSON,
    /// or against upstream nix2container: for the same paths and options the
    /// tar is byte for byte the same.
    TarDigest {
        /// A JSON list of {"path": "/abs/path", "rewrite": {"regex", "repl"},
        /// "perms": [{"regex", "mode", "uid", "gid", "uname", "gname"}]};
        /// rewrite and perms are optional.
        #[arg(long, value_name = "FILE")]
        paths: PathBuf,
        /// Also compress the tar as a layer blob would be (gzip, zstd or
        /// none), and print the blob's digest and size on a second line.
        #[arg(long, default_value = "none", value_name = "ALGORITHM")]
        compression: String,
        /// The compression level; the algorithm's default (gzip 6, zstd 3)
        /// when absent.
        #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
        compression_level: Option<i64>,
    },

    /// Write the layer tar made of some paths to standard output.
    Tar {
        /// The same paths file as `tar-digest` takes.
        #[arg(long, value_name = "FILE")]
        paths: PathBuf,
    },

    /// Run as the builder of a Nix library derivation (reads .attrs.json).
    ///
    /// Not meant to be run by hand: the Nix library's derivations call it.
    #[command(subcommand)]
    NixBuilder(BuilderCommand),
}

#[derive(Debug, Subcommand)]
enum BuilderCommand {
    /// Compute the layers of a buildLayer derivation into $out/layers.json.
    Layers,
    /// Assemble the image JSON of a buildImage derivation into $out.
    Image,
    /// Write the image config to $out.
    Config,
}

/// Runs the command line and returns the process exit code; errors are
/// printed here, once, with their whole chain of causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_SUCCESS),
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_SUCCESS),
        Err(error) => {
            eprintln!("nix2container: error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Copy {
            image,
            destination,
            quiet,
        } => {
            let destination: Destination = destination.parse()?;
            let opened = Image::from_file(&image)?;
            transport::copy(&opened, &destination, &CopyOptions { quiet })
                .with_context(|| format!("while copying {} to {destination}", image.display()))
        }
        Command::Inspect {
            image,
            manifest,
            config,
        } => {
            let opened = Image::from_file(&image)?;
            let mut stdout = std::io::stdout().lock();
            if manifest {
                stdout.write_all(opened.manifest_blob())?;
            } else if config {
                stdout.write_all(opened.config_blob())?;
            } else {
                write_summary(&opened, &mut stdout)?;
            }
            Ok(stdout.flush()?)
        }
        Command::TarDigest {
            paths,
            compression,
            compression_level,
        } => {
            let compression = Compression::from_name(&compression, compression_level)?;
            let specs = read_path_specs(&paths)?;
            let layer = Layer::compute(specs, default_history(), compression)
                .with_context(|| format!("while computing the tar of {}", paths.display()))?;
            println!("{} {}", layer.diff_id, layer.tar_size);
            if !compression.is_none() {
                println!("{} {}", layer.digest, layer.size);
            }
            Ok(())
        }
        Command::Tar { paths } => {
            let specs = read_path_specs(&paths)?;
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!(
                    "refusing to write a tar to a terminal; redirect standard output to a file or a pipe"
                );
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            tar::write_tar(&specs, &mut out)
                .with_context(|| format!("while writing the tar of {}", paths.display()))?;
            Ok(out.flush()?)
        }
        Command::NixBuilder(command) => Ok(match command {
            BuilderCommand::Layers => nix_builder::build_layers(),
            BuilderCommand::Image => nix_builder::build_image(),
            BuilderCommand::Config => nix_builder::write_config(),
        }?),
    }
}

fn write_summary(image: &Image, out: &mut impl Write) -> std::io::Result<()> {
    let document = image.document();
    writeln!(out, "manifest  {}", image.manifest_digest())?;
    writeln!(out, "config    {}", image.config_descriptor().digest())?;
    writeln!(out, "platform  {}/{}", document.os, document.architecture)?;
    writeln!(out, "created   {}", document.created)?;
    writeln!(out, "helper    {}", document.helper.display())?;
    for (index, layer) in image.layers().iter().enumerate() {
        writeln!(
            out,
            "layer {index}   {} {} bytes ({})",
            layer.digest, layer.size, layer.media_type
        )?;
        writeln!(out, "  diff_id {} {} bytes", layer.diff_id, layer.tar_size)?;
        for spec in &layer.paths {
            let note = if spec.rewrite.is_some() {
                " (copied to /)"
            } else {
                ""
            };
            writeln!(out, "  {}{note}", spec.path.display())?;
        }
    }
    Ok(())
}
