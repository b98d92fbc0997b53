//! The file tree of one layer, keyed by destination name, and its tar stream.
//!
//! The tar is upstream's: every root walked, each file placed under its
//! destination name (after the rewrite) with missing parents created, then
//! emitted depth first with the children of each directory sorted by the
//! bytes of their names, so the order of the roots and of the file system
//! does not matter. How it is computed differs (see [`Tree`]): entries are
//! flat records sorted by key, plain roots are streamed one after the other
//! instead of merged, and reader threads read files ahead of the thread
//! that hashes the tar. `docs/performance.md` has the measurements.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use rayon::prelude::*;
use regex::bytes::Regex;

use super::PathSpec;
use super::header::{self, DEFAULT_OWNER_NAME, EntryType, Header};
use crate::error::{ConflictReason, Error, Result};

/// Mode of directories that no root provides (`/`, `/nix`, `/nix/store`,
/// parents created by a rewrite). Changing it changes digests.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Mode of every symlink, whatever the file system says (upstream #23:
/// macOS reports 0755). Changing it changes digests.
const SYMLINK_MODE: u32 = 0o777;

/// Suffix Nix appends to file names on case-insensitive file systems. Names
/// carrying it are written without it, so a layer is the same whichever kind
/// of file system holds the store (upstream #37, #127).
const CASE_HACK_SUFFIX: &[u8] = b"~nix~case~hack~";

/// Bytes of tar a reader gathers from consecutive small entries before it
/// hands them to the writer as one piece. Does not affect the output.
const PIECE_BYTES: u64 = 256 * 1024;

/// Files larger than this are read in pieces of this size, so that several
/// readers work on one large file and memory stays bounded. Small enough
/// that the pieces in flight stay in the CPU's caches: with 1 MiB pieces
/// SHA-256 of a large file ran 40 % slower (measured on 2 cores, page-cached
/// data). Does not affect the output.
const CHUNK_BYTES: u64 = 256 * 1024;

/// Pieces in flight per reader thread: how far readers run ahead of the
/// writer. Does not affect the output.
const PIECES_PER_READER: usize = 3;

/// Fewest and most reader threads per layer; more do not help a single
/// hashing thread. Does not affect the output.
const MIN_READERS: usize = 2;
const MAX_READERS: usize = 8;

/// `Entry::source_len` of an entry whose source path is its key, with `/`
/// for every 0 byte (the common case: no rewrite).
const SOURCE_IS_KEY: u32 = u32::MAX;

/// Roots walked ahead of the tar being written, when roots are streamed.
/// Does not affect the output.
const ROOTS_AHEAD: usize = 4;

/// The destination tree of a layer, ready to be written as a tar.
///
/// Entries are kept in flat lists in tar order: names as *keys*, the
/// cleaned destination path with every `/` replaced by a 0 byte (and `/`
/// itself as the empty key), so that byte order of keys is the order of a
/// depth-first walk with sorted children, and sorting is the whole
/// ordering. Names and source paths live in arenas; an entry takes 40
/// bytes.
///
/// In the common case, roots that are plain paths none of which contains
/// another (store paths under `/nix/store`), the tar is the roots' walks
/// one after the other in key order, with the missing parents between
/// them: such a tree is not built at all but walked while it is written,
/// root by root, so memory does not grow with the layer. Otherwise (a
/// rewrite, nested roots) every root is walked first into one merged list.
#[derive(Debug)]
pub struct Tree {
    specs: Vec<CompiledSpec>,
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    /// Every entry, merged, with the missing parents.
    Merged(Arc<Segment>),
    /// Spec indices in key order, each walked when the tar gets there.
    Streamed(Vec<usize>),
}

/// A run of entries in tar order, and the arenas holding their names.
#[derive(Debug, Default)]
struct Segment {
    arenas: Vec<Vec<u8>>,
    entries: Vec<Entry>,
}

/// One tar entry: a file a root provides, or a missing parent directory.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Which arena holds the key and the source path.
    arena: u32,
    key_offset: u32,
    key_len: u32,
    source_offset: u32,
    /// [`SOURCE_IS_KEY`] when the source path is the key.
    source_len: u32,
    /// Permission plus setuid/setgid/sticky bits as found on disk.
    mode: u32,
    /// Index of the spec that provided it, for its perms.
    spec: u32,
    /// Content size of a regular file; 0 otherwise.
    size: u64,
    /// `None`: a directory no root provides.
    entry_type: Option<EntryType>,
}

/// A file that a root provides, for merging and conflict messages.
#[derive(Debug)]
struct FileEntry {
    source: PathBuf,
    entry_type: EntryType,
    /// Permission plus setuid/setgid/sticky bits as found on disk.
    mode: u32,
    size: u64,
    /// Index of the spec that provided it, for its perms.
    spec: usize,
}

/// The result of walking one root.
#[derive(Default)]
struct Walk {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// A name carries Nix's case-hack suffix.
    case_hack: bool,
}

#[derive(Debug)]
struct CompiledSpec {
    spec: PathSpec,
    rewrite: Option<Regex>,
    perms: Vec<Regex>,
}

impl CompiledSpec {
    fn new(spec: &PathSpec) -> Result<Self> {
        let compile = |regex: &str| {
            Regex::new(regex).map_err(|source| Error::Regex {
                regex: regex.to_owned(),
                path: spec.path.clone(),
                source: Box::new(source),
            })
        };
        Ok(CompiledSpec {
            rewrite: spec
                .rewrite
                .as_ref()
                .map(|r| compile(&r.regex))
                .transpose()?,
            perms: spec
                .perms
                .iter()
                .map(|p| compile(&p.regex))
                .collect::<Result<_>>()?,
            spec: spec.clone(),
        })
    }

    fn destination<'a>(&self, source: &'a [u8]) -> Cow<'a, [u8]> {
        match (&self.rewrite, &self.spec.rewrite) {
            (Some(regex), Some(rewrite)) => regex.replace_all(source, rewrite.repl.as_bytes()),
            _ => Cow::Borrowed(source),
        }
    }
}

/// Appends `bytes` to `arena`, returning its offset and length.
fn push_bytes(arena: &mut Vec<u8>, bytes: impl AsRef<[u8]>) -> Result<(u32, u32)> {
    let bytes = bytes.as_ref();
    let offset = arena.len();
    let (Ok(start), Ok(len), true) = (
        u32::try_from(offset),
        u32::try_from(bytes.len()),
        offset + bytes.len() <= u32::MAX as usize,
    ) else {
        return Err(Error::Invalid(
            "a layer root has more than 4 GiB of file names; split it".into(),
        ));
    };
    arena.extend_from_slice(bytes);
    Ok((start, len))
}

/// Appends the key of the cleaned path `path` to `arena`.
fn push_key(arena: &mut Vec<u8>, path: &[u8]) -> Result<(u32, u32)> {
    let (offset, len) = push_bytes(arena, if path == b"/" { &[][..] } else { path })?;
    for byte in &mut arena[offset as usize..] {
        if *byte == b'/' {
            *byte = 0;
        }
    }
    Ok((offset, len))
}

/// The path a key stands for, into `out`.
fn key_to_path(key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if key.is_empty() {
        out.push(b'/');
        return;
    }
    out.extend(key.iter().map(|&b| if b == 0 { b'/' } else { b }));
}

