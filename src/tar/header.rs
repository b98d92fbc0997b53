//! Tar header blocks, byte for byte as upstream nix2container writes them.
//!
//! Upstream uses Go's `archive/tar` without forcing a format. For every entry
//! that writer picks USTAR when all fields fit, and otherwise PAX: an extended
//! header (typeflag `x`) carrying the fields that do not fit, followed by the
//! real header with those fields truncated to ASCII. The rules below are that
//! writer's rules; the golden tests pin them. Changing anything in this file
//! changes layer digests.

use std::collections::BTreeMap;

/// Size of a tar block. Headers and file contents are padded to it.
pub const BLOCK_SIZE: usize = 512;

/// Modification time written for every entry, in seconds since the epoch.
///
/// The Nix store sets every mtime to 1, and upstream copied that after its
/// issue #141 (nginx's etag patch relies on it). Changing it changes digests.
pub const MTIME: u64 = 1;

/// Owner name written unless a `perms` entry sets another.
pub const DEFAULT_OWNER_NAME: &[u8] = b"root";

/// Name component Go's writer puts in the name of a PAX extended header.
const PAX_HEADER_DIR: &[u8] = b"PaxHeaders.0";

const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
const OWNER_NAME_LEN: usize = 32;

/// The kind of a tar entry; the layer format knows no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file (hard links are written as regular files too).
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
}

impl EntryType {
    fn typeflag(self) -> u8 {
        match self {
            EntryType::Regular => b'0',
            EntryType::Symlink => b'2',
            EntryType::Directory => b'5',
        }
    }
}

/// Everything a header says about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Full entry name, as raw bytes.
    pub name: &'a [u8],
    /// Entry type.
    pub entry_type: EntryType,
    /// Symlink target; empty for other entries.
    pub link_name: &'a [u8],
    /// Permission and setuid/setgid/sticky bits, without file type bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Owner name.
    pub uname: &'a [u8],
    /// Group name.
    pub gname: &'a [u8],
    /// Content size: the file size for regular files, 0 otherwise.
    pub size: u64,
}

