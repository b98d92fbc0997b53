//! Loading an image into a Docker Engine, or Podman's Docker-compatible
//! service, through its HTTP API.
//!
//! The docker archive is the chunked body of `POST /images/load`, streamed
//! while the layers are regenerated: nothing is staged and nothing is held in
//! memory. When a layer's bytes turn out wrong, the request is aborted before
//! its final chunk, so the daemon sees a truncated upload and loads nothing.
//! dockerd answers `200 OK` even when a load fails, with the error in the
//! JSON messages of the body, so the body is always read to the end.
//!
//! The HTTP client is `reqwest` (blocking, over a Unix socket or TCP), the
//! same crate a registry transport needs.

use std::error::Error as StdError;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use reqwest::blocking::{Body, Client, Response};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::reference::Reference;

use super::Progress;
use super::archive::ArchiveStream;
use super::docker;

/// The API version used when the daemon announces none: Docker 20.10's.
const FALLBACK_API_VERSION: &str = "1.41";

/// Where Docker listens unless `DOCKER_HOST` says otherwise.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where a root Podman service listens unless `CONTAINER_HOST` says
/// otherwise (a rootless one listens under `$XDG_RUNTIME_DIR`).
const PODMAN_ROOT_SOCKET: &str = "/run/podman/podman.sock";

/// Port of a `tcp://HOST` given without one: Docker's unencrypted port.
const DEFAULT_TCP_PORT: u16 = 2375;

/// How long the daemon may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error response is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The engines that speak the Docker image API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// dockerd: `DOCKER_HOST`, else its default socket.
    Docker,
    /// `podman system service`: `CONTAINER_HOST`, else its default sockets
    /// when they exist.
    Podman,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Docker => "Docker daemon",
            Engine::Podman => "Podman service",
        }
    }

    /// What to suggest when the engine does not answer.
    fn hint(self) -> &'static str {
        match self {
            Engine::Docker => {
                "is dockerd running? set DOCKER_HOST to its socket, e.g. DOCKER_HOST=unix:///var/run/docker.sock"
            }
            Engine::Podman => {
                "is `podman system service` running? set CONTAINER_HOST to its socket, e.g. CONTAINER_HOST=unix:///run/podman/podman.sock"
            }
        }
    }

    /// Where the engine listens, or `None` for a Podman with no service
    /// running, which is loaded through the `podman` command instead.
    pub(crate) fn endpoint(self) -> Result<Option<Endpoint>> {
        let (variable, mut defaults) = match self {
            Engine::Docker => ("DOCKER_HOST", vec![PathBuf::from(DEFAULT_SOCKET)]),
            Engine::Podman => {
                let mut defaults: Vec<PathBuf> = std::env::var_os("XDG_RUNTIME_DIR")
                    .map(|dir| PathBuf::from(dir).join("podman/podman.sock"))
                    .into_iter()
                    .collect();
                defaults.push(PODMAN_ROOT_SOCKET.into());
                ("CONTAINER_HOST", defaults)
            }
        };
        match std::env::var(variable) {
            Ok(host) if !host.is_empty() => return host.parse().map(Some),
            Err(std::env::VarError::NotUnicode(host)) => {
                return Err(Error::Destination(format!(
                    "unsupported {variable} {host:?}: it is not UTF-8"
                )));
            }
            _ => {}
        }
        Ok(match self {
            Engine::Docker => Some(Endpoint::Unix(defaults.remove(0))),
            Engine::Podman => defaults
                .into_iter()
                .find(|p| p.exists())
                .map(Endpoint::Unix),
        })
    }
}

/// Loads `image` into `engine` at `endpoint`, as `reference`.
pub(crate) fn load(
    image: &Image,
    reference: &Reference,
    engine: Engine,
    endpoint: Endpoint,
    progress: Progress,
) -> Result<()> {
    let daemon = Daemon { engine, endpoint };
    let client = daemon.client()?;
    let version = daemon.ping(&client)?;
    let stream = ArchiveStream::new(
        image,
        docker::archive_entries(image, Some(reference)),
        progress,
    );
    let failure = stream.failure();
    let sent = client
        .post(daemon.url(&format!("/v{version}/images/load?quiet=1")))
        .header(CONTENT_TYPE, "application/x-tar")
        .body(Body::new(stream))
        .send();
    // A failed blob aborted the request; it explains whatever came back.
    if let Some(error) = failure.take() {
        return Err(error);
    }
    let response =
        sent.map_err(|e| daemon.error(format!("the load request failed: {}", root_cause(&e))))?;
    daemon.check_load(response)
}