/// Whether `path` is already what [`clean`] would make of it.
fn is_clean(path: &[u8]) -> bool {
    if path.is_empty() || (path.len() > 1 && path.ends_with(b"/")) {
        return false;
    }
    let rooted = path[0] == b'/';
    let body = if rooted { &path[1..] } else { path };
    if path == b"/" {
        return true;
    }
    body.split(|&b| b == b'/')
        .all(|part| !matches!(part, b"" | b"." | b".."))
}

impl Segment {
    fn key(&self, entry: &Entry) -> &[u8] {
        let start = entry.key_offset as usize;
        &self.arenas[entry.arena as usize][start..start + entry.key_len as usize]
    }

    /// The source path of a provided entry, into `out`.
    fn source<'a>(&'a self, entry: &Entry, out: &'a mut Vec<u8>) -> &'a [u8] {
        if entry.source_len == SOURCE_IS_KEY {
            key_to_path(self.key(entry), out);
            return out;
        }
        let start = entry.source_offset as usize;
        &self.arenas[entry.arena as usize][start..start + entry.source_len as usize]
    }

    fn file_entry(&self, entry: &Entry) -> FileEntry {
        let mut scratch = Vec::new();
        FileEntry {
            source: PathBuf::from(OsStr::from_bytes(self.source(entry, &mut scratch))),
            entry_type: entry.entry_type.expect("a provided entry"),
            mode: entry.mode,
            size: entry.size,
            spec: entry.spec as usize,
        }
    }

    /// The segment of one walked root; a root whose names carry the
    /// case-hack suffix goes through the upstream-style tree.
    fn of_root(specs: &[CompiledSpec], index: usize) -> Result<Segment> {
        let walk = walk_root(&specs[index], index)?;
        if walk.case_hack {
            let mut segment = legacy::segment(specs, &[index])?;
            // Its parents come from the stream, as for any root.
            segment.entries.retain(|e| e.entry_type.is_some());
            return Ok(segment);
        }
        Ok(Segment {
            arenas: vec![walk.arena],
            entries: walk.entries,
        })
    }
}

/// Whether roots can be streamed: plain clean paths, none of them holding
/// the case-hack suffix, none equal to or inside another. Returns them in
/// key order.
fn streamable(specs: &[CompiledSpec]) -> Option<Vec<usize>> {
    let mut keys = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let path = spec.spec.path.as_os_str().as_bytes();
        if spec.rewrite.is_some() || !is_clean(path) || path == b"/" || has_case_hack(path) {
            return None;
        }
        let mut key = path.to_vec();
        key.iter_mut().filter(|b| **b == b'/').for_each(|b| *b = 0);
        keys.push((key, index));
    }
    keys.sort();
    // A root inside another sorts right after it or after its descendants,
    // so comparing neighbours finds every nesting.
    let nested = keys.windows(2).any(|pair| {
        let (a, b) = (&pair[0].0, &pair[1].0);
        b.starts_with(a) && (b.len() == a.len() || b[a.len()] == 0)
    });
    (!nested).then(|| keys.into_iter().map(|(_, index)| index).collect())
}

/// Whether `path` may hold Nix's case-hack suffix.
fn has_case_hack(path: &[u8]) -> bool {
    path.contains(&b'~')
        && path
            .windows(CASE_HACK_SUFFIX.len())
            .any(|w| w == CASE_HACK_SUFFIX)
}

impl Tree {
    /// Plans the tree of `specs`: walks every root and merges them, or,
    /// when roots can be streamed, only checks that they exist.
    ///
    /// Fails on a missing root, an invalid regex, a file type a layer cannot
    /// hold, or two roots that put different files at one destination
    /// (streamed roots report walk errors when the tar gets to them).
    pub fn build(specs: &[PathSpec]) -> Result<Tree> {
        Tree::build_with(specs, true)
    }

    /// [`Tree::build`], streaming roots only when `stream` allows it.
    fn build_with(specs: &[PathSpec], stream: bool) -> Result<Tree> {
        let specs: Vec<CompiledSpec> =
            specs.iter().map(CompiledSpec::new).collect::<Result<_>>()?;
        if let Some(order) = streamable(&specs).filter(|_| stream) {
            for spec in &specs {
                let path = &spec.spec.path;
                std::fs::symlink_metadata(path).map_err(|e| Error::Io {
                    action: "walking",
                    path: path.clone(),
                    source: e,
                })?;
            }
            return Ok(Tree {
                specs,
                layout: Layout::Streamed(order),
            });
        }
        // Roots are walked in parallel; each gives a list in walk order.
        let walks: Vec<Result<Walk>> = specs
            .par_iter()
            .enumerate()
            .map(|(index, spec)| walk_root(spec, index))
            .collect();
        let mut segment = Segment::default();
        for (index, walk) in walks.into_iter().enumerate() {
            let mut walk = walk?;
            if walk.case_hack {
                let all: Vec<usize> = (0..specs.len()).collect();
                let segment = legacy::segment(&specs, &all)?;
                return Ok(Tree {
                    specs,
                    layout: Layout::Merged(Arc::new(segment)),
                });
            }
            let arena = u32::try_from(index)
                .map_err(|_| Error::Invalid("more than 2^32 roots in one layer".into()))?;
            walk.entries.iter_mut().for_each(|e| e.arena = arena);
            segment.entries.extend_from_slice(&walk.entries);
            segment.arenas.push(walk.arena);
        }
        // Stable: entries at one destination stay in the order of the roots,
        // which decides how they merge.
        let mut sorted = std::mem::take(&mut segment.entries);
        sorted.sort_by(|a, b| segment.key(a).cmp(segment.key(b)));
        segment.entries = merge_entries(&specs, &segment, sorted)?;
        Ok(Tree {
            specs,
            layout: Layout::Merged(Arc::new(segment)),
        })
    }

    /// Writes the tar stream, ending with two zero blocks and no further
    /// padding, then flushes `out` (which never changes compressed bytes).
    ///
    /// Reader threads build the tar in pieces (headers of consecutive
    /// entries and their contents, or one chunk of a large file) into a
    /// ring of reused buffers; this thread writes the pieces to `out` in
    /// order, so the hashing or compressing behind `out` never waits for a
    /// file to be opened or read. Streamed roots are walked on one more
    /// thread, a few roots ahead.
    pub fn write<W: Write>(&self, mut out: W) -> Result<()> {
        // One core for this thread, the others for readers, and at least
        // two readers: small files cost a reader more per byte (open,
        // close, statx) than SHA-256 costs this thread, so an extra reader
        // shares this thread's core (measured on 2 cores: 50k files 0.70–
        // 0.76× → 0.59–0.73× the tar | openssl pipeline). Chunks of large
        // files cost a reader less than the hash, and an extra reader
        // reading them only slows this thread (1.1× → 0.92× openssl dgst),
        // so extra readers wait while large files are read.
        let primary = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .saturating_sub(1)
            .clamp(1, MAX_READERS);
        let readers = primary.max(MIN_READERS);
        // Chunks of large files run only as far ahead as the readers that
        // read them need: further, the writer finds them out of its caches.
        let ring = Ring::new(readers * PIECES_PER_READER, primary * PIECES_PER_READER);
        let (roots, walked) = sync_channel(ROOTS_AHEAD);
        let planning = Planning {
            planner: Mutex::new(match &self.layout {
                Layout::Merged(segment) => Planner::new(Some(Arc::clone(segment)), None),
                Layout::Streamed(_) => Planner::new(None, Some(walked)),
            }),
            small_next: Condvar::new(),
        };
        std::thread::scope(|scope| {
            if let Layout::Streamed(order) = &self.layout {
                let ring = &ring;
                scope.spawn(move || {
                    batch_priority();
                    for &index in order {
                        let segment = Segment::of_root(&self.specs, index);
                        if ring.is_aborted() || roots.send(segment).is_err() {
                            return;
                        }
                    }
                });
            } else {
                drop(roots);
            }
            for reader in 0..readers {
                let extra = reader >= primary;
                let (planning, ring) = (&planning, &ring);
                scope.spawn(move || self.read_pieces(planning, ring, extra));
            }
            let result = self.write_pieces(&ring, &mut out);
            if result.is_err() {
                ring.abort();
                // Unblocks a walker waiting to hand over a root.
                planning.lock().walked = None;
                planning.small_next.notify_all();
            }
            result
        })?;
        out.write_all(&[0; 2 * header::BLOCK_SIZE])
            .map_err(Error::Output)?;
        out.flush().map_err(Error::Output)
    }

