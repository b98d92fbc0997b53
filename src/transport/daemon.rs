//! Loading an image into a Docker Engine through its HTTP API.
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

/// Port of a `tcp://HOST` given without one: Docker's unencrypted port.
const DEFAULT_TCP_PORT: u16 = 2375;

/// How long the daemon may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error response is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Loads `image` into the daemon named by `DOCKER_HOST`, as `reference`.
pub(crate) fn load(image: &Image, reference: &Reference, progress: Progress) -> Result<()> {
    let endpoint = Endpoint::from_env()?;
    let client = endpoint.client()?;
    let version = endpoint.ping(&client)?;
    let stream = ArchiveStream::new(
        image,
        docker::archive_entries(image, Some(reference)),
        progress,
    );
    let failure = stream.failure();
    let sent = client
        .post(endpoint.url(&format!("/v{version}/images/load?quiet=1")))
        .header(CONTENT_TYPE, "application/x-tar")
        .body(Body::new(stream))
        .send();
    // A failed blob aborted the request; it explains whatever came back.
    if let Some(error) = failure.take() {
        return Err(error);
    }
    let response =
        sent.map_err(|e| endpoint.error(format!("the load request failed: {}", root_cause(&e))))?;
    endpoint.check_load(response)
}

/// Where a Docker Engine listens: the value of `DOCKER_HOST`.
///
/// ```text
/// endpoint := "unix://" absolute-path | "tcp://" host [ ":" port ]
/// ```
///
/// TCP is plain HTTP; daemons that require TLS are not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
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
                "unsupported DOCKER_HOST {s:?}: use unix:///path/to/docker.sock or tcp://HOST:PORT"
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

impl Endpoint {
    /// `DOCKER_HOST`, or Docker's default socket.
    fn from_env() -> Result<Endpoint> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => host.parse(),
            Err(std::env::VarError::NotUnicode(host)) => Err(Error::Destination(format!(
                "unsupported DOCKER_HOST {host:?}: it is not UTF-8"
            ))),
            _ => Ok(Endpoint::Unix(DEFAULT_SOCKET.into())),
        }
    }

    fn client(&self) -> Result<Client> {
        // Loading a large image takes as long as it takes.
        let builder = Client::builder().timeout(None).no_proxy();
        let builder = match self {
            Endpoint::Unix(path) => builder.unix_socket(path.clone()),
            Endpoint::Tcp(_) => builder,
        };
        builder
            .build()
            .map_err(|e| self.error(format!("cannot set up an HTTP client: {}", root_cause(&e))))
    }

    fn url(&self, path: &str) -> String {
        match self {
            // The host is not used for a socket, but HTTP needs one.
            Endpoint::Unix(_) => format!("http://docker{path}"),
            Endpoint::Tcp(address) => format!("http://{address}{path}"),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Daemon {
            endpoint: self.to_string(),
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
                    "cannot connect ({}); is dockerd running? \
                     set DOCKER_HOST to its socket, e.g. DOCKER_HOST=unix://{DEFAULT_SOCKET}",
                    root_cause(&e)
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
            assert!(error.contains("unsupported DOCKER_HOST"), "{bad}: {error}");
        }
    }
}
