//! The hash Nix gives a fixed-output derivation's output (`outputHashMode =
//! "recursive"`): SHA-256 of the path's NAR serialisation. `pullImage`'s
//! builder computes it to tell a user with a wrong `sha256` which one is
//! right, and `nix2container pull` prints it.
//!
//! NAR grammar (every string is its length as a 64-bit little-endian
//! integer, its bytes, and zero padding to a multiple of 8):
//!
//! ```text
//! nar       := "nix-archive-1" node
//! node      := "(" "type" ( regular | symlink | directory ) ")"
//! regular   := "regular" [ "executable" "" ] "contents" <bytes>
//! symlink   := "symlink" "target" <target>
//! directory := "directory" { "entry" "(" "name" <name> "node" node ")" }
//!              (entries sorted by the bytes of their names)
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Nix's base-32 alphabet (no e, o, t, u).
const BASE32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The SHA-256 of the NAR serialisation of `path`.
pub fn sha256(path: &Path) -> Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    string(&mut hasher, b"nix-archive-1");
    node(&mut hasher, path)?;
    Ok(hasher.finalize().into())
}

fn string(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
    hasher.update(&[0u8; 8][..(8 - bytes.len() % 8) % 8]);
}

fn node(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path).map_err(Error::io("reading", path))?;
    string(hasher, b"(");
    string(hasher, b"type");
    if metadata.is_symlink() {
        let target = std::fs::read_link(path).map_err(Error::io("reading", path))?;
        string(hasher, b"symlink");
        string(hasher, b"target");
        string(hasher, target.as_os_str().as_bytes());
    } else if metadata.is_dir() {
        string(hasher, b"directory");
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(Error::io("listing", path))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(Error::io("listing", path))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            string(hasher, b"entry");
            string(hasher, b"(");
            string(hasher, b"name");
            string(hasher, name.as_bytes());
            string(hasher, b"node");
            node(hasher, &path.join(&name))?;
            string(hasher, b")");
        }
    } else {
        string(hasher, b"regular");
        if metadata.permissions().mode() & 0o100 != 0 {
            string(hasher, b"executable");
            string(hasher, b"");
        }
        string(hasher, b"contents");
        let size = metadata.len();
        hasher.update(size.to_le_bytes());
        let mut file = File::open(path).map_err(Error::io("opening", path))?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(Error::io("reading", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            read += n as u64;
        }
        if read != size {
            return Err(Error::FileChanged {
                path: path.to_path_buf(),
                expected: size,
            });
        }
        hasher.update(&[0u8; 8][..((8 - size % 8) % 8) as usize]);
    }
    string(hasher, b")");
    Ok(())
}

/// `hash` in Nix's base 32, as `nix-hash --base32` prints it.
pub fn to_base32(hash: &[u8]) -> String {
    let length = (hash.len() * 8).div_ceil(5);
    (0..length)
        .rev()
        .map(|n| {
            let (byte, bit) = (n * 5 / 8, n * 5 % 8);
            let low = u16::from(hash[byte]) >> bit;
            let high = hash
                .get(byte + 1)
                .map_or(0, |next| u16::from(*next) << (8 - bit));
            char::from(BASE32_ALPHABET[usize::from((low | high) & 0x1f)])
        })
        .collect()
}

fn from_base32(text: &str) -> Option<Vec<u8>> {
    let length = text.len() * 5 / 8;
    let mut hash = vec![0u8; length];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = BASE32_ALPHABET.iter().position(|&a| a == c)? as u16;
        let (byte, bit) = (n * 5 / 8, n * 5 % 8);
        hash[byte] |= (digit << bit) as u8;
        let carry = (digit << bit) >> 8;
        match hash.get_mut(byte + 1) {
            Some(next) => *next |= carry as u8,
            None if carry != 0 => return None,
            None => {}
        }
    }
    Some(hash)
}

/// `hash` as an SRI string, `sha256-<base64>`: what to write as a
/// `sha256` or `hash`.
pub fn to_sri(hash: &[u8; 32]) -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Parses a SHA-256 as Nix accepts it in `outputHash`: SRI
/// (`sha256-<base64>`), or base 32, base 16 or base 64, each optionally
/// after `sha256:`. `None` for anything else (such as `""`).
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = if let Some(base64) = text.strip_prefix("sha256-") {
        base64::engine::general_purpose::STANDARD
            .decode(base64)
            .ok()?
    } else {
        let bare = text.strip_prefix("sha256:").unwrap_or(text);
        match bare.len() {
            52 => from_base32(bare)?,
            64 => (0..32)
                .map(|i| u8::from_str_radix(bare.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?,
            44 => base64::engine::general_purpose::STANDARD
                .decode(bare)
                .ok()?,
            _ => return None,
        }
    };
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Pinned with `nix-hash --type sha256 [--base32] d` (Nix 2.8) on the
    /// same tree.
    #[test]
    fn nar_hashes_match_nix_hash() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), "hello").unwrap();
        std::fs::write(d.join("b"), "#!x").unwrap();
        std::fs::set_permissions(d.join("b"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a", d.join("l")).unwrap();
        let hash = sha256(&d).unwrap();
        assert_eq!(
            hex(&hash),
            "b7f4df5c367e1526cec36e128439599665fe9cf8b3042558efa548dc7b3c1cca"
        );
        assert_eq!(
            to_base32(&hash),
            "1jhw7ixxqj55xxc2a15kz2fgwrcnb4wq84kfqg72c5by6rfdzx5p"
        );
    }

    #[test]
    fn hash_forms_parse_to_the_same_bytes() {
        // sha256("hello"), in every form Nix accepts.
        let expected: [u8; 32] = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                        [2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        assert_eq!(
            to_base32(&expected),
            "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"
        );
        for form in [
            "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic".to_owned(),
            "sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic".to_owned(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_owned(),
            to_sri(&expected),
            to_sri(&expected).replace("sha256-", "sha256:"),
        ] {
            assert_eq!(parse_sha256(&form), Some(expected), "{form}");
        }
        for bad in [
            "",
            "sha256-",
            "sha256:xyz",
            "e94qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic",
        ] {
            assert_eq!(parse_sha256(bad), None, "{bad}");
        }
    }
}
