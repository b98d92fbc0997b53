//! Retries: which failures are worth another attempt, and how long to wait
//! before it.
//!
//! Connection failures, timeouts, `5xx` (but `501` and `505`), `408` and
//! `429` are retried with exponential backoff and full jitter, or after the
//! `Retry-After` the registry asked for; other `4xx` are not: asking again
//! would get the same answer.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::Error;

/// The first backoff delay; it doubles with each attempt.
const BASE_DELAY: Duration = Duration::from_millis(500);

/// The longest backoff delay.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The longest `Retry-After` honoured; longer ones are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another attempt, after `retry_after` if the registry said.
    Transient {
        error: Box<Error>,
        retry_after: Option<Duration>,
    },
    /// Another attempt would fail the same way.
    Fatal(Box<Error>),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::fatal(error)
    }
}

impl Failure {
    /// A failure that another attempt would not fix.
    pub fn fatal(error: Error) -> Failure {
        Failure::Fatal(Box::new(error))
    }

    /// A transient failure without a `Retry-After`.
    pub fn transient(error: Error) -> Failure {
        Failure::Transient {
            error: Box::new(error),
            retry_after: None,
        }
    }
}

/// Whether a response status is worth retrying.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
    ) || (status.is_server_error()
        && !matches!(
            status,
            StatusCode::NOT_IMPLEMENTED | StatusCode::HTTP_VERSION_NOT_SUPPORTED
        ))
}

/// The `Retry-After` of a response, in seconds (the HTTP-date form is not
/// used by registries and is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// How many times to retry, and the hook that reports each retry.
pub(crate) struct Policy<'a> {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Set when another part of the push failed: stop retrying.
    pub abort: &'a AtomicBool,
}

impl Policy<'_> {
    /// Runs `attempt` until it succeeds, fails fatally, or the retries are
    /// spent. `report(error, delay, next_attempt)` is called before each
    /// wait.
    pub fn run<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, Failure>,
        mut report: impl FnMut(&Error, Duration, u32),
    ) -> Result<T, Error> {
        let mut failures = 0;
        loop {
            let (error, retry_after) = match attempt() {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(*error),
                Err(Failure::Transient { error, retry_after }) => (*error, retry_after),
            };
            failures += 1;
            if failures > self.retries || self.abort.load(Ordering::Relaxed) {
                return Err(match failures {
                    1 => error,
                    attempts => Error::RetriesExhausted {
                        attempts,
                        last: Box::new(error),
                    },
                });
            }
            let delay = retry_after.unwrap_or_else(|| backoff(failures - 1, random_unit()));
            report(&error, delay, failures + 1);
            std::thread::sleep(delay);
        }
    }
}

/// The delay before retry number `retry` (from 0): a uniformly random
/// fraction `unit` (in [0, 1)) of `BASE_DELAY · 2^retry`, capped, but at
/// least half of it ("equal jitter": spreads clients without waiting 0).
fn backoff(retry: u32, unit: f64) -> Duration {
    let ceiling = BASE_DELAY
        .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
        .min(MAX_DELAY);
    ceiling.mul_f64(0.5 + unit / 2.0)
}

/// A random number in [0, 1), from the standard library's per-process
/// random hash keys: plenty for jitter.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn transient_statuses() {
        for (status, expected) in [
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (501, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (413, false),
        ] {
            assert_eq!(
                is_transient(StatusCode::from_u16(status).unwrap()),
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_values() {
        for (value, expected) in [
            ("3", Some(3)),
            (" 0 ", Some(0)),
            ("3600", Some(60)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("-1", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            assert_eq!(
                retry_after(&headers),
                expected.map(Duration::from_secs),
                "{value}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(250));
        assert_eq!(
            backoff(0, 0.999_999),
            Duration::from_millis(500) - Duration::from_nanos(250)
        );
        assert_eq!(backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(15));
        for _ in 0..100 {
            let unit = random_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn policy_counts_attempts() {
        let abort = AtomicBool::new(false);
        let policy = Policy {
            retries: 2,
            abort: &abort,
        };
        let mut calls = 0;
        let mut reports = Vec::new();
        let result: Result<(), Error> = policy.run(
            || {
                calls += 1;
                Err(Failure::Transient {
                    error: Box::new(Error::Invalid("flaky".into())),
                    retry_after: Some(Duration::ZERO),
                })
            },
            |_, _, next| reports.push(next),
        );
        assert_eq!(calls, 3);
        assert_eq!(reports, [2, 3]);
        let error = result.unwrap_err().to_string();
        assert_eq!(error, "flaky (tried 3 times; --retries sets how often)");

        let mut calls = 0;
        let result = policy.run(
            || {
                calls += 1;
                match calls {
                    1 => Err(Failure::transient(Error::Invalid("once".into()))),
                    _ => Ok(calls),
                }
            },
            |_, _, _| {},
        );
        assert_eq!(result.unwrap(), 2);

        let mut calls = 0;
        let result: Result<(), Error> = policy.run(
            || {
                calls += 1;
                Err(Failure::fatal(Error::Invalid("no".into())))
            },
            |_, _, _| {},
        );
        assert_eq!((calls, result.unwrap_err().to_string()), (1, "no".into()));
    }
}