    /// The writer's side: takes each piece in order and writes it.
    fn write_pieces<W: Write>(&self, ring: &Ring, out: &mut W) -> Result<()> {
        for sequence in 0.. {
            let Some((mut piece, filled)) = ring.take(sequence)? else {
                return Ok(());
            };
            let written = out.write_all(&piece[..filled]).map_err(Error::Output);
            ring.give_back(sequence, std::mem::take(&mut piece));
            written?;
        }
        Ok(())
    }

    /// A reader's side: plans the next piece, fills a buffer with it, and
    /// puts it in the ring, until nothing is left or the writer gave up.
    /// An `extra` reader leaves chunks of large files to the others.
    fn read_pieces(&self, planning: &Planning, ring: &Ring, extra: bool) {
        batch_priority();
        let mut scratch = Scratch::default();
        loop {
            let (sequence, piece) = {
                let mut planner = planning.lock();
                while extra && !planner.done && !ring.is_aborted() && planner.chunk_next() {
                    planner = planning
                        .small_next
                        .wait(planner)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if planner.done || ring.is_aborted() {
                    return;
                }
                let piece = planner.next();
                let sequence = planner.sequence;
                planner.sequence += 1;
                if piece.is_none() || matches!(piece, Some(Err(_))) {
                    planner.done = true;
                    ring.set_total(planner.sequence - usize::from(piece.is_none()));
                    planning.small_next.notify_all();
                } else if !extra
                    && matches!(&piece, Some(Ok(piece)) if piece.is_chunk())
                    && !planner.chunk_next()
                {
                    planning.small_next.notify_all();
                }
                (sequence, piece)
            };
            let piece = match piece {
                None => return,
                Some(Err(error)) => {
                    if let Some(buffer) = ring.slot_for(sequence, false) {
                        ring.put(sequence, buffer, 0, Some(error));
                    }
                    return;
                }
                Some(Ok(piece)) => piece,
            };
            let Some(mut buffer) = ring.slot_for(sequence, piece.is_chunk()) else {
                return;
            };
            let mut filled = 0;
            let result = self.fill(&piece, &mut buffer, &mut filled, &mut scratch);
            let failed = result.is_err();
            ring.put(sequence, buffer, filled, result.err());
            if failed {
                return;
            }
        }
    }

    /// Writes the tar bytes of `piece` to `buffer[..filled]`.
    fn fill(
        &self,
        piece: &Piece,
        buffer: &mut Vec<u8>,
        filled: &mut usize,
        scratch: &mut Scratch,
    ) -> Result<()> {
        *filled = 0;
        let segment = &*piece.segment;
        for entry in &segment.entries[piece.first..piece.end] {
            if piece.offset == 0 {
                self.header(segment, entry, scratch)?;
                append(buffer, filled, &scratch.header);
            }
            if entry.entry_type != Some(EntryType::Regular) {
                continue;
            }
            let end = entry.size.min(piece.offset.saturating_add(piece.len));
            let path = Path::new(OsStr::from_bytes(segment.source(entry, &mut scratch.path)));
            read_range(path, piece.offset, end, entry.size, buffer, filled)?;
            if end == entry.size {
                append(
                    buffer,
                    filled,
                    &[0; header::BLOCK_SIZE][..header::padding(entry.size)],
                );
            }
        }
        Ok(())
    }

    /// Encodes the header of `entry` into `scratch.header`.
    fn header(&self, segment: &Segment, entry: &Entry, scratch: &mut Scratch) -> Result<()> {
        key_to_path(segment.key(entry), &mut scratch.name);
        scratch.header.clear();
        let Some(entry_type) = entry.entry_type else {
            header::encode(
                &Header {
                    name: &scratch.name,
                    entry_type: EntryType::Directory,
                    link_name: b"",
                    mode: IMPLICIT_DIR_MODE,
                    uid: 0,
                    gid: 0,
                    uname: DEFAULT_OWNER_NAME,
                    gname: DEFAULT_OWNER_NAME,
                    size: 0,
                },
                &mut scratch.header,
            );
            return Ok(());
        };
        let source = segment.source(entry, &mut scratch.path);
        scratch.link.clear();
        if entry_type == EntryType::Symlink {
            let path = Path::new(OsStr::from_bytes(source));
            let target =
                std::fs::read_link(path).map_err(|e| Error::io("reading symlink", path)(e))?;
            scratch
                .link
                .extend_from_slice(target.as_os_str().as_bytes());
        }
        let attributes = attributes(
            &self.specs[entry.spec as usize],
            source,
            entry_type,
            entry.mode,
        );
        header::encode(
            &Header {
                name: &scratch.name,
                entry_type,
                link_name: &scratch.link,
                mode: attributes.mode,
                uid: attributes.uid,
                gid: attributes.gid,
                uname: attributes.uname,
                gname: attributes.gname,
                size: entry.size,
            },
            &mut scratch.header,
        );
        Ok(())
    }
}

/// A contiguous part of the tar: the entries `first..end` of `segment`
/// whole, or, for a single large file, its content bytes
/// `offset..offset + len` (with its header when `offset` is 0 and its
/// padding when the range ends the file).
struct Piece {
    segment: Arc<Segment>,
    first: usize,
    end: usize,
    offset: u64,
    len: u64,
}

impl Piece {
    /// Whether this is a range of one large file (not whole entries).
    fn is_chunk(&self) -> bool {
        self.len != u64::MAX
    }
}

/// The planner shared by the readers.
struct Planning {
    planner: Mutex<Planner>,
    /// Signalled when the next piece is no longer a chunk of a large file,
    /// or planning ended: extra readers wait for it.
    small_next: Condvar,
}

impl Planning {
    fn lock(&self) -> std::sync::MutexGuard<'_, Planner> {
        self.planner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Cuts the entries into pieces, in order, taking walked roots from the
/// walker when entries run out.
struct Planner {
    segment: Option<Arc<Segment>>,
    walked: Option<Receiver<Result<Segment>>>,
    /// The next entry of `segment`, and how much of it (a large file) is
    /// planned already.
    entry: usize,
    offset: u64,
    /// The key of the last entry of the previous segment.
    last_key: Option<Vec<u8>>,
    /// Sequence number of the next piece.
    sequence: usize,
    done: bool,
}

impl Planner {
    fn new(segment: Option<Arc<Segment>>, walked: Option<Receiver<Result<Segment>>>) -> Planner {
        Planner {
            segment,
            walked,
            entry: 0,
            offset: 0,
            last_key: None,
            sequence: 0,
            done: false,
        }
    }

