//! Registry credentials: from `--dest-creds`, or from the files `skopeo
//! login` and `docker login` write, in the order skopeo and Docker read
//! them.
//!
//! A password never leaves this module except in an `Authorization` header:
//! [`Secret`] has no `Display` and a redacted `Debug`, messages name where
//! credentials came from but not what they are, and credential helpers get
//! the server name on their standard input, never in their arguments.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Error, Result};

use super::reference::{DOCKER_HUB, canonical_registry};

/// The key Docker uses for Docker Hub in its config and credential helpers.
const DOCKER_HUB_LEGACY_KEY: &str = "https://index.docker.io/v1/";

/// The answer of a credential helper that has nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// A password or token. It has no `Display`, and its `Debug` is redacted,
/// so that it cannot end up in a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, to put in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The value of `--dest-creds`: `USER[:PASSWORD]`. Without a password, it is
/// asked for on the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsArg {
    /// The user name.
    pub username: String,
    /// The password, if given.
    pub password: Option<Secret>,
}

impl FromStr for CredentialsArg {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (username, password) = match s.split_once(':') {
            Some((user, password)) => (user, Some(Secret::new(password))),
            None => (s, None),
        };
        if username.is_empty() {
            return Err(Error::Invalid(
                "credentials must be USER:PASSWORD or USER, with a non-empty user name".into(),
            ));
        }
        Ok(CredentialsArg {
            username: username.to_owned(),
            password,
        })
    }
}

/// Credentials for one registry, and where they were found.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub username: String,
    pub password: Secret,
    /// Where they came from, for messages: `--dest-creds`, a file, a helper.
    pub origin: String,
}

/// The credential files to read, first match wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    /// `--dest-authfile`: must exist.
    pub authfile: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
    pub config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub docker_config: Option<PathBuf>,
}

/// Which program wrote a file, which decides how its keys are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// containers' `auth.json`: keys may name a namespace (`quay.io/org`).
    Containers,
    /// Docker's `config.json`: keys name a host, maybe as a URL.
    Docker,
}

impl Locations {
    /// The locations the environment gives, with `authfile` from the flag.
    pub fn from_env(authfile: Option<&Path>) -> Locations {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        Locations {
            authfile: authfile.map(Path::to_path_buf),
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            runtime_dir: var("XDG_RUNTIME_DIR"),
            config_home: var("XDG_CONFIG_HOME")
                .or_else(|| home.as_ref().map(|h| h.join(".config"))),
            docker_config: var("DOCKER_CONFIG").or_else(|| home.map(|h| h.join(".docker"))),
        }
    }

    /// The files in the order they are searched, with whether each must
    /// exist.
    fn files(&self) -> Vec<(PathBuf, FileKind, bool)> {
        let mut files = Vec::new();
        if let Some(file) = &self.authfile {
            files.push((file.clone(), FileKind::Containers, true));
        }
        if let Some(file) = &self.registry_auth_file {
            files.push((file.clone(), FileKind::Containers, false));
        }
        if let Some(dir) = &self.runtime_dir {
            files.push((
                dir.join("containers/auth.json"),
                FileKind::Containers,
                false,
            ));
        }
        if let Some(dir) = &self.config_home {
            files.push((
                dir.join("containers/auth.json"),
                FileKind::Containers,
                false,
            ));
        }
        if let Some(dir) = &self.docker_config {
            files.push((dir.join("config.json"), FileKind::Docker, false));
        }
        files
    }
}

/// Finds the credentials for `registry`/`repository`: `given` (from
/// `--dest-creds`) if any, else the first file of `locations` that has some.
pub(crate) fn find(
    given: Option<&CredentialsArg>,
    locations: &Locations,
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>> {
    if let Some(given) = given {
        let password = match &given.password {
            Some(password) => password.clone(),
            None => ask_password(&given.username, registry)?,
        };
        return Ok(Some(Credential {
            username: given.username.clone(),
            password,
            origin: "--dest-creds".into(),
        }));
    }
    for (path, kind, required) in locations.files() {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(e) => return Err(Error::io("reading the auth file", &path)(e)),
        };
        let file = parse_auth_file(&bytes).map_err(|source| Error::Json {
            what: "auth file (JSON with \"auths\")",
            path: path.clone(),
            source,
        })?;
        let origin = path.display().to_string();
        match lookup(&file, kind, registry, repository) {
            None => continue,
            Some(Found::Basic { username, password }) => {
                return Ok(Some(Credential {
                    username,
                    password,
                    origin,
                }));
            }
            Some(Found::Helper { helper, server }) => {
                if let Some(credential) = run_helper(&helper, &server, &origin)? {
                    return Ok(Some(credential));
                }
            }
            Some(Found::Unusable(why)) => {
                return Err(Error::Credentials(format!(
                    "the credentials for {registry} in {origin} {why}"
                )));
            }
        }
    }
    Ok(None)
}

