//! The file tree of one layer, keyed by destination name, and its tar stream.
//!
//! Building happens in two phases, as upstream does. First every root is
//! walked and each file is placed in a tree under its destination name
//! (after the rewrite), creating missing parents. Then the tree is emitted
//! depth first with the children of each directory sorted by the bytes of
//! their names, so the order of the roots and of the file system does not
//! matter.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// Size of the buffer file contents are copied through.
const COPY_BUFFER_SIZE: usize = 1 << 20;

/// The destination tree of a layer, ready to be written as a tar.
#[derive(Debug)]
pub struct Tree {
    root: Node,
    specs: Vec<CompiledSpec>,
}

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<[u8]>, Node>,
    file: Option<FileEntry>,
}

/// A file that a root provides at a node.
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

    fn destination(&self, source: &[u8]) -> Vec<u8> {
        match (&self.rewrite, &self.spec.rewrite) {
            (Some(regex), Some(rewrite)) => regex
                .replace_all(source, rewrite.repl.as_bytes())
                .into_owned(),
            _ => source.to_vec(),
        }
    }
}

impl Tree {
    /// Walks every root and places its files in the tree.
    ///
    /// Fails on a missing root, an invalid regex, a file type a layer cannot
    /// hold, or two roots that put different files at one destination.
    pub fn build(specs: &[PathSpec]) -> Result<Tree> {
        let mut tree = Tree {
            root: Node::default(),
            specs: specs.iter().map(CompiledSpec::new).collect::<Result<_>>()?,
        };
        for index in 0..tree.specs.len() {
            tree.add_root(index)?;
        }
        strip_case_hack(&mut tree.root)?;
        Ok(tree)
    }

    fn add_root(&mut self, index: usize) -> Result<()> {
        let root = self.specs[index].spec.path.clone();
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .follow_root_links(false)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        for item in walk {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("file system loop"));
                Error::Io {
                    action: "walking",
                    path,
                    source,
                }
            })?;
            let metadata = item.metadata().map_err(|e| Error::Io {
                action: "reading metadata of",
                path: item.path().to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("unknown")),
            })?;
            let file_type = metadata.file_type();
            let entry_type = if file_type.is_dir() {
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
                    path: item.path().to_path_buf(),
                    kind,
                });
            };
            let file = FileEntry {
                source: item.path().to_path_buf(),
                entry_type,
                mode: metadata.permissions().mode() & 0o7777,
                size: if entry_type == EntryType::Regular {
                    metadata.len()
                } else {
                    0
                },
                spec: index,
            };
            self.insert(file)?;
        }
        Ok(())
    }

    fn insert(&mut self, file: FileEntry) -> Result<()> {
        let specs = &self.specs;
        let destination = specs[file.spec].destination(file.source.as_os_str().as_bytes());
        if destination.is_empty() {
            return Ok(());
        }
        let cleaned = clean(&destination);
        let mut node = &mut self.root;
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

    /// Writes the tar stream, ending with two zero blocks and no further
    /// padding. `out` is not flushed: a compressor behind it would emit a
    /// flush marker.
    pub fn write<W: Write>(&self, mut out: W) -> Result<()> {
        let mut emitter = Emitter {
            specs: &self.specs,
            buffer: vec![0; COPY_BUFFER_SIZE],
            header: Vec::new(),
        };
        emitter.children(&[], &self.root, &mut out)?;
        out.write_all(&[0; 2 * header::BLOCK_SIZE])
            .map_err(Error::Output)?;
        out.flush().map_err(Error::Output)
    }
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
    let attributes = attributes(&specs[file.spec], file);
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
        attributes(&specs[first.spec], first),
        attributes(&specs[second.spec], second),
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

/// Applies the perms of `spec` to `file`, in order, as upstream: a match
/// always sets uid and gid; uname, gname and mode only when given.
fn attributes<'a>(spec: &'a CompiledSpec, file: &FileEntry) -> Attributes<'a> {
    let mut attributes = Attributes {
        mode: if file.entry_type == EntryType::Symlink {
            SYMLINK_MODE
        } else {
            file.mode
        },
        uid: 0,
        gid: 0,
        uname: DEFAULT_OWNER_NAME,
        gname: DEFAULT_OWNER_NAME,
        by_perm: false,
    };
    let source = file.source.as_os_str().as_bytes();
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

/// Builds the tree of `specs` and writes its tar to `out`.
pub fn write_tar<W: Write>(specs: &[PathSpec], out: W) -> Result<()> {
    Tree::build(specs)?.write(out)
}

struct Emitter<'a> {
    specs: &'a [CompiledSpec],
    buffer: Vec<u8>,
    header: Vec<u8>,
}

impl Emitter<'_> {
    fn children<W: Write>(&mut self, base: &[u8], node: &Node, out: &mut W) -> Result<()> {
        for (name, child) in &node.children {
            let path = join(base, name);
            self.entry(&path, child.file.as_ref(), out)?;
            self.children(&path, child, out)?;
        }
        Ok(())
    }

    fn entry<W: Write>(
        &mut self,
        name: &[u8],
        file: Option<&FileEntry>,
        out: &mut W,
    ) -> Result<()> {
        let Some(file) = file else {
            return self.write_header(
                &Header {
                    name,
                    entry_type: EntryType::Directory,
                    link_name: b"",
                    mode: IMPLICIT_DIR_MODE,
                    uid: 0,
                    gid: 0,
                    uname: DEFAULT_OWNER_NAME,
                    gname: DEFAULT_OWNER_NAME,
                    size: 0,
                },
                out,
            );
        };
        let link = match file.entry_type {
            EntryType::Symlink => std::fs::read_link(&file.source)
                .map_err(Error::io("reading symlink", &file.source))?
                .into_os_string()
                .into_vec(),
            _ => Vec::new(),
        };
        let attributes = attributes(&self.specs[file.spec], file);
        let header = Header {
            name,
            entry_type: file.entry_type,
            link_name: &link,
            mode: attributes.mode,
            uid: attributes.uid,
            gid: attributes.gid,
            uname: attributes.uname,
            gname: attributes.gname,
            size: file.size,
        };
        self.write_header(&header, out)?;
        if file.entry_type == EntryType::Regular {
            self.copy_content(&file.source, file.size, out)?;
        }
        Ok(())
    }

    fn write_header<W: Write>(&mut self, header: &Header<'_>, out: &mut W) -> Result<()> {
        self.header.clear();
        header::encode(header, &mut self.header);
        out.write_all(&self.header).map_err(Error::Output)
    }

    fn copy_content<W: Write>(&mut self, path: &Path, size: u64, out: &mut W) -> Result<()> {
        let mut file = File::open(path).map_err(Error::io("opening", path))?;
        let mut remaining = size;
        while remaining > 0 {
            let want = self
                .buffer
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = file
                .read(&mut self.buffer[..want])
                .map_err(Error::io("reading", path))?;
            if n == 0 {
                return Err(Error::FileChanged {
                    path: path.to_path_buf(),
                    expected: size,
                });
            }
            out.write_all(&self.buffer[..n]).map_err(Error::Output)?;
            remaining -= n as u64;
        }
        out.write_all(&[0; header::BLOCK_SIZE][..header::padding(size)])
            .map_err(Error::Output)
    }
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

/// Removes Nix's case-hack suffix from every name, failing when two names
/// become one.
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
