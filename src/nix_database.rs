//! A Nix database for images that use Nix inside (`initializeNixDatabase`).
//!
//! The image gets `/nix/var/nix/db/db.sqlite` registering exactly the store
//! paths it holds under `/nix/store`, so that `nix-store -q`, `nix build`
//! and the garbage collector work in a container as on the build machine.
//! Upstream loads a registration dump with `nix-store --load-db`, which
//! needs a `nix` package at build time; this writes the same database
//! directly, from the closure graph Nix exports to every derivation.
//!
//! The schema is Nix's (version [`NIX_SCHEMA_VERSION`], every Nix 2.x), and
//! the file is deterministic: rows are inserted in path order with
//! registration time 0, in a new file with a fixed page size and a rollback
//! journal, and vacuumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The database schema version Nix 2.x writes to `/nix/var/nix/db/schema`
/// and refuses to open a newer one than.
pub const NIX_SCHEMA_VERSION: u32 = 10;

/// SQLite page size of the database. Changing it changes the file's bytes.
const PAGE_SIZE: u32 = 4096;

/// The tables and indexes of Nix's `schema.sql` (schema version 10), which
/// Nix itself creates with `if not exists` when it opens a database.
/// Realisations (content-addressed derivations) live in a separate,
/// optional schema that Nix adds on its own when that feature is enabled.
const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// One valid path of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The store path.
    pub path: PathBuf,
    /// Its NAR hash as the database stores it: `sha256:<base16>`.
    pub nar_hash: String,
    /// Size of its NAR serialisation.
    pub nar_size: u64,
    /// The store paths it refers to, itself included if it does; each must
    /// be registered too.
    pub references: BTreeSet<PathBuf>,
    /// Its content-address assertion, if it is content-addressed.
    pub ca: Option<String>,
}

/// Writes a new database at `path` (which must not exist) holding
/// `registrations`, and returns nothing else: the caller writes the
/// `schema` file beside it.
pub fn write_database(path: &Path, registrations: &[Registration]) -> Result<()> {
    let sql = |source: rusqlite::Error| {
        Error::Invalid(format!(
            "writing the Nix database {}: {source}",
            path.display()
        ))
    };
    let mut sorted: Vec<&Registration> = registrations.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let ids: BTreeMap<&Path, i64> = sorted
        .iter()
        .zip(1..)
        .map(|(r, id)| (r.path.as_path(), id))
        .collect();
    if ids.len() != sorted.len() {
        return Err(Error::Invalid(
            "a store path is registered twice in the Nix database".into(),
        ));
    }

    let mut db = rusqlite::Connection::open(path).map_err(sql)?;
    db.execute_batch(&format!(
        "pragma page_size = {PAGE_SIZE}; pragma journal_mode = delete; pragma foreign_keys = on;"
    ))
    .map_err(sql)?;
    db.execute_batch(SCHEMA).map_err(sql)?;
    let transaction = db.transaction().map_err(sql)?;
    {
        let mut insert = transaction
            .prepare(
                "insert into ValidPaths (id, path, hash, registrationTime, deriver, narSize, ca) \
                 values (?1, ?2, ?3, 0, null, ?4, ?5)",
            )
            .map_err(sql)?;
        for (registration, id) in sorted.iter().zip(1i64..) {
            let size = i64::try_from(registration.nar_size).map_err(|_| {
                Error::Invalid(format!(
                    "NAR size of {} is too large",
                    registration.path.display()
                ))
            })?;
            insert
                .execute(rusqlite::params![
                    id,
                    path_str(&registration.path)?,
                    registration.nar_hash,
                    size,
                    registration.ca,
                ])
                .map_err(sql)?;
        }
        let mut reference = transaction
            .prepare("insert into Refs (referrer, reference) values (?1, ?2)")
            .map_err(sql)?;
        for registration in &sorted {
            let referrer = ids[registration.path.as_path()];
            for target in &registration.references {
                let Some(&referee) = ids.get(target.as_path()) else {
                    return Err(Error::Invalid(format!(
                        "{} refers to {}, which the Nix database does not register",
                        registration.path.display(),
                        target.display()
                    )));
                };
                reference.execute([referrer, referee]).map_err(sql)?;
            }
        }
    }
    transaction.commit().map_err(sql)?;
    db.execute_batch("vacuum;").map_err(sql)?;
    db.close().map_err(|(_, e)| sql(e))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::Invalid(format!("store path {} is not UTF-8", path.display())))
}

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The standard base-64 alphabet of SRI hashes.
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of a SHA-256 digest in bytes.
const SHA256_LEN: usize = 32;