fn ask_password(username: &str, registry: &str) -> Result<Secret> {
    rpassword::prompt_password(format!("Password for {username} at {registry}: "))
        .map(Secret::new)
        .map_err(|_| {
            Error::Credentials(
                "--dest-creds gives no password and there is no terminal to ask for it on: \
                 use --dest-creds USER:PASSWORD, or an auth file"
                    .into(),
            )
        })
}

/// An auth file: containers' `auth.json` or Docker's `config.json`.
#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn parse_auth_file(bytes: &[u8]) -> std::result::Result<AuthFile, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// What a file says about a registry.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A user name and password.
    Basic { username: String, password: Secret },
    /// Ask `docker-credential-<helper>` about `server`.
    Helper { helper: String, server: String },
    /// An entry this version cannot use; the text says why.
    Unusable(&'static str),
}

/// The entry of `file` for `registry`/`repository`: a credential helper for
/// the host first, then the most specific `auths` key, then the default
/// store, as Docker and containers' tools do.
fn lookup(file: &AuthFile, kind: FileKind, registry: &str, repository: &str) -> Option<Found> {
    let registry = canonical_registry(registry);
    let helper_server = || match registry {
        DOCKER_HUB => DOCKER_HUB_LEGACY_KEY.to_owned(),
        other => other.to_owned(),
    };
    if let Some(helper) = file
        .cred_helpers
        .iter()
        .find(|(key, _)| normalize_key(key, FileKind::Docker) == registry)
        .map(|(_, helper)| helper)
    {
        return Some(Found::Helper {
            helper: helper.clone(),
            server: helper_server(),
        });
    }
    let auths: BTreeMap<String, &AuthEntry> = file
        .auths
        .iter()
        .map(|(key, entry)| (normalize_key(key, kind), entry))
        .collect();
    let full = format!("{registry}/{repository}");
    // "reg/a/b", "reg/a", "reg": the most specific key wins.
    let candidates = std::iter::successors(Some(full.as_str()), |name| {
        name.rsplit_once('/').map(|(parent, _)| parent)
    });
    for candidate in candidates {
        let Some(entry) = auths.get(candidate) else {
            continue;
        };
        if let Some(found) = entry_credentials(entry) {
            return Some(found);
        }
    }
    file.creds_store.as_ref().map(|helper| Found::Helper {
        helper: helper.clone(),
        server: helper_server(),
    })
}

fn entry_credentials(entry: &AuthEntry) -> Option<Found> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        return Some(match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((username, password)) if !username.is_empty() => Found::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            },
            _ => Found::Unusable("are not base64 of USER:PASSWORD"),
        });
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Some(Found::Basic {
            username: username.clone(),
            password: Secret::new(password.clone()),
        });
    }
    if entry.identitytoken.is_some() {
        return Some(Found::Unusable(
            "are an identity token, which this version cannot use; log in with a user name and password or token",
        ));
    }
    None
}

