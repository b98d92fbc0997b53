//! Registry authentication: `WWW-Authenticate` challenges, Basic and Bearer
//! credentials, and what a `401 Unauthorized` means.
//!
//! A registry answers `GET /v2/` (or any request) without credentials with
//! `401` and a challenge. `Basic realm=…` wants the user name and password
//! on every request. `Bearer realm=…,service=…,scope=…` wants a token from
//! the realm (Docker's token protocol): `GET realm?service=…&scope=…` with
//! the user name and password as Basic credentials, or anonymously, answers
//! `{"token": …}` (or `access_token`). Scopes here are
//! `repository:<name>:pull,push` for a push (`repository:<name>:pull` for
//! a pull), plus `repository:<from>:pull` for cross-repository mounts; a
//! `401` whose challenge names another scope adds it and fetches a new
//! token.
//!
//! The functions here do no I/O; [`super::client`] sends the requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use url::Url;

use crate::error::Error;

use super::credentials::{Credential, Secret};

/// How long a token lives when the token server does not say: the
/// protocol's default.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is replaced this long before it expires, so that it does not
/// expire between being read and being checked.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The scheme, lowercase: `basic`, `bearer`.
    pub scheme: String,
    /// The parameters, with lowercase names and unquoted values.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses the first challenge of a `WWW-Authenticate` value:
///
/// ```text
/// challenge := scheme [ 1*SP param *( "," param ) ]
/// param     := name "=" ( token | quoted-string )
/// ```
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest.trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() || scheme.contains(['=', ',', '"']) {
        return None;
    }
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(name, value);
        rest = remainder.trim_start();
        // Another challenge may follow; only the first is used.
        match rest.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None => break,
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// What a connection to a repository is for: it decides the token scope
/// asked for and what error messages say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading manifests and blobs.
    Pull,
    /// Reading and writing them.
    Push,
}

impl Access {
    /// The scope that lets a token do this to `repository`.
    pub(crate) fn scope(self, repository: &str) -> String {
        match self {
            Access::Pull => pull_scope(repository),
            Access::Push => format!("repository:{repository}:pull,push"),
        }
    }

    /// How to give credentials, for messages.
    pub(crate) fn credentials_hint(self, registry: &str) -> String {
        match self {
            Access::Push => format!(
                "pass --dest-creds USER:PASSWORD or --dest-authfile FILE, or log in with \
                 `skopeo login {registry}` or `docker login {registry}`"
            ),
            Access::Pull => format!(
                "pass --creds USER:PASSWORD or --authfile FILE, or log in with `skopeo login \
                 {registry}`; in a Nix build (pullImage, pullImageFromManifest) put them in \
                 /etc/skopeo/auth.json, made visible to the build with extra-sandbox-paths"
            ),
        }
    }
}

impl std::fmt::Display for Access {
    /// `push to` or `pull from`, as in "credentials to push to lab/x".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Pull => "pull from",
            Access::Push => "push to",
        })
    }
}

/// The scope that lets a token read `repository`, to mount its blobs.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// How requests to the registry are authenticated, learnt from its
/// challenges.
#[derive(Debug)]
pub(crate) enum Scheme {
    /// No credentials needed (so far).
    Anonymous,
    /// The user name and password on every request.
    Basic,
    /// Tokens from a token server.
    Bearer(Bearer),
}

/// The state of Docker's token protocol.
#[derive(Debug)]
pub(crate) struct Bearer {
    /// Where tokens come from.
    pub realm: Url,
    /// The `service` parameter of token requests.
    pub service: Option<String>,
    /// The scopes the next token must cover.
    pub scopes: BTreeSet<String>,
    /// The current token, if any.
    pub token: Option<Token>,
}

/// A token, and when it stops being used.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    value: Secret,
    expires: Instant,
}

impl Token {
    /// Whether the token is too old to send.
    pub fn expired(&self) -> bool {
        Instant::now() + TOKEN_EXPIRY_MARGIN >= self.expires
    }
}

impl Bearer {
    /// The URL of a token request for the current scopes.
    pub fn token_url(&self, credential: Option<&Credential>) -> Url {
        let mut url = self.realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &self.service {
                query.append_pair("service", service);
            }
            for scope in &self.scopes {
                query.append_pair("scope", scope);
            }
            if let Some(credential) = credential {
                query.append_pair("account", &credential.username);
            }
        }
        url
    }
}

/// The answer of a token server.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Parses a token server's answer: `token` or, failing that,
/// `access_token` (OAuth2's name), and `expires_in` seconds.
pub(crate) fn parse_token(body: &[u8]) -> Option<Token> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))?;
    let lifetime = answer
        .expires_in
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Some(Token {
        value: Secret::new(value),
        expires: Instant::now() + lifetime,
    })
}