/// Where an engine listens: the value of `DOCKER_HOST` or `CONTAINER_HOST`.
///
/// ```text
/// endpoint := "unix://" absolute-path | "tcp://" host [ ":" port ]
/// ```
///
/// TCP is plain HTTP; daemons that require TLS are not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unsupported = || {
            Error::Destination(format!(
                "unsupported engine address {s:?} (from DOCKER_HOST or CONTAINER_HOST): use unix:///path/to/docker.sock or tcp://HOST:PORT"
            ))
        };
        if let Some(path) = s.strip_prefix("unix://") {
            return match path.starts_with('/') {
                true => Ok(Endpoint::Unix(PathBuf::from(path))),
                false => Err(unsupported()),
            };
        }
        let address = s
            .strip_prefix("tcp://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(unsupported)?;
        let has_port = address
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
        Ok(Endpoint::Tcp(match has_port {
            true => address.to_owned(),
            false => format!("{address}:{DEFAULT_TCP_PORT}"),
        }))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// A message of the JSON stream that answers a load.
#[derive(Debug, Deserialize)]
struct LoadMessage {
    error: Option<String>,
    #[serde(rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// The body of an error response.
#[derive(Debug, Deserialize)]
struct ErrorResponse {
    message: String,
}

/// An engine at an address.
struct Daemon {
    engine: Engine,
    endpoint: Endpoint,
}

impl Daemon {
    fn client(&self) -> Result<Client> {
        // Loading a large image takes as long as it takes. The API is plain
        // HTTP: no CA certificates (which a machine may not even have).
        let builder = Client::builder()
            .timeout(None)
            .no_proxy()
            .tls_certs_only(std::iter::empty());
        let builder = match &self.endpoint {
            Endpoint::Unix(path) => builder.unix_socket(path.clone()),
            Endpoint::Tcp(_) => builder,
        };
        builder
            .build()
            .map_err(|e| self.error(format!("cannot set up an HTTP client: {}", root_cause(&e))))
    }

    fn url(&self, path: &str) -> String {
        match &self.endpoint {
            // The host is not used for a socket, but HTTP needs one.
            Endpoint::Unix(_) => format!("http://docker{path}"),
            Endpoint::Tcp(address) => format!("http://{address}{path}"),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Daemon {
            daemon: self.engine.name(),
            endpoint: self.endpoint.to_string(),
            message,
        }
    }

    /// Checks that the daemon answers, and returns its API version.
    fn ping(&self, client: &Client) -> Result<String> {
        let response = client
            .get(self.url("/_ping"))
            .timeout(PING_TIMEOUT)
            .send()
            .map_err(|e| {
                self.error(format!(
                    "cannot connect ({}); {}",
                    root_cause(&e),
                    self.engine.hint()
                ))
            })?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(self.error(format!(
                "GET /_ping answered {status}: {}",
                error_message(response)
            )));
        }
        let version = response
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .unwrap_or(FALLBACK_API_VERSION);
        Ok(version.to_owned())
    }

    /// Fails if the answer to a load, status or messages, reports an error.
    fn check_load(&self, response: Response) -> Result<()> {
        let status = response.status();
        if !status.is_success() {
            return Err(self.error(format!(
                "loading the image failed with {status}: {}",
                error_message(response)
            )));
        }
        for message in serde_json::Deserializer::from_reader(response).into_iter::<LoadMessage>() {
            let message = message.map_err(|e| {
                self.error(format!("cannot read the answer to the load request: {e}"))
            })?;
            let detail = message.error_detail.and_then(|d| d.message);
            if let Some(error) = detail.or(message.error) {
                return Err(self.error(format!("loading the image failed: {error}")));
            }
        }
        Ok(())
    }
}

/// The message of an error response: its JSON `message`, or its text.
fn error_message(response: Response) -> String {
    let mut body = String::new();
    let read = response.take(ERROR_BODY_LIMIT).read_to_string(&mut body);
    match serde_json::from_str::<ErrorResponse>(&body) {
        Ok(parsed) => parsed.message,
        Err(_) if read.is_ok() && !body.trim().is_empty() => body.trim().to_owned(),
        Err(_) => "no message".to_owned(),
    }
}

/// The innermost cause of an HTTP client error: "No such file or
/// directory", rather than "error sending request".
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_table() {
        let ok: &[(&str, Endpoint)] = &[
            (
                "unix:///var/run/docker.sock",
                Endpoint::Unix("/var/run/docker.sock".into()),
            ),
            (
                "tcp://127.0.0.1:2376",
                Endpoint::Tcp("127.0.0.1:2376".into()),
            ),
            ("tcp://docker/", Endpoint::Tcp("docker:2375".into())),
            ("tcp://[::1]:80", Endpoint::Tcp("[::1]:80".into())),
        ];
        for (input, expected) in ok {
            assert_eq!(&input.parse::<Endpoint>().unwrap(), expected, "{input}");
        }
        for bad in [
            "/var/run/docker.sock",
            "unix://relative.sock",
            "ssh://me@host",
            "tcp://",
            "tcp://host/path",
            "npipe:////./pipe/docker_engine",
        ] {
            let error = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(
                error.contains("unsupported engine address"),
                "{bad}: {error}"
            );
        }
    }
}