/// `https://index.docker.io/v1/` → `docker.io`; `quay.io/org` stays in a
/// containers file and becomes `quay.io` in a Docker file.
fn normalize_key(key: &str, kind: FileKind) -> String {
    let (key, had_scheme) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    let key = key.trim_end_matches('/');
    let (host, path) = match key.split_once('/') {
        Some((host, path)) => (host, Some(path)),
        None => (key, None),
    };
    let host = canonical_registry(host);
    match path {
        Some(path) if kind == FileKind::Containers && !had_scheme => format!("{host}/{path}"),
        _ => host.to_owned(),
    }
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks `docker-credential-<helper> get` about `server` (on its standard
/// input). `None` when it has nothing for that server.
fn run_helper(helper: &str, server: &str, file: &str) -> Result<Option<Credential>> {
    let program = format!("docker-credential-{helper}");
    let failed = |why: String| {
        Error::Credentials(format!(
            "the credential helper {program} (named in {file}) {why}"
        ))
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot be run: {e}; install it or edit {file}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A helper that exits without reading is reported by its status below.
    let _ = stdin.write_all(server.as_bytes());
    drop(stdin);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let _ = child.stdout.take().expect("piped").read_to_end(&mut stdout);
    let _ = child.stderr.take().expect("piped").read_to_end(&mut stderr);
    let status = child
        .wait()
        .map_err(|e| failed(format!("did not finish: {e}")))?;
    if !status.success() {
        let said = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout });
        if said.to_lowercase().contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let first_line = said.lines().next().unwrap_or("").trim().to_owned();
        return Err(failed(format!("failed with {status}: {first_line}")));
    }
    let answer: HelperAnswer = serde_json::from_slice(&stdout).map_err(|_| {
        failed("printed something that is not {\"Username\", \"Secret\"} JSON".into())
    })?;
    if answer.username == "<token>" {
        return Err(failed(
            "gave an identity token, which this version cannot use".into(),
        ));
    }
    Ok(Some(Credential {
        username: answer.username,
        password: Secret::new(answer.secret),
        origin: program,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Option<Found> {
        Some(Found::Basic {
            username: user.into(),
            password: Secret::new(password),
        })
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn lookup_table() {
        let containers = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/org": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"auth": "{}"}},
                "docker.io": {{"auth": "{}"}},
                "bad.io": {{"auth": "bm9jb2xvbg=="}}
            }}}}"#,
            b64("any:1"),
            b64("org:2"),
            b64("local:3:with:colons"),
            b64("hub:4"),
        );
        let docker = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "https://r.example:444/v2/": {{"username": "u", "password": "p"}},
                "desktop.io": {{}}
            }},
            "credHelpers": {{"ecr.example": "ecr-login"}},
            "credsStore": "desktop"}}"#,
            b64("hubuser:5")
        );
        let containers = parse_auth_file(containers.as_bytes()).unwrap();
        let docker = parse_auth_file(docker.as_bytes()).unwrap();
        let helper = |helper: &str, server: &str| {
            Some(Found::Helper {
                helper: helper.into(),
                server: server.into(),
            })
        };
        let cases: Vec<(&AuthFile, FileKind, &str, &str, Option<Found>)> = vec![
            (
                &containers,
                FileKind::Containers,
                "quay.io",
                "org/app",
                basic("org", "2"),
            ),
            (
                &containers,
                FileKind::Containers,
                "quay.io",
                "other/app",
                basic("any", "1"),
            ),
            (
                &containers,
                FileKind::Containers,
                "127.0.0.1:5000",
                "lab/hello",
                basic("local", "3:with:colons"),
            ),
            (
                &containers,
                FileKind::Containers,
                "index.docker.io",
                "library/x",
                basic("hub", "4"),
            ),
            (&containers, FileKind::Containers, "ghcr.io", "x", None),
            (
                &containers,
                FileKind::Containers,
                "bad.io",
                "x",
                Some(Found::Unusable("are not base64 of USER:PASSWORD")),
            ),
            (
                &docker,
                FileKind::Docker,
                "docker.io",
                "library/x",
                basic("hubuser", "5"),
            ),
            (
                &docker,
                FileKind::Docker,
                "r.example:444",
                "x",
                basic("u", "p"),
            ),
            (
                &docker,
                FileKind::Docker,
                "ecr.example",
                "x",
                helper("ecr-login", "ecr.example"),
            ),
            (
                &docker,
                FileKind::Docker,
                "desktop.io",
                "x",
                helper("desktop", "desktop.io"),
            ),
        ];
        for (file, kind, registry, repository, expected) in cases {
            assert_eq!(
                lookup(file, kind, registry, repository),
                expected,
                "{registry}/{repository}"
            );
        }
    }

    #[test]
    fn keys_normalise() {
        for (key, kind, expected) in [
            ("https://index.docker.io/v1/", FileKind::Docker, "docker.io"),
            ("registry-1.docker.io", FileKind::Containers, "docker.io"),
            ("http://h:5000", FileKind::Containers, "h:5000"),
            ("quay.io/org/", FileKind::Containers, "quay.io/org"),
            ("quay.io/org", FileKind::Docker, "quay.io"),
            ("https://quay.io/v2/", FileKind::Containers, "quay.io"),
        ] {
            assert_eq!(normalize_key(key, kind), expected, "{key}");
        }
    }

    #[test]
    fn creds_argument_and_redaction() {
        let arg: CredentialsArg = "me:pa:ss".parse().unwrap();
        assert_eq!(arg.username, "me");
        assert_eq!(arg.password.as_ref().unwrap().expose(), "pa:ss");
        assert!(!format!("{arg:?}").contains("pa:ss"));
        assert_eq!("me".parse::<CredentialsArg>().unwrap().password, None);
        assert!(":x".parse::<CredentialsArg>().is_err());
    }

    #[test]
    fn files_in_order() {
        let locations = Locations {
            authfile: Some("/flag.json".into()),
            registry_auth_file: Some("/env.json".into()),
            runtime_dir: Some("/run/user/0".into()),
            config_home: Some("/home/u/.config".into()),
            docker_config: Some("/home/u/.docker".into()),
        };
        let files: Vec<_> = locations
            .files()
            .into_iter()
            .map(|(path, _, required)| (path.display().to_string(), required))
            .collect();
        assert_eq!(
            files,
            [
                ("/flag.json".to_owned(), true),
                ("/env.json".to_owned(), false),
                ("/run/user/0/containers/auth.json".to_owned(), false),
                ("/home/u/.config/containers/auth.json".to_owned(), false),
                ("/home/u/.docker/config.json".to_owned(), false),
            ]
        );
    }
}
