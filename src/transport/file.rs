//! Files that appear whole or not at all.
//!
//! A reader of a layout or an archive must never see a blob, an index or an
//! archive that is half written or holds unverified bytes, even while the
//! copy runs or after it failed: each file is written under a temporary name
//! in the same directory and renamed over its real name once complete.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

use super::blob::FailureSlot;

/// Size of the buffer between a blob and a file.
const WRITE_BUFFER_SIZE: usize = 1 << 20;

/// Mode a new file is created with, before the umask.
const FILE_MODE: u32 = 0o666;

/// Creates or replaces `path` with everything `source` reads. A failure of
/// `source` is taken from `failure`; the temporary file is removed.
pub(crate) fn write_atomically(
    path: &Path,
    mut source: impl Read,
    failure: &FailureSlot,
) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".nix2container-")
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(directory)
        .map_err(Error::io("creating a temporary file in", directory))?;
    let written = {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_SIZE, temporary.as_file_mut());
        io::copy(&mut source, &mut out).and_then(|_| out.flush())
    };
    written.map_err(|e| failure.error_or(Error::io("writing", temporary.path())(e)))?;
    temporary
        .persist(path)
        .map_err(|e| Error::io("renaming a temporary file to", path)(e.error))?;
    Ok(())
}

/// Writes everything `source` reads to standard output. A failure of
/// `source` is taken from `failure`.
pub(crate) fn write_stdout(mut source: impl Read, failure: &FailureSlot) -> Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_SIZE, io::stdout().lock());
    io::copy(&mut source, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| failure.error_or(Error::Output(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields some bytes, then fails the way a blob does.
    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0 {
                0 => Err(io::Error::other("boom")),
                _ => {
                    let n = buf.len().min(self.0);
                    buf[..n].fill(b'x');
                    self.0 -= n;
                    Ok(n)
                }
            }
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "old").unwrap();

        let failure = FailureSlot::default();
        let recorded = failure.record(Error::Invalid("the blob broke".into()));
        let error = write_atomically(&path, Failing(3 << 20), &failure).unwrap_err();
        assert_eq!(error.to_string(), recorded.to_string());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(listing(dir.path()), ["out"]);

        write_atomically(&path, &b"new"[..], &FailureSlot::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(listing(dir.path()), ["out"]);
    }
}