/// A NAR hash as Nix prints it — `sha256:<nix32>` (Nix 2.x's
/// `exportReferencesGraph`), `sha256:<base16>` or SRI `sha256-<base64>` —
/// in the form the database stores: `sha256:<base16>`.
pub fn database_nar_hash(hash: &str) -> Result<String> {
    let invalid = || {
        Error::Invalid(format!(
            "invalid NAR hash {hash:?}: expected sha256:<nix32>, sha256:<base16> or sha256-<base64>"
        ))
    };
    let bytes = if let Some(encoded) = hash.strip_prefix("sha256:") {
        match encoded.len() {
            64 => decode_base16(encoded),
            52 => decode_nix32(encoded),
            _ => None,
        }
    } else if let Some(encoded) = hash.strip_prefix("sha256-") {
        decode_base64(encoded)
    } else {
        None
    }
    .filter(|bytes| bytes.len() == SHA256_LEN)
    .ok_or_else(invalid)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

fn decode_base16(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Nix's base 32: the last character holds the lowest 5 bits, and bits
/// fill bytes from the least significant end.
fn decode_nix32(s: &str) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; SHA256_LEN];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX32_ALPHABET.iter().position(|&a| a == c)? as u16;
        let (i, j) = (n * 5 / 8, n * 5 % 8);
        let shifted = digit << j;
        bytes[i] |= (shifted & 0xff) as u8;
        let carry = (shifted >> 8) as u8;
        if i + 1 < SHA256_LEN {
            bytes[i + 1] |= carry;
        } else if carry != 0 {
            return None;
        }
    }
    Some(bytes)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    let mut bytes = Vec::with_capacity(trimmed.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for c in trimmed.bytes() {
        let value = BASE64_ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from `nix-hash --to-base16` and `nix hash to-sri`.
    #[test]
    fn nar_hash_forms() {
        let hex = "sha256:a97cd217aa0ee1dd234ae570102c05bf6409bdb64f73e7d4493a0116d73e95d0";
        let cases: &[(&str, Option<&str>)] = &[
            (
                "sha256:1l4m7vbic09s97affwsgnsyhjr5z0ln10w7598ixvq8fm8bx4z59",
                Some(hex),
            ),
            (
                "sha256-qXzSF6oO4d0jSuVwECwFv2QJvbZPc+fUSToBFtc+ldA=",
                Some(hex),
            ),
            (hex, Some(hex)),
            (
                "sha256:0080000000000000000000000000000000000000000000000000",
                Some("sha256:0000000000000000000000000000000000000000000000000000000000000001"),
            ),
            (
                "sha256:000000000000000000000000000000000000000000000000007z",
                Some("sha256:ff00000000000000000000000000000000000000000000000000000000000000"),
            ),
            (
                "sha256:1l4m7vbic09s97affwsgnsyhjr5z0ln10w7598ixvq8fm8bx4z5e",
                None,
            ),
            (
                "sha1:1l4m7vbic09s97affwsgnsyhjr5z0ln10w7598ixvq8fm8bx4z59",
                None,
            ),
            ("sha256-qXzSF6oO4d0jSuVwECwFv2QJvbZPc+fU", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                database_nar_hash(input).ok().as_deref(),
                *expected,
                "{input:?}"
            );
        }
    }

    fn registration(path: &str, references: &[&str]) -> Registration {
        Registration {
            path: path.into(),
            nar_hash: format!("sha256:{}", "ab".repeat(32)),
            nar_size: 120,
            references: references.iter().map(PathBuf::from).collect(),
            ca: None,
        }
    }

    #[test]
    fn databases_are_deterministic_and_queryable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [
            registration(
                "/nix/store/bbbb-app",
                &["/nix/store/aaaa-lib", "/nix/store/bbbb-app"],
            ),
            registration("/nix/store/aaaa-lib", &[]),
        ];
        let (one, two) = (dir.path().join("one.sqlite"), dir.path().join("two.sqlite"));
        write_database(&one, &paths).unwrap();
        let reversed: Vec<_> = paths.iter().rev().cloned().collect();
        write_database(&two, &reversed).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        assert!(!dir.path().join("one.sqlite-journal").exists());

        let db = rusqlite::Connection::open(&one).unwrap();
        let rows: Vec<(i64, String, i64)> = db
            .prepare("select id, path, registrationTime from ValidPaths order by id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "/nix/store/aaaa-lib".to_owned(), 0),
                (2, "/nix/store/bbbb-app".to_owned(), 0)
            ]
        );
        let refs: Vec<(i64, i64)> = db
            .prepare("select referrer, reference from Refs order by referrer, reference")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(refs, [(2, 1), (2, 2)]);
        let page_size: i64 = db.query_row("pragma page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(page_size, i64::from(PAGE_SIZE));
    }

    #[test]
    fn a_reference_outside_the_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_database(
            &dir.path().join("db.sqlite"),
            &[registration(
                "/nix/store/bbbb-app",
                &["/nix/store/cccc-gone"],
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("cccc-gone"), "{err}");
    }
}
