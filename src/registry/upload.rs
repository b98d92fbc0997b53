//! Sending one blob: skip it if the repository has it, mount it from
//! another repository of the registry if one is named, else upload it.
//!
//! ```text
//! HEAD /v2/<name>/blobs/<digest>                     200: done
//! POST /v2/<name>/blobs/uploads/?mount=<d>&from=<r>  201: done, 202: a session
//! POST /v2/<name>/blobs/uploads/                     202: a session (Location)
//! PUT  <Location>&digest=<d>   the whole blob        201: done
//!      or, if the PUT is refused with 413/416 or the session announces
//!      OCI-Chunk-Min-Length:
//! PATCH <Location>  Content-Range: a-b   one chunk   202: next Location
//! PUT  <Location>&digest=<d>   empty                 201: done
//! ```
//!
//! The blob is regenerated while it is sent, from a [`CheckedReader`]; its
//! last bytes are handed to the HTTP client only once the producer has
//! verified the digest, so a blob that comes out wrong aborts its request
//! before the registry has all of it: the registry never stores it, and
//! the push fails naming the store path.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use oci_spec::image::Digest;
use reqwest::blocking::{Body, Response};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::error::Error;
use crate::image::Image;
use crate::transport::blob::{Blob, CheckedReader, FailureSlot};

use super::client::Registry;
use super::progress::{self, BlobBar, Reporter};
use super::retry::{Failure, Policy};

/// The header in which a registry names the digest of what it stored.
pub(crate) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Content type of blob uploads.
const OCTET_STREAM: &str = "application/octet-stream";

/// Chunk size of chunked uploads, unless the registry asks for more.
const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// Smallest chunk tried after chunks are refused as too large.
const MIN_CHUNK_SIZE: u64 = 1 << 20;

/// The header with which a registry announces its minimum chunk size.
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";

/// What happened to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The repository had it.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted(String),
    /// Sent, this many bytes, in this long.
    Uploaded { bytes: u64, elapsed: Duration },
}

/// How a blob is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In one `PUT`.
    Whole,
    /// In `PATCH`es of this size.
    Chunks(u64),
}

/// An upload session.
struct Session {
    location: Url,
    chunk_min: Option<u64>,
}

/// The repositories of the destination's registry that blobs may be
/// mounted from instead of uploaded.
#[derive(Debug, Default)]
pub(crate) struct MountSources {
    /// `--mount-from`: tried for every blob.
    pub every: Option<String>,
    /// The repository each base-image layer was pulled from, by digest,
    /// when it is on the destination's registry.
    pub by_digest: BTreeMap<String, String>,
}

impl MountSources {
    /// Where to try mounting the blob `digest` from.
    pub fn of(&self, digest: &Digest) -> Option<&str> {
        self.every
            .as_deref()
            .or_else(|| self.by_digest.get(digest.as_ref()).map(String::as_str))
    }

    /// Every repository blobs may be mounted from, each once.
    pub fn repositories(&self) -> BTreeSet<&str> {
        self.every
            .iter()
            .chain(self.by_digest.values())
            .map(String::as_str)
            .collect()
    }
}

/// Everything the blobs of one push share.
pub(crate) struct Uploader<'a> {
    pub registry: &'a Registry,
    pub image: &'a Image,
    pub mounts: &'a MountSources,
    pub reporter: &'a Reporter,
    pub policy: Policy<'a>,
}

