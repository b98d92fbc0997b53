//! A Docker token server for tests, in the test process: `GET
//! /token?service=…&scope=…` with Basic credentials answers a JWT that
//! distribution's `auth: token` accepts.
//!
//! Distribution 2.8 checks a token's `iss` and `aud` (its configured
//! `issuer` and `service`), `exp` and `nbf`, and its RS256 signature by the
//! key of the first certificate in the header's `x5c`, which must chain to
//! its `rootcertbundle`. The signing key is a fresh RSA key with a
//! self-signed certificate (openssl), and that certificate is the bundle.
//!
//! The users are given to [`TokenIssuer::start`]; a wrong password gets
//! `401`, no credentials an empty grant. Scopes on repositories under the
//! denied prefix are granted nothing, so the registry answers `401` with
//! `error="insufficient_scope"`. [`OAUTH_USER`]'s answers name the token
//! `access_token` (OAuth2's name) instead of `token`.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use crate::http::{self, Server};
use crate::registry_server::Auth;
use crate::util::{run_ok, since_epoch};

/// The `service` tokens are for.
pub const SERVICE: &str = "n2c-test-registry";

/// The `iss` of tokens.
pub const ISSUER: &str = "n2c-test-issuer";

/// A user whose answers carry `access_token` instead of `token`.
pub const OAUTH_USER: &str = "oauthuser";

/// One token request, as the issuer saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The Basic user, if any.
    pub user: Option<String>,
    /// The `scope` parameters.
    pub scopes: Vec<String>,
    /// The status answered.
    pub status: u16,
}

struct Shared {
    key: RsaKeyPair,
    certificate_der: Vec<u8>,
    users: Vec<(String, String)>,
    denied_prefix: String,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A running token issuer; it stops accepting when dropped.
pub struct TokenIssuer {
    server: Server,
    certificate: PathBuf,
    shared: Arc<Shared>,
}

impl TokenIssuer {
    /// Starts an issuer in `dir` for `users` (name, password); repositories
    /// starting with `denied_prefix` get no access.
    pub fn start(dir: &Path, users: &[(&str, &str)], denied_prefix: &str) -> TokenIssuer {
        let key = dir.join("token-key.pem");
        let certificate = dir.join("token-cert.pem");
        run_ok(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=n2c-token-issuer"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&certificate),
        );
        let key_der = pem_body(&std::fs::read_to_string(&key).unwrap(), "PRIVATE KEY");
        let shared = Arc::new(Shared {
            key: RsaKeyPair::from_pkcs8(&key_der).expect("openssl writes PKCS#8 RSA keys"),
            certificate_der: pem_body(
                &std::fs::read_to_string(&certificate).unwrap(),
                "CERTIFICATE",
            ),
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            denied_prefix: denied_prefix.to_owned(),
            requests: Mutex::new(Vec::new()),
        });
        let server_shared = shared.clone();
        let server = Server::start("token issuer", move |stream| serve(stream, &server_shared));
        TokenIssuer {
            server,
            certificate,
            shared,
        }
    }

    /// The realm URL to configure in the registry.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port())
    }

    /// The signing certificate: the registry's `rootcertbundle`.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    /// The registry configuration that trusts this issuer.
    pub fn registry_auth(&self) -> Auth {
        Auth::Token {
            realm: self.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            certificate: self.certificate.clone(),
        }
    }

    /// The token requests so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

fn pem_body(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).expect("PEM block") + begin.len();
    let stop = pem[start..].find(&end).expect("PEM end") + start;
    let body: String = pem[start..stop].split_whitespace().collect();
    STANDARD.decode(body).unwrap()
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Ok(Some(head)) = http::read_head(&mut stream) else {
        return;
    };
    let pairs = http::query_pairs(&head.target);
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let service = pairs
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());
    let user = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        });
    let known = user
        .as_ref()
        .is_some_and(|(u, p)| shared.users.iter().any(|(name, pw)| name == u && pw == p));
    let (status, body) = if user.is_some() && !known {
        (
            401,
            br#"{"details":"wrong user name or password"}"#.to_vec(),
        )
    } else if service != Some(SERVICE) {
        (400, br#"{"details":"unknown service"}"#.to_vec())
    } else {
        let subject = user.as_ref().filter(|_| known).map(|(u, _)| u.as_str());
        let token = sign(shared, subject, &scopes);
        let field = match subject {
            Some(OAUTH_USER) => "access_token",
            _ => "token",
        };
        (
            200,
            serde_json::to_vec(&serde_json::json!({field: token, "expires_in": 300})).unwrap(),
        )
    };
    shared.requests.lock().unwrap().push(TokenRequest {
        user: user.map(|(u, _)| u),
        scopes,
        status,
    });
    let _ = http::respond(
        &mut stream,
        status,
        &[("Content-Type", "application/json")],
        &body,
    );
}

/// A JWT granting `scopes` to `subject` (anonymous users get nothing).
fn sign(shared: &Shared, subject: Option<&str>, scopes: &[String]) -> String {
    let now = since_epoch().as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter(|_| subject.is_some())
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "repository" && !name.starts_with(&shared.denied_prefix)).then(|| {
                serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [STANDARD.encode(&shared.certificate_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let mut signature = vec![0u8; shared.key.public().modulus_len()];
    shared
        .key
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
