//! The command line: argument definitions (their doc comments are the
//! `--help` text) and the dispatch to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::compression::Compression;
use crate::image::Image;
use crate::layer::{Layer, default_history, read_path_specs};
use crate::registry::{
    AccessOptions, CredentialsArg, ManifestFormat, Platform, Puller, PushOptions,
    RegistryReference, Target,
};
use crate::transport::{self, CopyOptions, Destination};
use crate::{nar, nix_builder, pull, tar};

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
    /// Copy an image to a directory, an archive, a Docker daemon or a
    /// registry.
    ///
    /// Examples:
    ///
    ///   nix2container copy ./result oci:out:latest
    ///
    ///   nix2container copy ./result docker-archive:-:hello:latest | docker load
    ///
    ///   nix2container copy ./result docker-daemon:hello:latest
    ///
    ///   nix2container copy ./result docker://ghcr.io/me/hello:v1 --dest-creds me:$TOKEN
    Copy {
        /// The image JSON, i.e. the output of a buildImage derivation.
        image: PathBuf,
        /// Where to: oci:DIR[:TAG], oci-archive:FILE[:TAG],
        /// docker-archive:FILE[:NAME[:TAG]] (FILE `-` is stdout),
        /// docker-daemon:NAME[:TAG] (uses DOCKER_HOST, else
        /// /var/run/docker.sock), containers-storage:NAME[:TAG] (Podman), or
        /// docker://REGISTRY/NAME[:TAG|@DIGEST] (a registry; a name without a
        /// registry is on docker.io; no tag means latest).
        destination: String,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        registry: RegistryArgs,
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

    /// Pull an image from a registry into a directory, as skopeo's dir:
    /// transport lays it out, and print the `imageDigest` and `sha256` that
    /// pullImage needs to pull the same image.
    ///
    /// Examples:
    ///
    ///   nix2container pull docker://alpine:3.20 ./alpine
    ///
    ///   nix2container pull docker://ghcr.io/me/base@sha256:… ./base --arch arm64
    Pull {
        /// The image: docker://REGISTRY/NAME[:TAG|@DIGEST] (a name without a
        /// registry is on docker.io; no tag means latest).
        source: String,
        /// The directory to pull into; it must not exist or be empty.
        dir: PathBuf,
        /// Print nothing but errors and the result.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        access: SourceArgs,
    },

    /// Print the manifest of an image in a registry; for a multi-platform
    /// image (an index), the manifest of the platform asked for. This is
    /// the lock file of pullImageFromManifest (its `getManifest` runs it).
    GetManifest {
        /// The image: docker://REGISTRY/NAME[:TAG|@DIGEST].
        source: String,
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        access: SourceArgs,
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
    /// Write the Nix database of an image (initializeNixDatabase) to $out.
    NixDatabase,
    /// Pull an image into $out (pullImage, a fixed-output derivation).
    Pull,
    /// Fetch one blob into $out (pullImageFromManifest).
    PullBlob,
    /// Write the image JSON of a pulled image, a base image, to $out.
    BaseImage,
}

/// The platform to choose from a multi-platform image (an index).
#[derive(Debug, Args)]
#[command(next_help_heading = "Platform (for a multi-platform image)")]
struct PlatformArgs {
    /// The operating system.
    #[arg(long, value_name = "OS", default_value = "linux")]
    os: String,
    /// The CPU architecture, as Go names it (amd64, arm64, …) [default:
    /// this machine's].
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// The CPU variant (v7, v8, …); without it, the architecture's usual
    /// one.
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
}

impl PlatformArgs {
    fn platform(self) -> Platform {
        Platform {
            os: self.os,
            architecture: self.arch.unwrap_or(Platform::host().architecture),
            variant: self.variant,
        }
    }
}

/// How `pull` and `get-manifest` reach a registry, named as `skopeo
/// inspect` names them.
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry options")]
struct SourceArgs {
    /// Credentials for the registry; without them, those of the auth files
    /// `copy` reads (see `copy --help`). With USER alone, the password is
    /// asked for on the terminal.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    creds: Option<CredentialsArg>,
    /// An auth file as `skopeo login` or `docker login` write it.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Check the registry's TLS certificate (default true). With false,
    /// HTTPS is tried without checks, then plain HTTP.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    tls_verify: Option<bool>,
    /// A directory of CA certificates (*.crt, PEM) for the registry.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Treat REGISTRY (host[:port]) as with --tls-verify=false. Repeatable.
    #[arg(long, value_name = "REGISTRY")]
    insecure: Vec<String>,
    /// How many times to retry a request that failed for a reason that may
    /// pass [default: 3].
    #[arg(long, visible_alias = "retry-times", value_name = "N")]
    retries: Option<u32>,
    /// How long to wait for the registry to answer a request, in seconds
    /// [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
}

impl SourceArgs {
    fn into_options(self) -> AccessOptions {
        let defaults = AccessOptions::default();
        AccessOptions {
            credentials: self.creds,
            authfile: self.authfile,
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir,
            ca_file: None,
            insecure: self.insecure,
            retries: self.retries.unwrap_or(defaults.retries),
            timeout: self
                .timeout
                .map_or(defaults.timeout, std::time::Duration::from_secs),
        }
    }
}

/// Parses `docker://REFERENCE`, the only source `pull` and `get-manifest`
/// know.
fn registry_source(source: &str) -> anyhow::Result<RegistryReference> {
    match source.strip_prefix("docker://") {
        Some(reference) => Ok(reference.parse()?),
        None => bail!("unsupported source {source:?}: use docker://REGISTRY/NAME[:TAG|@DIGEST]"),
    }
}

/// The options of `copy` for `docker://` destinations, named as skopeo
/// names them.
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry options (docker:// destinations only)")]
struct RegistryArgs {
    /// Credentials for the registry. Without them, the first of these that
    /// has some for the registry is used: --dest-authfile,
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.config/containers/auth.json, $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json (with their credential helpers). With USER
    /// alone, the password is asked for on the terminal.
    #[arg(long, visible_alias = "creds", value_name = "USER[:PASSWORD]")]
    dest_creds: Option<CredentialsArg>,
    /// An auth file as `skopeo login` or `docker login` write it
    /// ({"auths": {"REGISTRY": {"auth": base64 of USER:PASSWORD}}}).
    #[arg(long, visible_alias = "authfile", value_name = "FILE")]
    dest_authfile: Option<PathBuf>,
    /// Check the registry's TLS certificate (default true). With false,
    /// HTTPS is tried without checks, then plain HTTP.
    #[arg(
        long,
        visible_alias = "tls-verify",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    dest_tls_verify: Option<bool>,
    /// A directory of CA certificates (*.crt, PEM) for the registry, as in
    /// /etc/containers/certs.d/REGISTRY, which is read (with
    /// /etc/docker/certs.d/REGISTRY and ~/.config/containers/certs.d/REGISTRY)
    /// when this is not given. They are trusted besides the system's CAs.
    #[arg(long, visible_alias = "cert-dir", value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
    /// Treat REGISTRY (host[:port]) as with --dest-tls-verify=false: no
    /// certificate checks, plain HTTP allowed. Repeatable.
    #[arg(long, value_name = "REGISTRY")]
    insecure: Vec<String>,
    /// Write the digest of the pushed manifest to FILE.
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    /// The manifest format: oci (OCI media types) or v2s2 (Docker's; for
    /// gzip or uncompressed layers only) [default: oci].
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<ManifestFormat>,
    /// How many blobs to send at once [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: Option<u16>,
    /// How many times to retry a request that failed for a reason that may
    /// pass: no connection, a timeout, 5xx, 408, 429 (after its
    /// Retry-After) [default: 3].
    #[arg(long, visible_alias = "retry-times", value_name = "N")]
    retries: Option<u32>,
    /// Before uploading a blob, try to mount it from REPOSITORY, another
    /// repository of the same registry (such as the base image's).
    #[arg(long, visible_alias = "from", value_name = "REPOSITORY")]
    mount_from: Option<String>,
    /// How long to wait for the registry to answer a request, in seconds;
    /// a blob upload gets one more second per 128 KiB [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
}

impl RegistryArgs {
    /// The first option given, to refuse it for other destinations.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.dest_creds.is_some(), "--dest-creds"),
            (self.dest_authfile.is_some(), "--dest-authfile"),
            (self.dest_tls_verify.is_some(), "--dest-tls-verify"),
            (self.dest_cert_dir.is_some(), "--dest-cert-dir"),
            (!self.insecure.is_empty(), "--insecure"),
            (self.digestfile.is_some(), "--digestfile"),
            (self.format.is_some(), "--format"),
            (self.jobs.is_some(), "--jobs"),
            (self.retries.is_some(), "--retries"),
            (self.mount_from.is_some(), "--mount-from"),
            (self.timeout.is_some(), "--timeout"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }

    fn into_options(self) -> PushOptions {
        let defaults = PushOptions::default();
        PushOptions {
            access: AccessOptions {
                credentials: self.dest_creds,
                authfile: self.dest_authfile,
                tls_verify: self.dest_tls_verify,
                cert_dir: self.dest_cert_dir,
                ca_file: None,
                insecure: self.insecure,
                retries: self.retries.unwrap_or(defaults.access.retries),
                timeout: self
                    .timeout
                    .map_or(defaults.access.timeout, std::time::Duration::from_secs),
            },
            digestfile: self.digestfile,
            format: self.format.unwrap_or(defaults.format),
            jobs: self.jobs.map_or(defaults.jobs, usize::from),
            mount_from: self.mount_from,
        }
    }
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
            registry,
        } => {
            let destination: Destination = destination.parse()?;
            if let (false, Some(flag)) = (
                matches!(destination, Destination::Registry { .. }),
                registry.first_given(),
            ) {
                bail!("{flag} applies only to docker:// destinations, not to {destination}");
            }
            let options = CopyOptions {
                quiet,
                registry: registry.into_options(),
            };
            let opened = Image::from_file(&image)?;
            transport::copy(&opened, &destination, &options)
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
        Command::Pull {
            source,
            dir,
            quiet,
            platform,
            access,
        } => {
            let reference = registry_source(&source)?;
            let platform = platform.platform();
            let pulled =
                pull::pull_to_dir(&reference, &platform, &access.into_options(), &dir, quiet)
                    .with_context(|| format!("while pulling {source} into {}", dir.display()))?;
            let hash = nar::sha256(&dir)?;
            // The digest pullImage takes: the one given, else the index's
            // (pullImage chooses the platform with `arch`), else the
            // manifest's.
            let digest = match reference.target() {
                Target::Digest(digest) => digest.clone(),
                Target::Tag(_) => pulled.index.unwrap_or(pulled.digest),
            };
            println!("imageDigest = \"{digest}\";");
            println!("sha256 = \"{}\";", nar::to_sri(&hash));
            Ok(())
        }
        Command::GetManifest {
            source,
            platform,
            access,
        } => {
            let reference = registry_source(&source)?;
            let puller = Puller::connect(&reference, &access.into_options(), false)?;
            let manifest = puller
                .manifest(&platform.platform())
                .with_context(|| format!("while getting the manifest of {source}"))?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&manifest.bytes)?;
            Ok(stdout.flush()?)
        }
        Command::NixBuilder(command) => Ok(match command {
            BuilderCommand::Layers => nix_builder::build_layers(),
            BuilderCommand::Image => nix_builder::build_image(),
            BuilderCommand::Config => nix_builder::write_config(),
            BuilderCommand::NixDatabase => nix_builder::write_nix_database(),
            BuilderCommand::Pull => nix_builder::pull(),
            BuilderCommand::PullBlob => nix_builder::pull_blob(),
            BuilderCommand::BaseImage => nix_builder::build_base_image(),
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
        if let Some(blob) = &layer.blob_path {
            let origin = layer.origin.as_deref().unwrap_or("a registry");
            writeln!(out, "  pulled from {origin}: {}", blob.display())?;
        }
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