impl Uploader<'_> {
    /// Makes sure the repository has `blob`, with retries; starts over
    /// from a new session after each failure.
    pub fn push(&self, blob: &Blob) -> Result<Outcome, Error> {
        let mut mode = Mode::Whole;
        let mut bar: Option<BlobBar> = None;
        let operation = format!("{} {}", blob.kind, blob.digest);
        let outcome = self.policy.run(
            || self.attempt(blob, &mut mode, &mut bar),
            |error, delay, attempt| {
                self.reporter
                    .retrying(&operation, error, delay, attempt, self.policy.retries)
            },
        );
        if let Some(bar) = &bar {
            bar.finish();
        }
        outcome
    }

    fn attempt(
        &self,
        blob: &Blob,
        mode: &mut Mode,
        bar: &mut Option<BlobBar>,
    ) -> Result<Outcome, Failure> {
        if self.exists(&blob.digest)? {
            return Ok(Outcome::Exists);
        }
        let session = match self.start(&blob.digest, self.mounts.of(&blob.digest))? {
            Started::Mounted(from) => return Ok(Outcome::Mounted(from)),
            Started::Session(session) => session,
        };
        if let (Mode::Whole, Some(min)) = (*mode, session.chunk_min) {
            *mode = Mode::Chunks(min.max(DEFAULT_CHUNK_SIZE));
        }
        let bar = bar.get_or_insert_with(|| {
            self.reporter
                .blob(blob.kind, blob.digest.as_ref(), blob.size)
        });
        bar.restart();
        let started = Instant::now();
        let mut session = session;
        loop {
            let sent = match *mode {
                Mode::Whole => self.put_whole(blob, session, bar)?,
                Mode::Chunks(size) => self.put_chunks(blob, session, size, bar)?,
            };
            let next = match (sent, *mode) {
                (Sent::Done, _) => break,
                (Sent::TooLarge(status), Mode::Whole) => {
                    self.reporter.line(&format!(
                        "{} {}: the registry refused it in one request ({status}); sending it in chunks",
                        blob.kind, blob.digest
                    ));
                    DEFAULT_CHUNK_SIZE
                }
                (Sent::TooLarge(status), Mode::Chunks(size)) if size / 2 >= MIN_CHUNK_SIZE => {
                    self.reporter.line(&format!(
                        "{} {}: the registry refused chunks of {} ({status}); trying smaller ones",
                        blob.kind,
                        blob.digest,
                        progress::size(size)
                    ));
                    size / 2
                }
                (Sent::TooLarge(status), Mode::Chunks(size)) => {
                    return Err(Failure::fatal(self.registry.error(
                        &format!("uploading {} {}", blob.kind, blob.digest),
                        &status.to_string(),
                        format!(
                            "the registry refuses even chunks of {}",
                            progress::size(size)
                        ),
                    )));
                }
            };
            *mode = Mode::Chunks(next);
            bar.restart();
            session = match self.start(&blob.digest, None)? {
                Started::Session(session) => session,
                Started::Mounted(from) => return Ok(Outcome::Mounted(from)),
            };
        }
        Ok(Outcome::Uploaded {
            bytes: blob.size,
            elapsed: started.elapsed(),
        })
    }

    /// `HEAD` the blob in the repository.
    fn exists(&self, digest: &Digest) -> Result<bool, Failure> {
        let operation = format!("checking for blob {digest}");
        let url = self.registry.repository_url(&format!("blobs/{digest}"));
        let response = self
            .registry
            .send(&operation, |client| client.head(url.clone()))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.registry.check(response, &operation).map(|_| true),
        }
    }

    /// Opens an upload session, or mounts the blob from `mount_from`.
    fn start(&self, digest: &Digest, mount_from: Option<&str>) -> Result<Started, Failure> {
        let operation = format!("starting the upload of {digest}");
        let mut url = self.registry.repository_url("blobs/uploads/");
        if let Some(from) = mount_from {
            url.query_pairs_mut()
                .append_pair("mount", digest.as_ref())
                .append_pair("from", from);
        }
        let response = self.registry.send(&operation, |client| {
            client.post(url.clone()).body(Vec::new())
        })?;
        let status = response.status();
        if let (StatusCode::CREATED, Some(from)) = (status, mount_from) {
            check_digest(self.registry, &operation, response.headers(), digest)?;
            return Ok(Started::Mounted(from.to_owned()));
        }
        let response = self.registry.check(response, &operation)?;
        if status != StatusCode::ACCEPTED {
            return Err(Failure::fatal(self.registry.error(
                &operation,
                &status.to_string(),
                "expected 202 Accepted and an upload location".into(),
            )));
        }
        Ok(Started::Session(Session {
            location: self.registry.location(&response, &operation)?,
            chunk_min: response
                .headers()
                .get(CHUNK_MIN_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        }))
    }

    /// Sends the whole blob in one `PUT`.
    fn put_whole(&self, blob: &Blob, session: Session, bar: &BlobBar) -> Result<Sent, Failure> {
        let operation = format!("uploading {} {}", blob.kind, blob.digest);
        let failure = FailureSlot::default();
        let body = VerifiedBody::new(blob.open(self.image, &failure)?, blob.size, bar.clone())
            .map_err(|e| Failure::fatal(failure.error_or(Error::Output(e))))?;
        let request = self
            .registry
            .request(Method::PUT, with_digest(session.location, &blob.digest))
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(Body::sized(body, blob.size))
            .timeout(self.upload_timeout(blob.size))
            .build()
            .map_err(|e| {
                Failure::fatal(
                    self.registry
                        .error(&operation, "an invalid request", e.to_string()),
                )
            })?;
        let result = self.registry.send_once(&operation, request);
        // A blob that came out wrong aborted the request: that is the
        // failure to report, whatever the registry made of it.
        if let Some(error) = failure.take() {
            return Err(Failure::fatal(error));
        }
        self.finished(result?, &operation, &blob.digest)
    }

    /// Sends the blob in `PATCH`es of `chunk_size`, then closes the
    /// session with an empty `PUT`.
    fn put_chunks(
        &self,
        blob: &Blob,
        session: Session,
        chunk_size: u64,
        bar: &BlobBar,
    ) -> Result<Sent, Failure> {
        let operation = format!("uploading {} {}", blob.kind, blob.digest);
        let failure = FailureSlot::default();
        let body = VerifiedBody::new(blob.open(self.image, &failure)?, blob.size, bar.clone())
            .map_err(|e| Failure::fatal(failure.error_or(Error::Output(e))))?;
        let shared = Arc::new(Mutex::new(body));
        let mut location = session.location;
        let mut offset = 0;
        while offset < blob.size {
            let length = chunk_size.min(blob.size - offset);
            let chunk = Chunk {
                body: shared.clone(),
                remaining: length,
            };
            let request = self
                .registry
                .request(Method::PATCH, location.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_RANGE, format!("{offset}-{}", offset + length - 1))
                .body(Body::sized(chunk, length))
                .timeout(self.upload_timeout(length))
                .build()
                .map_err(|e| {
                    Failure::fatal(self.registry.error(
                        &operation,
                        "an invalid request",
                        e.to_string(),
                    ))
                })?;
            let result = self.registry.send_once(&operation, request);
            if let Some(error) = failure.take() {
                return Err(Failure::fatal(error));
            }
            let response = result?;
            match response.status() {
                StatusCode::PAYLOAD_TOO_LARGE => return Ok(Sent::TooLarge(response.status())),
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    return Err(Failure::transient(self.registry.error(
                        &operation,
                        &response.status().to_string(),
                        "the registry lost track of the upload's chunks".into(),
                    )));
                }
                _ => {}
            }
            let response = self.registry.check(response, &operation)?;
            location = self.registry.location(&response, &operation)?;
            offset += length;
        }
        let url = with_digest(location, &blob.digest);
        let result = self.registry.send(&operation, |client| {
            client
                .put(url.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .body(Vec::new())
        });
        self.finished(result?, &operation, &blob.digest)
    }

    /// Checks the answer to the `PUT` that completes an upload.
    fn finished(
        &self,
        response: Response,
        operation: &str,
        digest: &Digest,
    ) -> Result<Sent, Failure> {
        let status = response.status();
        if matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::RANGE_NOT_SATISFIABLE
        ) {
            return Ok(Sent::TooLarge(status));
        }
        let response = self.registry.check(response, operation)?;
        check_digest(self.registry, operation, response.headers(), digest)?;
        Ok(Sent::Done)
    }

    /// How long a request carrying `bytes` may take.
    fn upload_timeout(&self, bytes: u64) -> Duration {
        self.registry.transfer_timeout(bytes)
    }
}

