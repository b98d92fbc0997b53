//! One registry, one repository: the HTTP client, the base URL (https, or
//! http for insecure registries), authentication, and the mapping of
//! answers to [`Failure`]s with messages that say what to do.

use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::blocking::{Client, Request, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::error::Error;

use super::auth::{self, Access, Names, Reauth, Scheme};
use super::credentials::Credential;
use super::progress::Reporter;
use super::reference::RegistryReference;
use super::retry::{self, Failure, Policy};
use super::tls::{self, TlsFailure, Verification};

/// How much of an error answer is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The slowest rate a blob transfer tolerates, in bytes per second: a blob
/// may take `timeout + size / MIN_TRANSFER_RATE` in all.
const MIN_TRANSFER_RATE: u64 = 128 * 1024;

/// How a registry is reached.
#[derive(Debug)]
pub(crate) struct Settings {
    /// How its certificate is checked.
    pub verification: Verification,
    /// Whether plain HTTP may be used (after trying HTTPS).
    pub allow_http: bool,
    /// Credentials, if any were found.
    pub credential: Option<Credential>,
    /// How long a request may wait for an answer (without the time a blob
    /// takes to send).
    pub timeout: Duration,
    /// Whether the repository is pushed to or pulled from.
    pub access: Access,
    /// Token scopes beyond that access to the repository.
    pub extra_scopes: Vec<String>,
}

/// A connection to a repository of a registry.
pub(crate) struct Registry {
    client: Client,
    base: Url,
    names: Names,
    credential: Option<Credential>,
    scheme: Mutex<Scheme>,
    timeout: Duration,
    extra_scopes: Vec<String>,
}

/// A registry's JSON error answer.
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl Registry {
    /// Connects to the registry of `reference`: finds the scheme that
    /// works, learns how it authenticates, and checks the credentials.
    pub fn connect(
        reference: &RegistryReference,
        settings: Settings,
        policy: &Policy<'_>,
        reporter: &Reporter,
    ) -> Result<Registry, Error> {
        let client = tls::client(&settings.verification)?;
        let schemes: &[&str] = match settings.allow_http {
            true => &["https", "http"],
            false => &["https"],
        };
        let names = Names {
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            access: settings.access,
        };
        let mut registry = Registry {
            client,
            base: Url::parse("https://invalid/").expect("a valid URL"),
            names,
            credential: settings.credential,
            scheme: Mutex::new(Scheme::Anonymous),
            timeout: settings.timeout,
            extra_scopes: settings.extra_scopes,
        };
        for (index, scheme) in schemes.iter().enumerate() {
            registry.base =
                Url::parse(&format!("{scheme}://{}/", reference.host())).map_err(|e| {
                    Error::Destination(format!(
                        "invalid registry address {:?}: {e}",
                        reference.host()
                    ))
                })?;
            if index + 1 < schemes.len() {
                // Insecure registries: HTTPS if it speaks it, else HTTP.
                match registry.ping() {
                    Ok(()) => return Ok(registry),
                    Err(Failure::Transient { .. }) => continue,
                    Err(Failure::Fatal(error)) if matches!(*error, Error::RegistryTls { .. }) => {
                        continue;
                    }
                    Err(Failure::Fatal(error)) => return Err(*error),
                }
            }
            policy.run(
                || registry.ping(),
                |error, delay, attempt| {
                    reporter.retrying("connecting", error, delay, attempt, policy.retries)
                },
            )?;
        }
        Ok(registry)
    }

    /// `GET /v2/`: the registry answers, and the credentials (if it wants
    /// some) are accepted.
    fn ping(&self) -> Result<(), Failure> {
        let operation = "checking the registry (GET /v2/)";
        let response = self.send(operation, |client| client.get(self.url("v2/")))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Failure::fatal(Error::Registry {
                registry: self.names.registry.clone(),
                operation: operation.into(),
                status: response.status().to_string(),
                message: "this is not a container registry (no /v2/ API)".into(),
            }));
        }
        self.check(response, operation).map(drop)
    }

    /// `https://host/<path>`.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("paths of the registry API are valid")
    }

    /// `https://host/v2/<repository>/<path>`.
    pub fn repository_url(&self, path: &str) -> Url {
        self.url(&format!("v2/{}/{path}", self.names.repository))
    }

    /// How long a request carrying (or answering) `bytes` may take in all:
    /// the timeout, plus a second per [`MIN_TRANSFER_RATE`] bytes.
    pub fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs(bytes / MIN_TRANSFER_RATE)
    }

    /// Sends a request that can be sent again, authenticating as the
    /// registry asks (once more after a `401`).
    pub fn send(
        &self,
        operation: &str,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, Failure> {
        let mut retried = false;
        loop {
            let request = build(&self.client)
                .build()
                .map_err(|e| self.request_error(operation, &e))?;
            let response = self.execute(operation, request)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            self.reauthenticate(&response, retried)?;
            retried = true;
        }
    }

    /// Sends a request whose body cannot be sent again (a blob stream).
    /// After a `401` the authentication is renewed and a transient failure
    /// returned, so that the caller starts over.
    pub fn send_once(&self, operation: &str, request: Request) -> Result<Response, Failure> {
        let response = self.execute(operation, request)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.reauthenticate(&response, false)?;
        Err(Failure::transient(Error::Registry {
            registry: self.names.registry.clone(),
            operation: operation.into(),
            status: response.status().to_string(),
            message: "the registry asked to authenticate again".into(),
        }))
    }

    /// Adds the authorization (for the registry's own URLs only) and the
    /// timeout, and sends.
    fn execute(&self, operation: &str, mut request: Request) -> Result<Response, Failure> {
        if self.same_origin(request.url())
            && let Some(authorization) = self.authorization()?
        {
            request.headers_mut().insert(AUTHORIZATION, authorization);
        }
        let timeout = *request.timeout_mut().get_or_insert(self.timeout);
        self.client
            .execute(request)
            .map_err(|e| self.transport_failure(operation, &e, timeout))
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// The `Authorization` header for the next request, fetching a token if
    /// the registry uses tokens and the current one is missing or old.
    fn authorization(&self) -> Result<Option<HeaderValue>, Failure> {
        let mut scheme = self.scheme.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *scheme {
            Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(self.credential.as_ref().map(auth::basic_header)),
            Scheme::Bearer(bearer) => {
                if bearer.token.as_ref().is_none_or(auth::Token::expired) {
                    // Fetched under the lock: concurrent uploads wait for
                    // one token rather than each asking for their own.
                    bearer.token = Some(self.fetch_token(bearer)?);
                }
                Ok(bearer.token.as_ref().map(auth::bearer_header))
            }
        }
    }

    /// Asks the token server for a token covering the current scopes.
    fn fetch_token(&self, bearer: &auth::Bearer) -> Result<auth::Token, Failure> {
        let operation = "getting a token";
        let url = bearer.token_url(self.credential.as_ref());
        let realm_host = url.host_str().unwrap_or("the token server").to_owned();
        let mut request = self.client.get(url).timeout(self.timeout);
        if let Some(credential) = &self.credential {
            request = request.header(AUTHORIZATION, auth::basic_header(credential));
        }
        let response = request
            .send()
            .map_err(|e| self.transport_failure(operation, &e, self.timeout))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::fatal(
                self.names.unauthorized(self.credential.as_ref(), None),
            ));
        }
        let response = self.check(response, operation)?;
        let mut body = Vec::new();
        response
            .take(ERROR_BODY_LIMIT)
            .read_to_end(&mut body)
            .map_err(|e| {
                Failure::transient(self.error(operation, "an unreadable answer", e.to_string()))
            })?;
        auth::parse_token(&body).ok_or_else(|| {
            Failure::fatal(self.error(
                operation,
                &status.to_string(),
                format!("the token server {realm_host} answered without a token"),
            ))
        })
    }

    /// Handles a `401`: changes scheme or scopes and returns `Ok` to send
    /// again, or the error to report.
    fn reauthenticate(&self, response: &Response, retried: bool) -> Result<(), Failure> {
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        let mut scheme = self.scheme.lock().unwrap_or_else(PoisonError::into_inner);
        match auth::after_unauthorized(
            &mut scheme,
            challenge.as_ref(),
            self.credential.as_ref(),
            &self.names,
            retried,
        ) {
            Reauth::Retry => {
                if let Scheme::Bearer(bearer) = &mut *scheme {
                    bearer.scopes.extend(self.extra_scopes.iter().cloned());
                }
                Ok(())
            }
            Reauth::Fatal(error) => Err(Failure::fatal(error)),
        }
    }

    /// The failure for an answer that is not a success, with the message
    /// the registry gave; the answer itself when it is a success.
    pub fn check(&self, response: Response, operation: &str) -> Result<Response, Failure> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry::retry_after(response.headers());
        let (code, message) = error_message(response);
        let detail = match message.is_empty() {
            true => status.to_string(),
            false => format!("{status}: {message}"),
        };
        let error = match status {
            StatusCode::UNAUTHORIZED => self.names.unauthorized(self.credential.as_ref(), None),
            StatusCode::FORBIDDEN => Error::RegistryDenied {
                registry: self.names.registry.clone(),
                repository: self.names.repository.clone(),
                access: self.names.access,
                detail,
            },
            StatusCode::NOT_FOUND if code == "NAME_UNKNOWN" => Error::RegistryNameUnknown {
                registry: self.names.registry.clone(),
                repository: self.names.repository.clone(),
                detail,
            },
            _ if message.is_empty() => {
                self.error(operation, &status.to_string(), "no explanation".into())
            }
            _ => self.error(operation, &status.to_string(), message),
        };
        Err(match retry::is_transient(status) {
            true => Failure::Transient {
                error: Box::new(error),
                retry_after,
            },
            false => Failure::fatal(error),
        })
    }

    /// The `Location` of an answer, resolved against the request's URL (it
    /// may be relative or absolute).
    pub fn location(&self, response: &Response, operation: &str) -> Result<Url, Failure> {
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| response.url().join(location).ok())
            .ok_or_else(|| {
                Failure::fatal(self.error(
                    operation,
                    &response.status().to_string(),
                    "the answer has no valid Location header".into(),
                ))
            })
    }

    /// A generic registry error.
    pub fn error(&self, operation: &str, status: &str, message: String) -> Error {
        Error::Registry {
            registry: self.names.registry.clone(),
            operation: operation.into(),
            status: status.into(),
            message,
        }
    }

    fn request_error(&self, operation: &str, error: &reqwest::Error) -> Failure {
        Failure::fatal(self.error(operation, "an invalid request", tls::root_cause(error)))
    }

    /// The failure for a request that got no answer.
    pub fn transport_failure(
        &self,
        operation: &str,
        error: &reqwest::Error,
        timeout: Duration,
    ) -> Failure {
        let registry = self.names.registry.clone();
        match tls::tls_failure(error) {
            Some(TlsFailure::Certificate(cause)) => {
                return Failure::fatal(Error::RegistryCertificate { registry, cause });
            }
            Some(TlsFailure::Handshake(cause)) => {
                return Failure::fatal(Error::RegistryTls { registry, cause });
            }
            None => {}
        }
        let cause = tls::root_cause(error);
        if error.is_builder() {
            return self.request_error(operation, error);
        }
        Failure::transient(if error.is_timeout() {
            Error::RegistryTimeout {
                registry,
                operation: operation.into(),
                seconds: timeout.as_secs(),
            }
        } else if error.is_connect() {
            Error::RegistryUnreachable { registry, cause }
        } else {
            self.error(operation, "no answer", cause)
        })
    }

    /// A request to `url` with the registry's client.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.client.request(method, url)
    }
}

