//! A fault-injecting HTTP proxy on 127.0.0.1, in the test process, placed
//! in front of a test registry: each request either meets a fault (a
//! connection reset, an error status, a stall) or is forwarded as it is.
//! Faults are rules with a bounded count, so a test always ends.
//!
//! The proxy keeps the client's `Host`, so the registry's absolute
//! `Location`s point back at the proxy; it answers every request with
//! `Connection: close` (one request per connection keeps it simple).

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::{self, RequestHead, Server};

/// What a matching request gets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The connection is reset (RST) before any answer.
    Reset,
    /// This status, with these headers and body, after reading the body.
    Status(u16, Vec<(String, String)>, String),
    /// No answer for this long, then the connection is closed.
    Stall(Duration),
    /// Forwarded, with this header added to the registry's answer.
    AddHeader(String, String),
}

/// Which requests a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The method, or any.
    pub method: Option<&'static str>,
    /// A substring of the request target (path and query).
    pub target_contains: String,
    /// Only requests with a body of more than this many bytes.
    pub min_body: Option<u64>,
    /// The fault.
    pub fault: Fault,
    /// How many more requests get it.
    pub times: usize,
}

impl Rule {
    /// `fault`, `times` times, for `method` requests whose target contains
    /// `target_contains`.
    pub fn new(
        method: Option<&'static str>,
        target_contains: &str,
        fault: Fault,
        times: usize,
    ) -> Rule {
        Rule {
            method,
            target_contains: target_contains.to_owned(),
            min_body: None,
            fault,
            times,
        }
    }

    /// `fault` for every `method` request whose target contains
    /// `target_contains` (up to 100 times: more than any test sends).
    pub fn always(method: &'static str, target_contains: &str, fault: Fault) -> Rule {
        Rule::new(Some(method), target_contains, fault, 100)
    }

    fn matches(&self, head: &RequestHead) -> bool {
        self.times > 0
            && self.method.is_none_or(|m| m == head.method)
            && head.target.contains(&self.target_contains)
            && self.min_body.is_none_or(|min| head.content_length() > min)
    }
}

/// A registry error answer with the JSON body registries send.
pub fn status(code: u16, error_code: &str, headers: &[(&str, &str)]) -> Fault {
    Fault::Status(
        code,
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain([("Content-Type".to_owned(), "application/json".to_owned())])
            .collect(),
        format!(
            r#"{{"errors":[{{"code":"{error_code}","message":"injected by the test proxy","detail":null}}]}}"#
        ),
    )
}

/// What the proxy did with one request.
#[derive(Debug, Clone)]
pub struct Event {
    /// The method.
    pub method: String,
    /// The target.
    pub target: String,
    /// The fault applied, if any.
    pub fault: Option<String>,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    events: Mutex<Vec<Event>>,
}

/// A running proxy; it stops accepting when dropped.
pub struct FaultProxy {
    server: Server,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`host:port`) applying `rules` in order.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            rules: Mutex::new(rules),
            events: Mutex::new(Vec::new()),
        });
        let server_shared = shared.clone();
        let server = Server::start("fault proxy", move |stream| {
            let _ = serve(stream, &server_shared);
        });
        FaultProxy { server, shared }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// `docker://127.0.0.1:PORT/<name>`.
    pub fn destination(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.address())
    }

    /// Replaces the rules.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap() = rules;
    }

    /// What happened so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    /// The faults applied so far, as "METHOD fault".
    pub fn faults(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| e.fault.map(|f| format!("{} {f}", e.method)))
            .collect()
    }
}

fn serve(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    let Some(head) = http::read_head(&mut client)? else {
        return Ok(());
    };
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules.iter_mut().find(|r| r.matches(&head)).map(|rule| {
            rule.times -= 1;
            rule.fault.clone()
        })
    };
    shared.events.lock().unwrap().push(Event {
        method: head.method.clone(),
        target: head.target.clone(),
        fault: fault.as_ref().map(|f| match f {
            Fault::Reset => "reset".to_owned(),
            Fault::Status(code, ..) => code.to_string(),
            Fault::Stall(d) => format!("stall {d:?}"),
            Fault::AddHeader(name, _) => format!("header {name}"),
        }),
    });
    match fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0: close sends RST instead of FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on an open socket with a valid struct.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&client),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(client);
            Ok(())
        }
        Some(Fault::Status(code, headers, body)) => {
            head.drain_body(&mut client)?;
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let body = if head.method == "HEAD" {
                ""
            } else {
                body.as_str()
            };
            http::respond(&mut client, code, &headers, body.as_bytes())
        }
        Some(Fault::Stall(duration)) => {
            std::thread::sleep(duration);
            client.shutdown(Shutdown::Both)
        }
        Some(Fault::AddHeader(name, value)) => forward(
            client,
            &head,
            &shared.upstream,
            Some(format!("{name}: {value}")),
        ),
        None => forward(client, &head, &shared.upstream, None),
    }
}

/// Sends the request upstream with `Connection: close`, and the answer back
/// (with `extra_header` added).
fn forward(
    mut client: TcpStream,
    head: &RequestHead,
    upstream: &str,
    extra_header: Option<String>,
) -> io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let text = String::from_utf8_lossy(&head.raw);
    let mut rewritten = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    server.write_all(rewritten.as_bytes())?;
    server.write_all(&head.leftover)?;
    let rest = head
        .content_length()
        .saturating_sub(head.leftover.len() as u64);
    io::copy(&mut (&mut client).take(rest), &mut server)?;
    if let Some(header) = extra_header {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") && server.read(&mut byte)? == 1 {
            answer.push(byte[0]);
        }
        let end = answer.len().saturating_sub(2);
        answer.splice(end..end, format!("{header}\r\n").into_bytes());
        client.write_all(&answer)?;
    }
    io::copy(&mut server, &mut client)?;
    client.flush()
}