/// What `start` got.
enum Started {
    Session(Session),
    Mounted(String),
}

/// What an upload request got.
enum Sent {
    Done,
    /// Refused for its size: try chunks, or smaller chunks.
    TooLarge(StatusCode),
}

/// Fails if the registry says it stored something else than `digest`.
fn check_digest(
    registry: &Registry,
    operation: &str,
    headers: &HeaderMap,
    digest: &Digest,
) -> Result<(), Failure> {
    match headers
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok())
    {
        Some(stored) if stored != digest.to_string() => Err(Failure::fatal(registry.error(
            operation,
            "a success",
            format!("the registry says it stored {stored}, not {digest}"),
        ))),
        _ => Ok(()),
    }
}

/// `location` with `digest=<digest>` added to its query, which may hold
/// the session's state already.
fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_ref());
    location
}

/// A blob as a request body: the bytes of a [`CheckedReader`], counted on
/// the blob's bar, with the last ones held back until the producer has
/// verified the digest (an HTTP client stops reading at the announced
/// length, so the reader's own end-of-stream check would come too late).
struct VerifiedBody {
    inner: CheckedReader,
    remaining: u64,
    bar: BlobBar,
}

impl VerifiedBody {
    fn new(mut inner: CheckedReader, size: u64, bar: BlobBar) -> io::Result<VerifiedBody> {
        if size == 0 {
            // Nothing will be read: verify now.
            confirm_end(&mut inner)?;
        }
        Ok(VerifiedBody {
            inner,
            remaining: size,
            bar,
        })
    }
}

impl Read for VerifiedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        if n > 0 && self.remaining == 0 {
            // The checked reader ends cleanly only once the digest is
            // verified; until then these bytes stay here.
            confirm_end(&mut self.inner)?;
        }
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Reads the end of a checked reader: `Ok` once the producer has verified
/// the blob. (A checked reader never yields more than the recorded size.)
fn confirm_end(reader: &mut CheckedReader) -> io::Result<()> {
    match reader.read(&mut [0u8; 1])? {
        0 => Ok(()),
        _ => Err(io::Error::other("a blob reader went past its size")),
    }
}

/// One chunk of a shared [`VerifiedBody`].
struct Chunk {
    body: Arc<Mutex<VerifiedBody>>,
    remaining: u64,
}

impl Read for Chunk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let limit = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(&mut buf[..limit])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_joins_the_session_query() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let cases = [
            (
                "http://r:5000/v2/x/blobs/uploads/u?_state=ab%3D%3D",
                "http://r:5000/v2/x/blobs/uploads/u?_state=ab%3D%3D&digest=sha256%3Aaaaa",
            ),
            (
                "https://r/v2/x/blobs/uploads/u",
                "https://r/v2/x/blobs/uploads/u?digest=sha256%3Aaaaa",
            ),
        ];
        for (location, expected_prefix) in cases {
            let url = with_digest(Url::parse(location).unwrap(), &digest);
            assert!(url.as_str().starts_with(expected_prefix), "{url}");
        }
    }
}