/// `Authorization: Basic …`, marked sensitive so that it is never logged.
pub(crate) fn basic_header(credential: &Credential) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        credential.username,
        credential.password.expose()
    ));
    sensitive(&format!("Basic {encoded}"))
}

/// `Authorization: Bearer …`.
pub(crate) fn bearer_header(token: &Token) -> HeaderValue {
    sensitive(&format!("Bearer {}", token.value.expose()))
}

fn sensitive(value: &str) -> HeaderValue {
    // Tokens and base64 are visible ASCII; anything else is not sent.
    let mut header = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

/// What to do after a `401 Unauthorized`.
#[derive(Debug)]
pub(crate) enum Reauth {
    /// The scheme or scopes changed, or the token was dropped: send the
    /// request again.
    Retry,
    /// Sending again would not help.
    Fatal(Error),
}

/// What the registry and repository are, and what for: the scope of
/// tokens, and messages.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub registry: String,
    pub repository: String,
    pub access: Access,
}

impl Names {
    /// The error for credentials that are missing, wrong, or not allowed.
    pub fn unauthorized(
        &self,
        credential: Option<&Credential>,
        challenge: Option<&Challenge>,
    ) -> Error {
        let Some(credential) = credential else {
            return Error::RegistryAuthRequired {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                access: self.access,
            };
        };
        match challenge.and_then(|c| c.param("error")) {
            Some("insufficient_scope") => Error::RegistryDenied {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                access: self.access,
                detail: "401 Unauthorized, insufficient scope".into(),
            },
            _ => Error::RegistryBadCredentials {
                registry: self.registry.clone(),
                origin: credential.origin.clone(),
            },
        }
    }
}

