//! A private Docker daemon for tests: real `dockerd`, no system service.
//!
//! Include it with `#[path = "../support/dockerd.rs"] mod dockerd;` and call
//! [`dockerd()`]. The first call in a test process starts the daemon, later
//! calls share it; it is stopped when the process exits.
//!
//! * State lives under `CARGO_TARGET_TMPDIR/dockerd-<test binary>` and is
//!   wiped at start (after stopping a daemon a previous run left behind).
//!   The sockets live under a short path, since a Unix socket path must fit
//!   in 108 bytes and containerd adds its own names below the exec root.
//! * Stopping relies on `PR_SET_PDEATHSIG`: the kernel sends `SIGTERM` to
//!   the daemon when the *thread* that spawned it exits, so it is spawned by
//!   a thread that only waits for it and lives as long as the process.
//! * Every test binary gets its own daemon; tests within one binary share it,
//!   so they must use distinct image names.
//!
//! Needs `dockerd`, `containerd` and `runc` (Debian: `docker.io containerd
//! runc`), a `docker` client, and root.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{answers_within, spawn_tied_to_process};
use crate::util::stdout_ok;

/// How long the daemon may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a daemon left by a previous run may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest base directory used for the sockets; longer ones move to /tmp.
const MAX_SOCKET_BASE_LEN: usize = 60;

/// A running daemon.
#[derive(Debug)]
pub struct Dockerd {
    socket: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Dockerd {
    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `DOCKER_HOST` for the daemon: `unix:///…/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The `docker` client, talking to this daemon only.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.state.join("client-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        command
    }

    /// Runs `docker args…`; panics with its output unless it succeeds, and
    /// returns its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        stdout_ok(self.docker().args(args))
    }

    /// The ID of the image `name`, or `None` if the daemon has no such image.
    pub fn image_id(&self, name: &str) -> Option<String> {
        let output = self
            .docker()
            .args(["image", "inspect", "--format", "{{.Id}}", name])
            .output()
            .expect("docker runs");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The end of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The daemon of this test process, started on first use.
pub fn dockerd() -> &'static Dockerd {
    static DAEMON: OnceLock<Dockerd> = OnceLock::new();
    DAEMON.get_or_init(start)
}

fn start() -> Dockerd {
    let state = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dockerd-{}", env!("CARGO_CRATE_NAME")));
    let short = socket_base(&state);
    let pidfile = state.join("docker.pid");
    stop_previous(&pidfile);
    for dir in [&state, &short] {
        unmount_below(dir);
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot clean {}: {e}", dir.display()),
        }
        std::fs::create_dir_all(dir).unwrap();
    }
    let daemon = Dockerd {
        socket: short.join("docker.sock"),
        log: state.join("dockerd.log"),
        state,
    };
    let log = std::fs::File::create(&daemon.log).unwrap();
    let mut command = Command::new("dockerd");
    command
        .arg("--data-root")
        .arg(daemon.state.join("data"))
        .arg("--exec-root")
        .arg(short.join("exec"))
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--host")
        .arg(daemon.host())
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    spawn_tied_to_process(command, "dockerd (apt-get install docker.io)");
    wait_until_ready(&daemon);
    daemon
}

/// Where the sockets go: beside the state if that path is short enough.
fn socket_base(state: &Path) -> PathBuf {
    if state.as_os_str().len() <= MAX_SOCKET_BASE_LEN {
        return state.join("run");
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in state.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    PathBuf::from(format!("/tmp/n2c-dockerd-{hash:016x}"))
}

fn wait_until_ready(daemon: &Dockerd) {
    assert!(
        answers_within(&daemon.socket, START_TIMEOUT),
        "dockerd did not answer on {} within {START_TIMEOUT:?}; its log ends with:\n{}",
        daemon.socket.display(),
        daemon.log_tail()
    );
}

/// Stops the daemon a previous run of this test binary left running, if any.
fn stop_previous(pidfile: &Path) {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
    else {
        return;
    };
    // Only a dockerd that uses this pidfile: the pid may have been reused.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&*pidfile.to_string_lossy());
    if !ours {
        return;
    }
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: plain syscalls on a pid checked above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Unmounts what a daemon that died left mounted under `dir` (containers'
/// shm and the like), deepest first, so the directory can be removed.
fn unmount_below(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in mounts {
        let c_path = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// `\ooo`.
fn unescape_mount_point(point: &str) -> String {
    let bytes = point.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