    /// Whether the next piece is known to be a chunk of a large file.
    fn chunk_next(&self) -> bool {
        self.segment
            .as_ref()
            .and_then(|segment| segment.entries.get(self.entry))
            .is_some_and(|entry| {
                entry.entry_type == Some(EntryType::Regular) && entry.size > CHUNK_BYTES
            })
    }

    /// The next piece, an error of the walk, or `None` at the end.
    fn next(&mut self) -> Option<Result<Piece>> {
        loop {
            if let Some(segment) = &self.segment
                && self.entry < segment.entries.len()
            {
                break;
            }
            if let Some(segment) = self.segment.take()
                && let Some(last) = segment.entries.last()
            {
                self.last_key = Some(segment.key(last).to_vec());
            }
            let mut segment = match self.walked.as_ref()?.recv() {
                Ok(Ok(segment)) => segment,
                Ok(Err(error)) => return Some(Err(error)),
                Err(_) => return None,
            };
            add_parents(&mut segment, self.last_key.as_deref());
            self.segment = Some(Arc::new(segment));
            self.entry = 0;
            self.offset = 0;
        }
        let segment = self.segment.as_ref().expect("checked above");
        let entries = &segment.entries;
        let first = self.entry;
        let entry = &entries[first];
        let chunk = CHUNK_BYTES;
        if entry.entry_type == Some(EntryType::Regular) && entry.size > chunk {
            let offset = self.offset;
            let len = (entry.size - offset).min(chunk);
            self.offset += len;
            if self.offset == entry.size {
                self.entry += 1;
                self.offset = 0;
            }
            return Some(Ok(Piece {
                segment: Arc::clone(segment),
                first,
                end: first + 1,
                offset,
                len,
            }));
        }
        let mut bytes = 0;
        let limit = PIECE_BYTES;
        while let Some(entry) = entries.get(self.entry) {
            let regular = entry.entry_type == Some(EntryType::Regular);
            if bytes >= limit || (regular && entry.size > chunk) {
                break;
            }
            bytes += header::BLOCK_SIZE as u64 + entry.size;
            self.entry += 1;
        }
        Some(Ok(Piece {
            segment: Arc::clone(segment),
            first,
            end: self.entry,
            offset: 0,
            len: u64::MAX,
        }))
    }
}

/// Puts the missing parents of a segment's first entry in front of it:
/// those that are neither the previous key nor a parent of it.
fn add_parents(segment: &mut Segment, previous: Option<&[u8]>) {
    let Some(first) = segment.entries.first().copied() else {
        return;
    };
    let key = segment.key(&first);
    let parents: Vec<Entry> = missing_parents(key, previous)
        .map(|len| implicit_dir(&first, len))
        .collect();
    if !parents.is_empty() {
        segment.entries.splice(0..0, parents);
    }
}

/// The lengths of the parents of `key` (prefixes ending before a 0 byte)
/// that are not already in a list whose last key is `previous`, shortest
/// first. The previous key is a parent or a descendant of a parent exactly
/// when that parent is in the list; the first one missing and all below
/// it are missing.
fn missing_parents<'a>(
    key: &'a [u8],
    previous: Option<&'a [u8]>,
) -> impl Iterator<Item = usize> + 'a {
    let mut missing = false;
    key.iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let parent = &key[..at];
            missing = missing
                || !previous.is_some_and(|p| {
                    p == parent || (p.len() > at && p.starts_with(parent) && p[at] == 0)
                });
            missing
        })
}

/// A directory no root provides, whose key is the first `len` bytes of
/// `child`'s.
fn implicit_dir(child: &Entry, len: usize) -> Entry {
    Entry {
        key_len: len as u32,
        source_len: 0,
        mode: IMPLICIT_DIR_MODE,
        spec: 0,
        size: 0,
        entry_type: None,
        ..*child
    }
}

/// Merges sorted entries at one destination (the rules of [`merge`]) and
/// adds every missing parent as an implicit directory.
fn merge_entries(
    specs: &[CompiledSpec],
    segment: &Segment,
    sorted: Vec<Entry>,
) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::with_capacity(sorted.len() + 8);
    let mut i = 0;
    while i < sorted.len() {
        let mut current = sorted[i];
        let mut next = i + 1;
        while next < sorted.len() && segment.key(&sorted[next]) == segment.key(&current) {
            let (first, second) = (
                segment.file_entry(&current),
                segment.file_entry(&sorted[next]),
            );
            match merge(specs, &first, &second)? {
                Merge::KeepFirst => {}
                Merge::TakeSecond => current = sorted[next],
                Merge::Conflict(reason) => {
                    let mut name = Vec::new();
                    key_to_path(segment.key(&current), &mut name);
                    return Err(Error::Conflict {
                        destination: String::from_utf8_lossy(&name).into_owned(),
                        reason,
                        first_kind: describe(specs, &first),
                        second_kind: describe(specs, &second),
                        first: first.source,
                        second: second.source,
                    });
                }
            }
            next += 1;
        }
        let previous = out.last().map(|e| segment.key(e));
        let parents: Vec<usize> = missing_parents(segment.key(&current), previous).collect();
        out.extend(parents.into_iter().map(|len| implicit_dir(&current, len)));
        out.push(current);
        i = next;
    }
    Ok(out)
}

