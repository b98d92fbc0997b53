//! Just enough HTTP/1.1 for the test servers (token issuer, fault proxy):
//! read a request head, write a response that closes the connection.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A server on 127.0.0.1, on a port the kernel picks: a thread accepts
/// connections and hands each to a thread of its own. It stops accepting
/// when dropped.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Starts serving each connection with `handle`; `name` is for panics.
    pub fn start(
        name: &'static str,
        handle: impl Fn(TcpStream) + Clone + Send + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handle = handle.clone();
                        std::thread::spawn(move || {
                            stream.set_nonblocking(false).unwrap();
                            handle(stream);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{name}: {e}"),
                }
            }
        });
        Server { port, stop }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A request head, and the body bytes read with it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The header lines, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw head, up to and including the blank line.
    pub raw: Vec<u8>,
    /// Body bytes that came with the head.
    pub leftover: Vec<u8>,
}

impl RequestHead {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body length the request announces.
    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Reads the rest of the body and drops it.
    pub fn drain_body(&self, stream: &mut TcpStream) -> io::Result<()> {
        let rest = self
            .content_length()
            .saturating_sub(self.leftover.len() as u64);
        io::copy(&mut stream.take(rest), &mut io::sink()).map(drop)
    }
}

/// Reads a request head; `None` when the peer closed the connection first.
pub fn read_head(stream: &mut TcpStream) -> io::Result<Option<RequestHead>> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&buffer[..n]);
        if !raw[0].is_ascii_uppercase() {
            // A TLS handshake, say: not HTTP, so no answer.
            return Ok(None);
        }
    };
    let leftover = raw.split_off(end);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Some(RequestHead {
        method,
        target,
        headers,
        raw,
        leftover,
    }))
}

/// Writes a response with `body` and `Connection: close`.
pub fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Splits `a=1&b=2` into decoded pairs.
pub fn query_pairs(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}