/// The error code and message of an error answer.
fn error_message(response: Response) -> (String, String) {
    let mut body = String::new();
    match response.take(ERROR_BODY_LIMIT).read_to_string(&mut body) {
        Ok(_) => parse_error_body(&body),
        Err(_) => (String::new(), String::new()),
    }
}

/// The code and message of an error body: the registry's JSON `errors`
/// (`CODE: message (detail)`, several joined by `; `), or the text itself
/// (empty for an answer without a body, such as one to `HEAD`).
fn parse_error_body(body: &str) -> (String, String) {
    if let Ok(answer) = serde_json::from_str::<ErrorAnswer>(body)
        && let Some(first) = answer.errors.first()
    {
        let detail = match &first.detail {
            Some(serde_json::Value::String(detail)) if !detail.is_empty() => {
                format!(" ({detail})")
            }
            _ => String::new(),
        };
        let message = answer
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        return (first.code.clone(), format!("{message}{detail}"));
    }
    (String::new(), body.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let cases = [
            (
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#,
                (
                    "NAME_UNKNOWN",
                    "NAME_UNKNOWN: repository name not known to registry",
                ),
            ),
            (
                r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"}]}"#,
                (
                    "MANIFEST_BLOB_UNKNOWN",
                    "MANIFEST_BLOB_UNKNOWN: blob unknown to registry (sha256:ab)",
                ),
            ),
            (
                r#"{"errors":[{"code":"DENIED","message":"a"},{"code":"UNAUTHORIZED","message":"b"}]}"#,
                ("DENIED", "DENIED: a; UNAUTHORIZED: b"),
            ),
            (
                "<html>502 Bad Gateway</html>\n",
                ("", "<html>502 Bad Gateway</html>"),
            ),
            ("", ("", "")),
            (r#"{"errors":[]}"#, ("", r#"{"errors":[]}"#)),
        ];
        for (body, (code, message)) in cases {
            assert_eq!(
                parse_error_body(body),
                (code.to_owned(), message.to_owned()),
                "{body}"
            );
        }
    }
}