/// Marks the calling thread as batch work (`SCHED_BATCH`): a reader that
/// wakes up then does not preempt the thread hashing or compressing the
/// tar, which is what bounds the layer's speed. Best effort.
fn batch_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param`; 0 is the calling thread.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// Buffers a reader reuses from entry to entry.
#[derive(Default)]
struct Scratch {
    name: Vec<u8>,
    path: Vec<u8>,
    link: Vec<u8>,
    header: Vec<u8>,
}

/// A slot of the ring.
#[derive(Default)]
struct Slot {
    /// The sequence number the slot may take next.
    free_for: usize,
    /// The sequence number whose bytes it holds.
    ready: Option<usize>,
    buffer: Vec<u8>,
    filled: usize,
    error: Option<Error>,
}

struct RingState {
    slots: Vec<Slot>,
    /// How many pieces there are, once planning is done.
    total: Option<usize>,
    /// How many pieces the writer is done with.
    written: usize,
    aborted: bool,
}

/// Pieces in flight between readers and the writer: piece `n` goes in slot
/// `n % slots`, once the writer has taken piece `n - slots` from it. Each
/// slot keeps its buffer, so nothing is allocated per file.
struct Ring {
    state: Mutex<RingState>,
    /// How far ahead of the writer a chunk of a large file may be read.
    chunk_lead: usize,
    /// A piece became ready, or planning ended: wakes the writer.
    ready: Condvar,
    /// A slot became free: wakes readers.
    free: Condvar,
}

impl Ring {
    fn new(slots: usize, chunk_lead: usize) -> Ring {
        Ring {
            chunk_lead: chunk_lead.min(slots),
            state: Mutex::new(RingState {
                slots: (0..slots)
                    .map(|i| Slot {
                        free_for: i,
                        ..Slot::default()
                    })
                    .collect(),
                total: None,
                written: 0,
                aborted: false,
            }),
            ready: Condvar::new(),
            free: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait<'a>(
        condvar: &Condvar,
        guard: std::sync::MutexGuard<'a, RingState>,
    ) -> std::sync::MutexGuard<'a, RingState> {
        condvar
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Records that there are `total` pieces.
    fn set_total(&self, total: usize) {
        self.lock().total = Some(total);
        self.ready.notify_all();
    }

    /// Waits until piece `sequence` (a `chunk` of a large file or not) may
    /// go in its slot and takes the slot's buffer; `None` when the writer
    /// gave up.
    fn slot_for(&self, sequence: usize, chunk: bool) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let slot = sequence % state.slots.len();
        loop {
            if state.aborted {
                return None;
            }
            if state.slots[slot].free_for == sequence
                && (!chunk || sequence < state.written + self.chunk_lead)
            {
                return Some(std::mem::take(&mut state.slots[slot].buffer));
            }
            state = Ring::wait(&self.free, state);
        }
    }

    /// Hands piece `sequence` to the writer.
    fn put(&self, sequence: usize, buffer: Vec<u8>, filled: usize, error: Option<Error>) {
        let mut state = self.lock();
        let count = state.slots.len();
        let slot = &mut state.slots[sequence % count];
        slot.buffer = buffer;
        slot.filled = filled;
        slot.error = error;
        slot.ready = Some(sequence);
        drop(state);
        self.ready.notify_all();
    }

    /// Waits for piece `sequence`; `None` when there is no such piece.
    fn take(&self, sequence: usize) -> Result<Option<(Vec<u8>, usize)>> {
        let mut state = self.lock();
        let count = state.slots.len();
        loop {
            if state.total == Some(sequence) {
                return Ok(None);
            }
            let slot = &mut state.slots[sequence % count];
            if slot.ready == Some(sequence) {
                if let Some(error) = slot.error.take() {
                    return Err(error);
                }
                return Ok(Some((std::mem::take(&mut slot.buffer), slot.filled)));
            }
            state = Ring::wait(&self.ready, state);
        }
    }

    /// Returns piece `sequence`'s buffer to its slot for piece
    /// `sequence + slots`.
    fn give_back(&self, sequence: usize, buffer: Vec<u8>) {
        let mut state = self.lock();
        let count = state.slots.len();
        let slot = &mut state.slots[sequence % count];
        slot.buffer = buffer;
        slot.ready = None;
        slot.free_for = sequence + count;
        state.written = sequence + 1;
        drop(state);
        self.free.notify_all();
    }

    fn abort(&self) {
        self.lock().aborted = true;
        self.ready.notify_all();
        self.free.notify_all();
    }
}

/// Appends `bytes` at `buffer[*filled..]`, growing the buffer if needed (its
/// length is a high-water mark: bytes past `filled` are stale, never zeroed
/// again).
fn append(buffer: &mut Vec<u8>, filled: &mut usize, bytes: &[u8]) {
    let end = *filled + bytes.len();
    if buffer.len() < end {
        buffer.resize(end, 0);
    }
    buffer[*filled..end].copy_from_slice(bytes);
    *filled = end;
}

/// Reads bytes `start..end` of the file at `path`, which should be `size`
/// bytes long, to `buffer[*filled..]`.
fn read_range(
    path: &Path,
    start: u64,
    end: u64,
    size: u64,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
) -> Result<()> {
    if start == end {
        return Ok(());
    }
    let want = (end - start) as usize;
    let stop = *filled + want;
    if buffer.len() < stop {
        buffer.resize(stop, 0);
    }
    let file = File::open(path).map_err(|e| Error::io("opening", path)(e))?;
    let mut at = *filled;
    while at < stop {
        let n = file
            .read_at(&mut buffer[at..stop], start + (at - *filled) as u64)
            .map_err(|e| Error::io("reading", path)(e))?;
        if n == 0 {
            return Err(Error::FileChanged {
                path: path.to_path_buf(),
                expected: size,
            });
        }
        at += n;
    }
    *filled = stop;
    Ok(())
}

/// Walks one root in sorted order (a directory before its children, sorted
/// by the bytes of their names), giving its entries with their keys.
///
/// Metadata comes from `statx` relative to each directory (what
/// `DirEntry::metadata` does), not from the full path: a walk of many
/// small files is mostly those calls.
fn walk_root(spec: &CompiledSpec, index: usize) -> Result<Walk> {
    let root = &spec.spec.path;
    let metadata = std::fs::symlink_metadata(root).map_err(|e| Error::Io {
        action: "walking",
        path: root.clone(),
        source: e,
    })?;
    let mut out = Walk::default();
    let mut path = root.clone();
    visit(spec, index, &mut path, &metadata, &mut out)?;
    Ok(out)
}

/// Adds `path` and, for a directory, everything below it.
fn visit(
    spec: &CompiledSpec,
    index: usize,
    path: &mut PathBuf,
    metadata: &std::fs::Metadata,
    out: &mut Walk,
) -> Result<()> {
    let entry_type = entry_type(path, metadata.file_type())?;
    add_entry(spec, index, path, metadata, entry_type, out)?;
    if entry_type != EntryType::Directory {
        return Ok(());
    }
    let walking = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action: "walking",
            path,
            source,
        }
    };
    let mut children = Vec::new();
    for child in std::fs::read_dir(&*path).map_err(walking(path))? {
        let child = child.map_err(walking(path))?;
        let metadata = child.metadata().map_err(|source| Error::Io {
            action: "reading metadata of",
            path: child.path(),
            source,
        })?;
        children.push((child.file_name(), metadata));
    }
    children.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, metadata) in children {
        path.push(&name);
        let result = visit(spec, index, path, &metadata, out);
        path.pop();
        result?;
    }
    Ok(())
}

/// Adds the entry of one walked file.
fn add_entry(
    spec: &CompiledSpec,
    index: usize,
    path: &Path,
    metadata: &std::fs::Metadata,
    entry_type: EntryType,
    out: &mut Walk,
) -> Result<()> {
    let source = path.as_os_str().as_bytes();
    let destination = spec.destination(source);
    if destination.is_empty() {
        return Ok(());
    }
    let cleaned = if is_clean(&destination) {
        destination
    } else {
        Cow::Owned(clean(&destination))
    };
    out.case_hack |= has_case_hack(&cleaned);
    let (key_offset, key_len) = push_key(&mut out.arena, &cleaned)?;
    let (source_offset, source_len) = if *cleaned == *source && source != b"/" {
        (0, SOURCE_IS_KEY)
    } else {
        push_bytes(&mut out.arena, source)?
    };
    out.entries.push(Entry {
        arena: 0,
        key_offset,
        key_len,
        source_offset,
        source_len,
        mode: metadata.permissions().mode() & 0o7777,
        spec: index as u32,
        size: if entry_type == EntryType::Regular {
            metadata.len()
        } else {
            0
        },
        entry_type: Some(entry_type),
    });
    Ok(())
}

/// The tar entry type of a file, or an error for one a layer cannot hold.
fn entry_type(path: &Path, file_type: std::fs::FileType) -> Result<EntryType> {
    Ok(if file_type.is_dir() {
        EntryType::Directory
    } else if file_type.is_symlink() {
        EntryType::Symlink
    } else if file_type.is_file() {
        EntryType::Regular
    } else {
        let kind = if file_type.is_socket() {
            "socket"
        } else if file_type.is_fifo() {
            "FIFO"
        } else {
            "device"
        };
        return Err(Error::UnsupportedFileType {
            path: path.to_path_buf(),
            kind,
        });
    })
}

/// How a file looks, for conflict messages.
fn describe(specs: &[CompiledSpec], file: &FileEntry) -> String {
    let kind = match file.entry_type {
        EntryType::Regular => format!("file, mode {:04o}, {} bytes", file.mode, file.size),
        EntryType::Directory => format!("directory, mode {:04o}", file.mode),
        EntryType::Symlink => match std::fs::read_link(&file.source) {
            Ok(target) => format!("symlink to {}", target.display()),
            Err(_) => "symlink".to_owned(),
        },
    };
    let attributes = file_attributes(specs, file);
    if attributes.by_perm {
        format!(
            "{kind}, perms make it mode {:04o}, owner {}:{}",
            attributes.mode, attributes.uid, attributes.gid
        )
    } else {
        kind
    }
}

/// What to do when a second source provides a file where one already is.
enum Merge {
    /// Keep the first file.
    KeepFirst,
    /// Replace it with the second, as upstream does for identical files.
    TakeSecond,
    /// Refuse, for this reason.
    Conflict(ConflictReason),
}

/// The rules for two sources at one destination (several `copyToRoot`
/// roots sharing `/bin`, a root overlapping the Nix database):
///
/// * Different types (a directory and a symlink, upstream #162), regular
///   files with different contents, symlinks with different targets:
///   conflict. Upstream compared only modes and sizes, and silently kept
///   the last of two different files of equal size.
/// * Otherwise the entries are merged, and what the tar says of the entry
///   (mode, owner) is computed for both, `perms` applied. Equal, or the two
///   roots have the same `perms` list: the second wins, as upstream. Only
///   one side's `perms` match the entry: that side wins, since it is what
///   the user asked for (upstream #144 refused whenever the perms lists
///   differed, even when they did not apply to the entry). Both sides'
///   perms match and disagree, or no perms and modes disagree: conflict.
fn merge(specs: &[CompiledSpec], first: &FileEntry, second: &FileEntry) -> Result<Merge> {
    if first.entry_type != second.entry_type {
        return Ok(Merge::Conflict(
            if [first.entry_type, second.entry_type].contains(&EntryType::Directory) {
                ConflictReason::DirectoryAndOther
            } else {
                ConflictReason::SymlinkAndFile
            },
        ));
    }
    match first.entry_type {
        EntryType::Regular => {
            if first.size != second.size || !same_content(&first.source, &second.source)? {
                return Ok(Merge::Conflict(ConflictReason::Contents));
            }
        }
        EntryType::Symlink => {
            let target =
                |path: &Path| std::fs::read_link(path).map_err(Error::io("reading symlink", path));
            if target(&first.source)? != target(&second.source)? {
                return Ok(Merge::Conflict(ConflictReason::Targets));
            }
        }
        EntryType::Directory => {}
    }
    let (a, b) = (
        file_attributes(specs, first),
        file_attributes(specs, second),
    );
    if a.same_entry(&b) || specs[first.spec].spec.perms == specs[second.spec].spec.perms {
        return Ok(Merge::TakeSecond);
    }
    Ok(match (a.by_perm, b.by_perm) {
        (true, false) => Merge::KeepFirst,
        (false, true) => Merge::TakeSecond,
        (true, true) => Merge::Conflict(ConflictReason::Perms),
        (false, false) => Merge::Conflict(ConflictReason::Modes),
    })
}

/// Whether two regular files of equal size hold the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    if a == b {
        return Ok(true);
    }
    let open = |path: &Path| File::open(path).map_err(Error::io("opening", path));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(Error::io("reading", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(Error::io("reading", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end of the file.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The mode and owner the tar gives an entry, after its root's perms.
struct Attributes<'a> {
    mode: u32,
    uid: u32,
    gid: u32,
    uname: &'a [u8],
    gname: &'a [u8],
    /// Whether a perms entry matched.
    by_perm: bool,
}

impl Attributes<'_> {
    fn same_entry(&self, other: &Attributes<'_>) -> bool {
        (self.mode, self.uid, self.gid, self.uname, self.gname)
            == (other.mode, other.uid, other.gid, other.uname, other.gname)
    }
}

/// Applies the perms of `spec` to a file at `source`, in order, as
/// upstream: a match always sets uid and gid; uname, gname and mode only
/// when given.
fn attributes<'a>(
    spec: &'a CompiledSpec,
    source: &[u8],
    entry_type: EntryType,
    mode: u32,
) -> Attributes<'a> {
    let mut attributes = Attributes {
        mode: if entry_type == EntryType::Symlink {
            SYMLINK_MODE
        } else {
            mode
        },
        uid: 0,
        gid: 0,
        uname: DEFAULT_OWNER_NAME,
        gname: DEFAULT_OWNER_NAME,
        by_perm: false,
    };
    for (regex, perm) in spec.perms.iter().zip(&spec.spec.perms) {
        if regex.is_match(source) {
            attributes.by_perm = true;
            attributes.uid = perm.uid;
            attributes.gid = perm.gid;
            if !perm.uname.is_empty() {
                attributes.uname = perm.uname.as_bytes();
            }
            if !perm.gname.is_empty() {
                attributes.gname = perm.gname.as_bytes();
            }
            if let Some(mode) = perm.mode {
                attributes.mode = mode.bits();
            }
        }
    }
    attributes
}

/// [`attributes`] of a [`FileEntry`].
fn file_attributes<'a>(specs: &'a [CompiledSpec], file: &FileEntry) -> Attributes<'a> {
    attributes(
        &specs[file.spec],
        file.source.as_os_str().as_bytes(),
        file.entry_type,
        file.mode,
    )
}

/// Builds the tree of `specs` and writes its tar to `out`.
pub fn write_tar<W: Write>(specs: &[PathSpec], out: W) -> Result<()> {
    Tree::build(specs)?.write(out)
}

/// The parts of a cleaned path, as Go's `strings.Split` gives them; `/`
/// itself is one empty part (the root).
fn split_path(cleaned: &[u8]) -> Vec<&[u8]> {
    if cleaned == b"/" {
        return vec![&[]];
    }
    cleaned.split(|&b| b == b'/').collect()
}

/// Go's `filepath.Join(base, name)` for a single name component.
fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        return b"/".to_vec();
    }
    let mut joined = Vec::with_capacity(base.len() + 1 + name.len());
    joined.extend_from_slice(base);
    if !base.is_empty() && base != b"/" {
        joined.push(b'/');
    }
    joined.extend_from_slice(name);
    if name == b"." || name == b".." {
        return clean(&joined);
    }
    joined
}

/// Lexical path cleaning with Go's rules: collapse `//`, drop `.`, resolve
/// `..` against a preceding name, never climb above `/`.
fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut leading_dotdots = 0;
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.len() > leading_dotdots {
                    parts.pop();
                } else if !rooted {
                    parts.push(part);
                    leading_dotdots += 1;
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if rooted {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// The tree as upstream builds it, one map per directory: used only when a
/// name carries Nix's case-hack suffix, since removing it can make two
/// names one (an error) and changes the order of names.
mod legacy {
    use super::*;

    #[derive(Debug, Default)]
    struct Node {
        children: BTreeMap<Box<[u8]>, Node>,
        file: Option<FileEntry>,
    }

    /// Walks the roots `indices` again into a map per directory, strips the
    /// suffix, and flattens the result into a segment in tar order.
    pub(super) fn segment(specs: &[CompiledSpec], indices: &[usize]) -> Result<Segment> {
        let mut root = Node::default();
        for &index in indices {
            let walk = walk_root(&specs[index], index)?;
            for entry in &walk.entries {
                let start = entry.source_offset as usize;
                let source = match entry.source_len {
                    SOURCE_IS_KEY => {
                        let mut path = Vec::new();
                        let key_start = entry.key_offset as usize;
                        key_to_path(
                            &walk.arena[key_start..key_start + entry.key_len as usize],
                            &mut path,
                        );
                        path
                    }
                    len => walk.arena[start..start + len as usize].to_vec(),
                };
                let file = FileEntry {
                    source: PathBuf::from(std::ffi::OsString::from_vec(source)),
                    entry_type: entry.entry_type.expect("walked entries are provided"),
                    mode: entry.mode,
                    size: entry.size,
                    spec: index,
                };
                insert(specs, &mut root, file)?;
            }
        }
        strip_case_hack(&mut root)?;
        let (mut arena, mut entries) = (Vec::new(), Vec::new());
        flatten(&[], &root, &mut arena, &mut entries)?;
        Ok(Segment {
            arenas: vec![arena],
            entries,
        })
    }

    fn insert(specs: &[CompiledSpec], root: &mut Node, file: FileEntry) -> Result<()> {
        let destination = specs[file.spec].destination(file.source.as_os_str().as_bytes());
        if destination.is_empty() {
            return Ok(());
        }
        let cleaned = clean(&destination);
        let mut node = root;
        for part in split_path(&cleaned) {
            if !node.children.contains_key(part) {
                node.children.insert(part.into(), Node::default());
            }
            node = node.children.get_mut(part).expect("inserted above");
        }
        if let Some(existing) = &node.file {
            match merge(specs, existing, &file)? {
                Merge::KeepFirst => return Ok(()),
                Merge::TakeSecond => {}
                Merge::Conflict(reason) => {
                    return Err(Error::Conflict {
                        destination: String::from_utf8_lossy(&destination).into_owned(),
                        reason,
                        first: existing.source.clone(),
                        first_kind: describe(specs, existing),
                        second: file.source.clone(),
                        second_kind: describe(specs, &file),
                    });
                }
            }
        }
        node.file = Some(file);
        Ok(())
    }

    /// Appends the entries below `node` in tar order.
    fn flatten(
        base: &[u8],
        node: &Node,
        arena: &mut Vec<u8>,
        entries: &mut Vec<Entry>,
    ) -> Result<()> {
        for (name, child) in &node.children {
            let path = join(base, name);
            let (key_offset, key_len) = push_key(arena, &path)?;
            let entry = match &child.file {
                None => Entry {
                    arena: 0,
                    key_offset,
                    key_len,
                    source_offset: 0,
                    source_len: 0,
                    mode: IMPLICIT_DIR_MODE,
                    spec: 0,
                    size: 0,
                    entry_type: None,
                },
                Some(file) => {
                    let (source_offset, source_len) =
                        push_bytes(arena, file.source.as_os_str().as_bytes())?;
                    Entry {
                        arena: 0,
                        key_offset,
                        key_len,
                        source_offset,
                        source_len,
                        mode: file.mode,
                        spec: file.spec as u32,
                        size: file.size,
                        entry_type: Some(file.entry_type),
                    }
                }
            };
            entries.push(entry);
            flatten(&path, child, arena, entries)?;
        }
        Ok(())
    }

    /// Removes Nix's case-hack suffix from every name, failing when two
    /// names become one.
    fn strip_case_hack(node: &mut Node) -> Result<()> {
        if node
            .children
            .keys()
            .any(|name| case_hack_base(name).is_some())
        {
            let children = std::mem::take(&mut node.children);
            for (name, child) in children {
                let final_name: Box<[u8]> = case_hack_base(&name).map_or(name.clone(), Into::into);
                match node.children.entry(final_name) {
                    MapEntry::Vacant(slot) => {
                        slot.insert(child);
                    }
                    MapEntry::Occupied(_) => {
                        return Err(Error::Invalid(format!(
                            "removing Nix's case-hack suffix from {:?} makes it collide with another file",
                            OsStr::from_bytes(&name)
                        )));
                    }
                }
            }
        }
        node.children.values_mut().try_for_each(strip_case_hack)
    }
}

/// `name` without a `~nix~case~hack~N` suffix (N ≥ 1), if it has one.
fn case_hack_base(name: &[u8]) -> Option<&[u8]> {
    let at = name
        .windows(CASE_HACK_SUFFIX.len())
        .position(|w| w == CASE_HACK_SUFFIX)?;
    let index = &name[at + CASE_HACK_SUFFIX.len()..];
    if index
        .windows(CASE_HACK_SUFFIX.len())
        .any(|w| w == CASE_HACK_SUFFIX)
    {
        return None;
    }
    let index: i64 = std::str::from_utf8(index).ok()?.parse().ok()?;
    (index >= 1).then_some(&name[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        let cases: &[(&str, &str)] = &[
            ("", "."),
            ("/", "/"),
            ("//nix//store/", "/nix/store"),
            ("/nix/./store/../x", "/nix/x"),
            ("/..", "/"),
            ("../tree/g1", "../tree/g1"),
            ("a/../../b", "../b"),
            ("../../x/..", "../.."),
        ];
        for (input, expected) in cases {
            assert_eq!(
                clean(input.as_bytes()),
                expected.as_bytes(),
                "clean({input:?})"
            );
        }
    }

    #[test]
    fn split_and_join() {
        assert_eq!(split_path(&clean(b"/")), vec![&b""[..]]);
        assert_eq!(split_path(b"/nix/store"), vec![&b""[..], b"nix", b"store"]);
        assert_eq!(split_path(b"../t"), vec![&b".."[..], b"t"]);
        assert_eq!(join(b"", b""), b"/");
        assert_eq!(join(b"/", b"nix"), b"/nix");
        assert_eq!(join(b"", b".."), b"..");
        assert_eq!(join(b"..", b"tree"), b"../tree");
    }

    #[test]
    fn case_hack_suffix() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Makefile~nix~case~hack~1", Some("Makefile")),
            ("x~nix~case~hack~2", Some("x")),
            ("x~nix~case~hack~0", None),
            ("x~nix~case~hack~", None),
            ("filename~nix~", None),
            ("a~nix~case~hack~1~nix~case~hack~1", None),
        ];
        for (name, expected) in cases {
            assert_eq!(
                case_hack_base(name.as_bytes()),
                expected.map(str::as_bytes),
                "{name}"
            );
        }
    }

    use crate::tar::{Perm, Rewrite};

    /// A copyToRoot-like spec: `dir`'s content at `/`.
    fn root(dir: &Path, perms: Vec<Perm>) -> PathSpec {
        PathSpec {
            path: dir.to_path_buf(),
            rewrite: Some(Rewrite {
                regex: format!("^{}", regex::escape(dir.to_str().unwrap())),
                repl: String::new(),
            }),
            perms,
        }
    }

    fn perm(regex: &str, uid: u32) -> Perm {
        Perm {
            regex: regex.to_owned(),
            mode: Some("0700".parse().unwrap()),
            uid,
            gid: uid,
            uname: String::new(),
            gname: String::new(),
        }
    }

    fn files(dir: &Path, files: &[(&str, &str)]) {
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    /// The entries of the tar of `specs`: name → (mode, uid).
    fn entries(specs: &[PathSpec]) -> BTreeMap<String, (u32, u64)> {
        let mut bytes = Vec::new();
        write_tar(specs, &mut bytes).unwrap();
        let mut archive = ::tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (
                    name,
                    (e.header().mode().unwrap(), e.header().uid().unwrap()),
                )
            })
            .collect()
    }

    fn conflict(specs: &[PathSpec]) -> String {
        match Tree::build(specs) {
            Err(e @ Error::Conflict { .. }) => e.to_string(),
            Err(other) => panic!("expected a conflict, got {other}"),
            Ok(_) => panic!("expected a conflict"),
        }
    }

    fn tar_of(specs: &[PathSpec], stream: bool) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        Tree::build_with(specs, stream)?.write(&mut bytes)?;
        Ok(bytes)
    }

    /// Store-like roots: nested directories, empty, small and multi-chunk
    /// files, symlinks.
    fn store_roots(dir: &Path) -> Vec<PathSpec> {
        let big: String = (0..CHUNK_BYTES * 2 + 3)
            .map(|i| (b'a' + (i % 23) as u8) as char)
            .collect();
        let roots = ["0aaa-b", "0aaa", "9zzz-c", "5mmm-a"];
        for (i, name) in roots.iter().enumerate() {
            let root = dir.join("store").join(name);
            files(
                &root,
                &[
                    ("bin/x", "x"),
                    ("share/doc/empty", ""),
                    ("share/a-b/c", "513"),
                ],
            );
            std::fs::write(root.join("share/big"), &big[i..]).unwrap();
            std::os::unix::fs::symlink("../bin/x", root.join("share/link")).unwrap();
        }
        std::fs::write(dir.join("store/single-file"), "single").unwrap();
        let mut specs: Vec<PathSpec> = roots
            .iter()
            .map(|r| PathSpec::plain(dir.join("store").join(r)))
            .collect();
        specs.push(PathSpec::plain(dir.join("store/single-file")));
        specs
    }

    /// Streaming roots one by one must give exactly the tar of the merged
    /// tree (which the golden tests pin).
    #[test]
    fn streamed_roots_give_the_merged_tar() {
        let dir = tempfile::tempdir().unwrap();
        let specs = store_roots(dir.path());
        assert!(
            streamable(
                &specs
                    .iter()
                    .map(|s| CompiledSpec::new(s).unwrap())
                    .collect::<Vec<_>>()
            )
            .is_some()
        );
        let streamed = tar_of(&specs, true).unwrap();
        assert_eq!(streamed, tar_of(&specs, false).unwrap());
        let names: Vec<String> = entries(&specs).into_keys().collect();
        assert!(names.contains(&"/".to_owned()), "{names:?}");
        // A root inside another is merged, not streamed.
        let mut nested = specs.clone();
        nested.push(PathSpec::plain(dir.path().join("store/0aaa/share")));
        let compiled: Vec<_> = nested
            .iter()
            .map(|s| CompiledSpec::new(s).unwrap())
            .collect();
        assert!(streamable(&compiled).is_none());
        assert_eq!(tar_of(&nested, true).unwrap(), streamed);
    }

    /// A streamed root whose names carry the case-hack suffix is sorted
    /// after removing it, as in the merged tree.
    #[test]
    fn streamed_case_hack_root_matches_the_merged_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut specs = store_roots(dir.path());
        let root = dir.path().join("store/3ccc-hack");
        files(
            &root,
            &[
                ("Makefile~nix~case~hack~1", "a"),
                ("Makefile-x", "b"),
                ("MakefilE", "c"),
            ],
        );
        specs.push(PathSpec::plain(&root));
        let streamed = tar_of(&specs, true).unwrap();
        assert_eq!(streamed, tar_of(&specs, false).unwrap());
        files(&root, &[("Makefile", "d")]);
        assert!(tar_of(&specs, true).is_err());
    }

    /// An error in a root walked while the tar is written ends the tar
    /// with that error.
    #[test]
    fn a_walk_error_while_streaming_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let specs = store_roots(dir.path());
        let fifo = dir.path().join("store/9zzz-c/share/fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        match tar_of(&specs, true) {
            Err(Error::UnsupportedFileType { path, .. }) => assert_eq!(path, fifo),
            other => panic!("expected an unsupported file type, got {other:?}"),
        }
    }

    #[test]
    fn roots_sharing_directories_and_identical_files_merge() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        files(&a, &[("bin/one", "1"), ("share/same", "same")]);
        files(&b, &[("bin/two", "2"), ("share/same", "same")]);
        let names: Vec<String> = entries(&[root(&a, vec![]), root(&b, vec![])])
            .into_keys()
            .collect();
        assert_eq!(
            names,
            ["/", "/bin", "/bin/one", "/bin/two", "/share", "/share/same"]
        );
    }

    #[test]
    fn different_contents_of_equal_size_conflict_naming_both_sources() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        files(&a, &[("etc/motd", "one")]);
        files(&b, &[("etc/motd", "two")]);
        let message = conflict(&[root(&a, vec![]), root(&b, vec![])]);
        for needle in [
            "at /etc/motd",
            a.join("etc/motd").to_str().unwrap(),
            b.join("etc/motd").to_str().unwrap(),
            "different contents",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    /// Upstream #162: a directory in one root, a symlink in another.
    #[test]
    fn upstream_162_directory_and_symlink_conflict_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        files(&a, &[("share/doc/a", "a")]);
        std::fs::create_dir_all(&b).unwrap();
        std::os::unix::fs::symlink("/nix/store/x-doc/share", b.join("share")).unwrap();
        let message = conflict(&[root(&a, vec![]), root(&b, vec![])]);
        assert!(
            message.contains("symlink to /nix/store/x-doc/share"),
            "{message}"
        );
        assert!(
            message.contains("put both packages in one buildEnv"),
            "{message}"
        );
    }

    /// Upstream #144: perms on one root made every directory it shares with
    /// another root a conflict, even where the perms do not apply.
    #[test]
    fn upstream_144_perms_on_one_root_do_not_conflict_with_shared_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        files(&a, &[("bin/one", "1")]);
        files(&b, &[("bin/two", "2"), ("tmp/.keep", "")]);
        let specs = [root(&a, vec![]), root(&b, vec![perm("/tmp$", 7)])];
        let tar = entries(&specs);
        assert_eq!(tar["/tmp"], (0o700, 7));
        assert_eq!(tar["/bin"].1, 0);
        // Where one side's perms do apply, they win, whichever comes first.
        let specs = [root(&a, vec![]), root(&b, vec![perm("/bin$", 7)])];
        assert_eq!(entries(&specs)["/bin"], (0o700, 7));
        let specs = [root(&b, vec![perm("/bin$", 7)]), root(&a, vec![])];
        assert_eq!(entries(&specs)["/bin"], (0o700, 7));
        // Both sides' perms apply and disagree: which owner would be right?
        let specs = [
            root(&a, vec![perm("/bin$", 8)]),
            root(&b, vec![perm("/bin$", 7)]),
        ];
        let message = conflict(&specs);
        assert!(
            message.contains("owner 8:8") && message.contains("owner 7:7"),
            "{message}"
        );
    }
}
