//! Image archives as a stream of bytes.
//!
//! An oci-archive, a docker-archive and the body of a Docker daemon's load
//! request are all a tar of a few small metadata files and some large blobs
//! whose sizes are known before their bytes exist. [`ArchiveStream`] is a
//! `Read` over such a tar: it writes each header up front and regenerates
//! each blob when the stream reaches it, so no blob is held in memory or
//! staged on disk, and the consumer (a file, standard output, an HTTP
//! request) pulls at its own pace.
//!
//! The archive is fixed by the image: entries in the order given, parents
//! before children, and every header field set here. Copying an image twice
//! gives the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Read};

use crate::error::Result;
use crate::image::Image;
use crate::tar::header::{self, EntryType, Header};

use super::Progress;
use super::blob::{Blob, FailureSlot};

/// Mode of every file in an archive.
const FILE_MODE: u32 = 0o644;

/// Mode of every directory in an archive.
const DIRECTORY_MODE: u32 = 0o755;

/// Owner and group name of every entry (uid and gid are 0).
const OWNER_NAME: &[u8] = b"root";

/// A file of an archive; directories are added for the parents.
pub(crate) enum Entry {
    /// Small metadata, in memory.
    File(String, Vec<u8>),
    /// A blob of the image, read when the stream reaches it.
    Blob(String, Blob),
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File(path, _) | Entry::Blob(path, _) => path,
        }
    }
}

/// What the stream writes next.
enum Item {
    Directory(String),
    Entry(Entry),
}

/// A tar of `entries`, produced as it is read.
///
/// A read fails when a blob cannot be produced or is not what the image
/// records; the typed error is in [`ArchiveStream::failure`].
pub(crate) struct ArchiveStream {
    image: Image,
    items: std::vec::IntoIter<Item>,
    current: Box<dyn Read + Send>,
    ended: bool,
    progress: Progress,
    failure: FailureSlot,
}

impl ArchiveStream {
    /// A stream over `entries` of `image`, in the order given.
    pub fn new(image: &Image, entries: Vec<Entry>, progress: Progress) -> ArchiveStream {
        ArchiveStream {
            image: image.clone(),
            items: with_parent_directories(entries).into_iter(),
            current: Box::new(io::empty()),
            ended: false,
            progress,
            failure: FailureSlot::default(),
        }
    }

    /// Where a failed read leaves its error.
    pub fn failure(&self) -> FailureSlot {
        self.failure.clone()
    }

    /// The bytes of the next item: header, contents, padding.
    fn open(&self, item: Item) -> Result<Box<dyn Read + Send>> {
        let (path, entry_type, size, contents): (_, _, _, Box<dyn Read + Send>) = match item {
            Item::Directory(path) => (path, EntryType::Directory, 0, Box::new(io::empty())),
            Item::Entry(Entry::File(path, bytes)) => (
                path,
                EntryType::Regular,
                bytes.len() as u64,
                Box::new(io::Cursor::new(bytes)),
            ),
            Item::Entry(Entry::Blob(path, blob)) => {
                self.progress.copying(&blob);
                let reader = blob.open(&self.image, &self.failure)?;
                (path, EntryType::Regular, blob.size, Box::new(reader))
            }
        };
        let padding = vec![0; header::padding(size)];
        Ok(Box::new(
            io::Cursor::new(header_block(&path, entry_type, size))
                .chain(contents)
                .chain(io::Cursor::new(padding)),
        ))
    }
}

impl Read for ArchiveStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.current = match self.items.next() {
                Some(item) => self.open(item).map_err(|e| self.failure.record(e))?,
                None if !self.ended => {
                    self.ended = true;
                    Box::new(io::Cursor::new(vec![0; 2 * header::BLOCK_SIZE]))
                }
                None => return Ok(0),
            };
        }
    }
}

/// `entries` with a directory entry before the first file inside each
/// directory, as `tar` itself would write them.
fn with_parent_directories(entries: Vec<Entry>) -> Vec<Item> {
    let mut seen = BTreeSet::new();
    let mut items = Vec::new();
    for entry in entries {
        let path = entry.path();
        for (i, _) in path.match_indices('/') {
            let directory = &path[..=i];
            if seen.insert(directory.to_owned()) {
                items.push(Item::Directory(directory.to_owned()));
            }
        }
        items.push(Item::Entry(entry));
    }
    items
}

fn header_block(path: &str, entry_type: EntryType, size: u64) -> Vec<u8> {
    let mut block = Vec::with_capacity(header::BLOCK_SIZE);
    header::encode(
        &Header {
            name: path.as_bytes(),
            entry_type,
            link_name: b"",
            mode: match entry_type {
                EntryType::Directory => DIRECTORY_MODE,
                _ => FILE_MODE,
            },
            uid: 0,
            gid: 0,
            uname: OWNER_NAME,
            gname: OWNER_NAME,
            size,
        },
        &mut block,
    );
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fixtures::{self, CREATED};

    #[test]
    fn tar_crate_reads_what_we_write() {
        let image = fixtures::image(CREATED, Vec::new());
        let entries = vec![
            Entry::File("a.json".into(), b"{}".to_vec()),
            Entry::File("d/e/f".into(), vec![1; 513]),
            Entry::Blob("d/e/config".into(), Blob::config(&image)),
        ];
        let mut bytes = Vec::new();
        ArchiveStream::new(&image, entries, Progress { quiet: true })
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes.len() % header::BLOCK_SIZE, 0);

        let mut archive = ::tar::Archive::new(&bytes[..]);
        let listing: Vec<(String, u32, u64, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).unwrap();
                let header = entry.header();
                assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
                assert_eq!(header.mtime().unwrap(), header::MTIME);
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.mode().unwrap(),
                    header.size().unwrap(),
                    contents,
                )
            })
            .collect();
        let expected = vec![
            ("a.json".to_owned(), 0o644, 2, b"{}".to_vec()),
            ("d/".to_owned(), 0o755, 0, Vec::new()),
            ("d/e/".to_owned(), 0o755, 0, Vec::new()),
            ("d/e/f".to_owned(), 0o644, 513, vec![1; 513]),
            (
                "d/e/config".to_owned(),
                0o644,
                image.config_blob().len() as u64,
                image.config_blob().to_vec(),
            ),
        ];
        assert_eq!(listing, expected);
    }
}