// Byte offsets of the USTAR header fields.
const NAME: (usize, usize) = (0, 100);
const MODE: (usize, usize) = (100, 8);
const UID: (usize, usize) = (108, 8);
const GID: (usize, usize) = (116, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME_FIELD: (usize, usize) = (136, 12);
const CHKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: (usize, usize) = (157, 100);
const MAGIC: (usize, usize) = (257, 6);
const VERSION: (usize, usize) = (263, 2);
const UNAME: (usize, usize) = (265, 32);
const GNAME: (usize, usize) = (297, 32);
const DEVMAJOR: (usize, usize) = (329, 8);
const DEVMINOR: (usize, usize) = (337, 8);
const PREFIX: (usize, usize) = (345, 155);

/// Appends the header block(s) for `header` to `out`: one USTAR block, or a
/// PAX extended header, its records padded to a block, and the main block.
pub fn encode(header: &Header<'_>, out: &mut Vec<u8>) {
    let mut pax: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut ustar = true;

    if !is_ascii(header.name) || header.name.len() > NAME_LEN {
        if split_ustar_path(header.name).is_none() {
            ustar = false;
        }
        pax.insert("path", header.name.to_vec());
    }
    for (key, value, len) in [
        ("linkpath", header.link_name, NAME_LEN),
        ("uname", header.uname, OWNER_NAME_LEN),
        ("gname", header.gname, OWNER_NAME_LEN),
    ] {
        if !is_ascii(value) || value.len() > len {
            ustar = false;
            pax.insert(key, value.to_vec());
        }
    }
    for (key, value, len) in [
        ("uid", u64::from(header.uid), UID.1),
        ("gid", u64::from(header.gid), GID.1),
        ("size", header.size, SIZE.1),
    ] {
        if !fits_in_octal(len, value) {
            ustar = false;
            pax.insert(key, value.to_string().into_bytes());
        }
    }

    if ustar {
        encode_ustar(header, out);
    } else {
        encode_pax(header, &pax, out);
    }
}

fn encode_ustar(header: &Header<'_>, out: &mut Vec<u8>) {
    let mut block = [0u8; BLOCK_SIZE];
    let (prefix, name) = split_ustar_path(header.name).unwrap_or((&[], header.name));
    fill_common(
        &mut block,
        header,
        name,
        header.link_name,
        header.uname,
        header.gname,
    );
    put_string(&mut block, PREFIX, prefix);
    finish(&mut block);
    out.extend_from_slice(&block);
}

fn encode_pax(header: &Header<'_>, records: &BTreeMap<&'static str, Vec<u8>>, out: &mut Vec<u8>) {
    let mut data = Vec::new();
    for (key, value) in records {
        data.extend_from_slice(&pax_record(key, value));
    }

    let mut block = [0u8; BLOCK_SIZE];
    let mut name = to_ascii(&pax_header_name(header.name));
    name.truncate(NAME_LEN);
    while name.last() == Some(&b'/') {
        name.pop();
    }
    put_string(&mut block, NAME, &name);
    put_octal(&mut block, MODE, 0);
    put_octal(&mut block, UID, 0);
    put_octal(&mut block, GID, 0);
    put_octal(&mut block, SIZE, data.len() as u64);
    put_octal(&mut block, MTIME_FIELD, 0);
    block[TYPEFLAG] = b'x';
    finish(&mut block);
    out.extend_from_slice(&block);
    out.extend_from_slice(&data);
    out.resize(out.len() + padding(data.len() as u64), 0);

    let mut block = [0u8; BLOCK_SIZE];
    fill_common(
        &mut block,
        header,
        &to_ascii(header.name),
        &to_ascii(header.link_name),
        &to_ascii(header.uname),
        &to_ascii(header.gname),
    );
    finish(&mut block);
    out.extend_from_slice(&block);
}

/// The fields both formats write the same way (Go's `templateV7Plus`).
fn fill_common(
    block: &mut [u8; BLOCK_SIZE],
    header: &Header<'_>,
    name: &[u8],
    link_name: &[u8],
    uname: &[u8],
    gname: &[u8],
) {
    block[TYPEFLAG] = header.entry_type.typeflag();
    put_string(block, NAME, name);
    put_string(block, LINKNAME, link_name);
    put_octal(block, MODE, u64::from(header.mode));
    put_octal(block, UID, u64::from(header.uid));
    put_octal(block, GID, u64::from(header.gid));
    put_octal(block, SIZE, header.size);
    put_octal(block, MTIME_FIELD, MTIME);
    put_string(block, UNAME, uname);
    put_string(block, GNAME, gname);
    put_octal(block, DEVMAJOR, 0);
    put_octal(block, DEVMINOR, 0);
}

/// Sets the USTAR magic and the checksum, the last step for every block.
fn finish(block: &mut [u8; BLOCK_SIZE]) {
    put_raw(block, MAGIC, b"ustar\0");
    put_raw(block, VERSION, b"00");
    // The checksum counts its own field as eight spaces.
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (CHKSUM.0..CHKSUM.0 + CHKSUM.1).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    put_octal(block, (CHKSUM.0, 7), sum);
    block[CHKSUM.0 + 7] = b' ';
}

fn put_raw(block: &mut [u8], (offset, len): (usize, usize), value: &[u8]) {
    block[offset..offset + len].copy_from_slice(value);
}

/// Copies as much of `value` as fits and NUL-terminates it when there is
/// room. Like Go, a truncated value must not end in `/` inside the field,
/// since some readers would take a file for a directory.
fn put_string(block: &mut [u8], (offset, len): (usize, usize), value: &[u8]) {
    let field = &mut block[offset..offset + len];
    let n = value.len().min(len);
    field[..n].copy_from_slice(&value[..n]);
    if value.len() < len {
        field[value.len()] = 0;
    }
    if value.len() > len && field[len - 1] == b'/' {
        let kept = value[..len - 1]
            .iter()
            .rposition(|&b| b != b'/')
            .map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

/// Zero-padded octal with a trailing NUL. A value that does not fit is
/// written as zero, as Go does in PAX mode (the PAX record holds the value).
fn put_octal(block: &mut [u8], (offset, len): (usize, usize), value: u64) {
    let value = if fits_in_octal(len, value) { value } else { 0 };
    let digits = format!("{value:0width$o}", width = len - 1);
    put_string(block, (offset, len), digits.as_bytes());
}

fn fits_in_octal(field_len: usize, value: u64) -> bool {
    let bits = (field_len - 1) * 3;
    bits >= 64 || value < (1u64 << bits)
}

fn is_ascii(value: &[u8]) -> bool {
    value.iter().all(|&b| b != 0 && b < 0x80)
}

fn to_ascii(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|&b| b != 0 && b < 0x80)
        .collect()
}

/// Splits a long ASCII name into USTAR's prefix and name fields, at the last
/// `/` that leaves a prefix of at most 155 bytes and a name of at most 100.
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN || !is_ascii(name) {
        return None;
    }
    let mut length = name.len();
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let suffix_len = name.len() - i - 1;
    if i == 0 || suffix_len > NAME_LEN || suffix_len == 0 || i > PREFIX_LEN {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// `dir/PaxHeaders.0/base` for an entry named `dir/base`, cleaned like Go's
/// `path.Join`. Entry names are already clean, so only the separator between
/// `dir` and the inserted component needs care.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let split = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (dir, base) = name.split_at(split);
    let mut out = Vec::with_capacity(name.len() + PAX_HEADER_DIR.len() + 2);
    if !dir.is_empty() {
        let trimmed = dir.len() - dir.iter().rev().take_while(|&&b| b == b'/').count();
        out.extend_from_slice(&dir[..trimmed]);
        out.push(b'/');
    }
    out.extend_from_slice(PAX_HEADER_DIR);
    if !base.is_empty() {
        out.push(b'/');
        out.extend_from_slice(base);
    }
    out
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the
/// whole record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3;
    let mut total = body_len + body_len.to_string().len();
    if total.to_string().len() + body_len != total {
        total = total.to_string().len() + body_len;
    }
    let mut record = format!("{total} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Zero bytes that follow `size` bytes of content to reach a block boundary.
pub fn padding(size: u64) -> usize {
    let rem = (size % BLOCK_SIZE as u64) as usize;
    if rem == 0 { 0 } else { BLOCK_SIZE - rem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8]) -> Header<'_> {
        Header {
            name,
            entry_type: EntryType::Regular,
            link_name: b"",
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: DEFAULT_OWNER_NAME,
            gname: DEFAULT_OWNER_NAME,
            size: 0,
        }
    }

    #[test]
    fn split_ustar_path_table() {
        let long_dir = "d".repeat(60);
        let long_base = "f".repeat(90);
        let ok = format!("{long_dir}/{long_base}");
        let base_too_long = format!("{long_dir}/{}", "f".repeat(101));
        let prefix_too_long = format!("{}/{long_base}", "d".repeat(156));
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("short", None),
            (&ok, Some((&long_dir, &long_base))),
            (&base_too_long, None),
            (&prefix_too_long, None),
        ];
        for (name, expected) in cases {
            let got = split_ustar_path(name.as_bytes());
            let expected = expected.map(|(p, n)| (p.as_bytes(), n.as_bytes()));
            assert_eq!(got, expected, "split of {name:?}");
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        // 99 bytes of body plus 2 digits is 101, which has 3 digits: 102.
        let value = vec![b'x'; 92];
        let record = pax_record("path", &value);
        assert_eq!(record.len(), 102);
        assert!(record.starts_with(b"102 path="));
    }

    #[test]
    fn pax_header_names() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/a/b", b"/a/PaxHeaders.0/b"),
            (b"/b", b"/PaxHeaders.0/b"),
            (b"b", b"PaxHeaders.0/b"),
            (b"../t/b", b"../t/PaxHeaders.0/b"),
        ];
        for (name, expected) in cases {
            assert_eq!(pax_header_name(name), *expected);
        }
    }

    #[test]
    fn ustar_block_layout() {
        let mut out = Vec::new();
        encode(&header(b"/a"), &mut out);
        assert_eq!(out.len(), BLOCK_SIZE);
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[136..148], b"00000000001\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[265..270], b"root\0");
        assert_eq!(&out[329..337], b"0000000\0");
        assert_eq!(out[155], b' ');
        assert_eq!(out[154], 0);
    }

    #[test]
    fn non_ascii_name_uses_pax() {
        let mut out = Vec::new();
        encode(&header("/café".as_bytes()), &mut out);
        assert_eq!(out.len(), 3 * BLOCK_SIZE);
        assert_eq!(out[156], b'x');
        assert!(out[..100].starts_with(b"/PaxHeaders.0/caf\0"));
        assert!(out[512..].starts_with("15 path=/café\n".as_bytes()));
        assert!(out[1024..].starts_with(b"/caf\0"));
    }

    #[test]
    fn large_uid_goes_to_pax() {
        let mut h = header(b"/a");
        h.uid = 1 << 21;
        let mut out = Vec::new();
        encode(&h, &mut out);
        assert!(out[512..].starts_with(b"15 uid=2097152\n"));
        assert_eq!(&out[1024 + 108..1024 + 116], b"0000000\0");
    }
}
