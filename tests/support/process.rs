//! Daemons started by tests: tied to the test process, and probed over
//! their Docker-style API socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Makes `command`'s process get `SIGTERM` when the thread that spawns it
/// exits (`PR_SET_PDEATHSIG`).
pub fn terminate_with_spawning_thread(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns `command` so that it gets `SIGTERM` when this process exits.
pub fn spawn_tied_to_process(mut command: Command, what: &str) {
    terminate_with_spawning_thread(&mut command);
    let (spawned, result) = mpsc::channel();
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                spawned.send(Ok(())).unwrap();
                // This thread must outlive the daemon: its exit is the signal.
                let _ = child.wait();
            }
            Err(e) => spawned.send(Err(e)).unwrap(),
        })
        .unwrap();
    result
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
}

/// Whether `GET /_ping` on `socket` answers `200 OK`.
pub fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let mut answer = String::new();
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok_and(|_| answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
}

/// Whether [`ping`] on `socket` succeeds within `timeout`.
pub fn answers_within(socket: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !ping(socket) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
