//! TLS for registries: rustls with the `ring` provider (no C library to
//! link but ring's own, so the static build stays simple), the system's CA
//! certificates through `rustls-platform-verifier`, and extra CAs per
//! registry from a certs.d-style directory (`*.crt` files), as containers'
//! tools read them.
//!
//! A self-signed certificate made the usual way (`openssl req -x509`) is
//! marked as a CA, and webpki refuses a CA certificate as a server's own.
//! Go's TLS (Docker, skopeo) accepts it when it is also a trusted root, so
//! this does too: a server certificate that is byte for byte one of the
//! registry's `*.crt` files is accepted if it names the server.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::blocking::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// How long a TCP connection (and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// System directories holding per-registry CA certificates, as
/// `<dir>/<host[:port]>/*.crt`; the user's `containers/certs.d` is added.
const SYSTEM_CERT_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// Installs `ring` as the process's rustls crypto provider. Every reqwest
/// client needs one (the crate is built without its default, aws-lc-rs),
/// so transports call this before building any.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How a registry's certificate is checked.
#[derive(Debug, Clone)]
pub(crate) enum Verification {
    /// Against the system's CAs and these extra ones.
    Verify(Vec<CertificateDer<'static>>),
    /// Not at all (`--dest-tls-verify=false`, `--insecure`).
    Skip,
}

/// An HTTP client for a registry. Request timeouts are set per request.
pub(crate) fn client(verification: &Verification) -> Result<Client> {
    install_crypto_provider();
    let failed = |cause: String| Error::Invalid(format!("cannot set up an HTTP client: {cause}"));
    let builder = Client::builder()
        .user_agent(concat!("nix2container/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(None);
    let builder = match verification {
        Verification::Verify(extra) if extra.is_empty() => builder,
        Verification::Verify(extra) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = PinnedOrVerified {
                inner: rustls_platform_verifier::Verifier::new_with_extra_roots(
                    extra.iter().cloned(),
                    provider.clone(),
                )
                .map_err(|e| failed(e.to_string()))?,
                pinned: extra.clone(),
            };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| failed(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            builder.tls_backend_preconfigured(config)
        }
        Verification::Skip => builder.tls_danger_accept_invalid_certs(true),
    };
    builder.build().map_err(|e| match root_cause(&e) {
        cause if cause.contains("No CA certificates") => Error::Invalid(
            "this system has no CA certificates to check the registry's TLS certificate with: \
             install them (Debian: ca-certificates), set SSL_CERT_FILE to a CA bundle, \
             or pass --dest-cert-dir with the registry's CA (in a Nix build, which has no \
             system CAs, give pullImage or pullImageFromManifest an `sslCertFile`)"
                .into(),
        ),
        cause => failed(cause),
    })
}

/// The platform's verification, and the registry's own `*.crt` files
/// accepted as server certificates (see the module documentation).
#[derive(Debug)]
struct PinnedOrVerified {
    inner: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrVerified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(error)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                let certificate =
                    webpki::EndEntityCert::try_from(end_entity).map_err(|_| error.clone())?;
                certificate
                    .verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| error)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The CA certificates for `registry`: every `*.crt` in `cert_dir` if
/// given (it must exist), else in the system and user certs.d directories
/// for the registry (each may be absent).
pub(crate) fn extra_roots(
    cert_dir: Option<&Path>,
    registry: &str,
    config_home: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>> {
    if let Some(dir) = cert_dir {
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "--dest-cert-dir {}: no such directory",
                dir.display()
            )));
        }
        return read_cert_dir(dir);
    }
    let mut dirs: Vec<PathBuf> = SYSTEM_CERT_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(registry))
        .collect();
    dirs.extend(config_home.map(|home| home.join("containers/certs.d").join(registry)));
    let mut roots = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        roots.extend(read_cert_dir(dir)?);
    }
    Ok(roots)
}

/// Every certificate in the `*.crt` files of `dir`, in name order.
fn read_cert_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io("listing", dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "crt"))
        .collect();
    files.sort();
    let mut roots = Vec::new();
    for file in files {
        roots.extend(read_pem_file(&file)?);
    }
    Ok(roots)
}

/// Every certificate of a PEM file (a `*.crt` of a certificate directory,
/// or a CA bundle); at least one.
pub(crate) fn read_pem_file(file: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(file).map_err(Error::io("reading the CA certificates", file))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} holds no PEM certificate (CA files must be PEM)",
                file.display()
            ))
        })
}

/// The TLS failure somewhere in an HTTP client error, if any.
pub(crate) enum TlsFailure {
    /// The peer's certificate was refused; why, in words.
    Certificate(String),
    /// Another handshake failure (such as a plain HTTP server).
    Handshake(String),
}

/// Finds a rustls error in the chain of `error`. An `io::Error` hides its
/// payload from `source()`, so it is opened with `get_ref()`.
pub(crate) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(why) => {
                    TlsFailure::Certificate(certificate_problem(why))
                }
                other => TlsFailure::Handshake(other.to_string()),
            });
        }
        let payload = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
        current = payload.or_else(|| e.source());
    }
    None
}

/// What is wrong with a certificate, in words.
fn certificate_problem(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::UnknownIssuer => "it is signed by an unknown authority".into(),
        E::Expired | E::ExpiredContext { .. } => "it has expired".into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it is not valid for this host name or address".into()
        }
        E::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "it is a self-signed CA certificate that is not among the registry's CAs".into()
        }
        other => format!("{other:?}"),
    }
}

/// The innermost cause of an error: "Connection refused" rather than
/// "error sending request" (without the "(os error 111)" that only
/// repeats it).
pub(crate) fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    match text.rsplit_once(" (os error ") {
        Some((message, code)) if code.ends_with(')') => message.to_owned(),
        _ => text,
    }
}