/// Updates `scheme` after a `401` whose challenge is `challenge`, for a
/// request that was sent with the current token. `retried` says the
/// request was already sent again after a `401`: then nothing helps.
pub(crate) fn after_unauthorized(
    scheme: &mut Scheme,
    challenge: Option<&Challenge>,
    credential: Option<&Credential>,
    names: &Names,
    retried: bool,
) -> Reauth {
    let fatal = || Reauth::Fatal(names.unauthorized(credential, challenge));
    let Some(challenge) = challenge else {
        return fatal();
    };
    match (challenge.scheme.as_str(), &mut *scheme) {
        ("bearer", Scheme::Bearer(bearer)) => {
            let new_scope = challenge
                .param("scope")
                .is_some_and(|scope| !bearer.scopes.contains(scope));
            if let Some(scope) = challenge.param("scope") {
                bearer.scopes.insert(scope.to_owned());
            }
            if new_scope || !retried {
                bearer.token = None;
                return Reauth::Retry;
            }
            fatal()
        }
        ("bearer", _) => match challenge.param("realm").and_then(|r| Url::parse(r).ok()) {
            Some(realm) => {
                let mut scopes = BTreeSet::from([names.access.scope(&names.repository)]);
                scopes.extend(challenge.param("scope").map(str::to_owned));
                *scheme = Scheme::Bearer(Bearer {
                    realm,
                    service: challenge.param("service").map(str::to_owned),
                    scopes,
                    token: None,
                });
                Reauth::Retry
            }
            None => Reauth::Fatal(Error::Registry {
                registry: names.registry.clone(),
                operation: "authenticating".into(),
                status: "401 Unauthorized".into(),
                message: "its Bearer challenge has no valid realm URL".into(),
            }),
        },
        ("basic", Scheme::Anonymous | Scheme::Bearer(_)) if credential.is_some() => {
            *scheme = Scheme::Basic;
            Reauth::Retry
        }
        ("basic", _) => fatal(),
        (other, _) => Reauth::Fatal(Error::Registry {
            registry: names.registry.clone(),
            operation: "authenticating".into(),
            status: "401 Unauthorized".into(),
            message: format!(
                "it asks for {other:?} authentication, which this version does not support"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn challenges() {
        let cases: &[(&str, Option<Challenge>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
                Some(challenge(
                    "bearer",
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("service", "registry.docker.io"),
                        ("scope", "repository:samalba/my-app:pull,push"),
                    ],
                )),
            ),
            (
                r#"Bearer realm="http://127.0.0.1:1/t", error="insufficient_scope", scope="repository:a:push""#,
                Some(challenge(
                    "bearer",
                    &[
                        ("realm", "http://127.0.0.1:1/t"),
                        ("error", "insufficient_scope"),
                        ("scope", "repository:a:push"),
                    ],
                )),
            ),
            (
                r#"Basic realm="lab \"realm\"""#,
                Some(challenge("basic", &[("realm", "lab \"realm\"")])),
            ),
            (
                "Basic realm=plain",
                Some(challenge("basic", &[("realm", "plain")])),
            ),
            ("Basic", Some(challenge("basic", &[]))),
            (r#"Bearer realm="unterminated"#, None),
            ("", None),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_challenge(header), expected, "{header}");
        }
    }

    #[test]
    fn tokens() {
        let token = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(token.value.expose(), "abc");
        assert!(!token.expired());
        let token = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(token.value.expose(), "xyz");
        let token = parse_token(br#"{"token":"","access_token":"xyz"}"#).unwrap();
        assert_eq!(token.value.expose(), "xyz");
        assert!(parse_token(br#"{"expires_in":3}"#).is_none());
        assert!(parse_token(b"<html>").is_none());
        assert!(
            parse_token(br#"{"token":"t","expires_in":5}"#)
                .unwrap()
                .expired()
        );
    }

    #[test]
    fn unauthorized_transitions() {
        let names = Names {
            registry: "r.io".into(),
            repository: "lab/x".into(),
            access: Access::Push,
        };
        let credential = Credential {
            username: "u".into(),
            password: Secret::new("p"),
            origin: "--dest-creds".into(),
        };
        let bearer = challenge(
            "bearer",
            &[("realm", "https://auth.r.io/token"), ("service", "r.io")],
        );

        // Anonymous → Bearer, then a new scope, then a token that is
        // refused for the same scope twice.
        let mut scheme = Scheme::Anonymous;
        assert!(matches!(
            after_unauthorized(&mut scheme, Some(&bearer), Some(&credential), &names, false),
            Reauth::Retry
        ));
        let Scheme::Bearer(state) = &scheme else {
            panic!("expected bearer, got {scheme:?}")
        };
        assert_eq!(
            state.scopes,
            BTreeSet::from(["repository:lab/x:pull,push".into()])
        );
        assert_eq!(
            state.token_url(Some(&credential)).as_str(),
            "https://auth.r.io/token?service=r.io&scope=repository%3Alab%2Fx%3Apull%2Cpush&account=u"
        );
        let mut insufficient = bearer.clone();
        insufficient
            .params
            .insert("scope".into(), "repository:lab/base:pull".into());
        insufficient
            .params
            .insert("error".into(), "insufficient_scope".into());
        assert!(matches!(
            after_unauthorized(
                &mut scheme,
                Some(&insufficient),
                Some(&credential),
                &names,
                true
            ),
            Reauth::Retry
        ));
        match after_unauthorized(
            &mut scheme,
            Some(&insufficient),
            Some(&credential),
            &names,
            true,
        ) {
            Reauth::Fatal(Error::RegistryDenied { .. }) => {}
            other => panic!("expected denied, got {other:?}"),
        }
        match after_unauthorized(&mut scheme, Some(&insufficient), None, &names, true) {
            Reauth::Fatal(Error::RegistryAuthRequired { .. }) => {}
            other => panic!("expected auth required, got {other:?}"),
        }

        // A pull asks for the pull scope only, and says so when refused.
        let pull = Names {
            access: Access::Pull,
            ..names.clone()
        };
        let mut scheme = Scheme::Anonymous;
        assert!(matches!(
            after_unauthorized(&mut scheme, Some(&bearer), None, &pull, false),
            Reauth::Retry
        ));
        let Scheme::Bearer(state) = &scheme else {
            panic!("expected bearer, got {scheme:?}")
        };
        assert_eq!(
            state.scopes,
            BTreeSet::from(["repository:lab/x:pull".into()])
        );
        match after_unauthorized(&mut scheme, Some(&bearer), None, &pull, true) {
            Reauth::Fatal(error @ Error::RegistryAuthRequired { .. }) => assert!(
                error
                    .to_string()
                    .starts_with("r.io requires credentials to pull from lab/x: pass --creds"),
                "{error}"
            ),
            other => panic!("expected auth required, got {other:?}"),
        }

        // Basic: credentials are tried once.
        let basic = challenge("basic", &[("realm", "x")]);
        let mut scheme = Scheme::Anonymous;
        assert!(matches!(
            after_unauthorized(&mut scheme, Some(&basic), Some(&credential), &names, false),
            Reauth::Retry
        ));
        match after_unauthorized(&mut scheme, Some(&basic), Some(&credential), &names, true) {
            Reauth::Fatal(Error::RegistryBadCredentials { origin, .. }) => {
                assert_eq!(origin, "--dest-creds")
            }
            other => panic!("expected bad credentials, got {other:?}"),
        }
        let mut scheme = Scheme::Anonymous;
        match after_unauthorized(&mut scheme, Some(&basic), None, &names, false) {
            Reauth::Fatal(Error::RegistryAuthRequired { .. }) => {}
            other => panic!("expected auth required, got {other:?}"),
        }
    }
}
