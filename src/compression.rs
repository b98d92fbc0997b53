//! Layer blob compression, computed at build time so that the registry digest
//! of every blob is known before anything is pushed.
//!
//! Compressed bytes are part of the file format: the same tar must always
//! compress to the same bytes, on any machine. The compressors are pinned by
//! `Cargo.lock` (flate2 with its pure-Rust miniz_oxide backend, and zstd's
//! reference library through zstd-sys), run single-threaded, and take their
//! whole configuration from the constants below. Their output does not
//! depend on how the input is split into writes (a test pins that). A new
//! compressor version may give other bytes: that is why the image JSON
//! records the executable that built it, and why transports should be that
//! executable.

use std::io::{self, Write};

use oci_spec::image::MediaType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// gzip level when none is given; pigz's and skopeo's default. Changing it
/// changes digests.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// zstd level when none is given; zstd's own default. Changing it changes
/// digests.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// gzip header modification time: none. Changing it changes digests.
const GZIP_MTIME: u32 = 0;

/// gzip header operating system: 255, "unknown", so that the byte does not
/// depend on the building machine. Changing it changes digests.
const GZIP_OS_UNKNOWN: u8 = 255;

/// How a layer blob is compressed. Serialised in layer objects as
/// `{"algorithm": "gzip", "level": 6}`; absent means uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase", deny_unknown_fields)]
pub enum Compression {
    /// The blob is the tar.
    #[default]
    None,
    /// gzip (deflate), levels 0–9.
    Gzip {
        /// Compression level.
        level: u32,
    },
    /// zstd, levels 1–19 (negative levels are faster modes).
    Zstd {
        /// Compression level.
        level: i32,
    },
}

impl Compression {
    /// Parses the Nix API's `compression` and `compressionLevel` arguments.
    pub fn from_name(name: &str, level: Option<i64>) -> Result<Compression> {
        let out_of_range = |range: &str| {
            Error::Invalid(format!(
                "compression level {level:?} is out of range for {name} ({range})"
            ))
        };
        match name {
            "none" if level.is_none() => Ok(Compression::None),
            "none" => Err(Error::Invalid("compression \"none\" takes no level".into())),
            "gzip" => match level {
                None => Ok(Compression::Gzip {
                    level: DEFAULT_GZIP_LEVEL,
                }),
                Some(level @ 0..=9) => Ok(Compression::Gzip {
                    level: level as u32,
                }),
                Some(_) => Err(out_of_range("0 to 9")),
            },
            "zstd" => match level {
                None => Ok(Compression::Zstd {
                    level: DEFAULT_ZSTD_LEVEL,
                }),
                Some(level @ -7..=19) if level != 0 => Ok(Compression::Zstd {
                    level: level as i32,
                }),
                Some(_) => Err(out_of_range("1 to 19, or -7 to -1 for fast modes")),
            },
            other => Err(Error::Invalid(format!(
                "unknown compression {other:?}: use \"gzip\", \"zstd\" or \"none\""
            ))),
        }
    }

    /// Whether the blob is the tar itself.
    pub fn is_none(&self) -> bool {
        *self == Compression::None
    }

    /// The OCI media type of a layer blob compressed this way.
    pub fn media_type(&self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip { .. } => MediaType::ImageLayerGzip,
            Compression::Zstd { .. } => MediaType::ImageLayerZstd,
        }
    }

    /// A writer compressing into `out`.
    pub fn encoder<W: Write>(&self, out: W) -> Result<Encoder<W>> {
        Ok(match *self {
            Compression::None => Encoder::None(out),
            Compression::Gzip { level } => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(GZIP_MTIME)
                    .operating_system(GZIP_OS_UNKNOWN)
                    .write(out, flate2::Compression::new(level)),
            ),
            Compression::Zstd { level } => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level).map_err(Error::Output)?)
            }
        })
    }
}

/// A compressing writer; [`Encoder::finish`] writes the trailer.
pub enum Encoder<W: Write> {
    /// Passes bytes through.
    None(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> Result<W> {
        match self {
            Encoder::None(out) => Ok(out),
            Encoder::Gzip(encoder) => encoder.finish().map_err(Error::Output),
            Encoder::Zstd(encoder) => encoder.finish().map_err(Error::Output),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(out) => out.write(buf),
            Encoder::Gzip(encoder) => encoder.write(buf),
            Encoder::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(out) => out.flush(),
            Encoder::Gzip(encoder) => encoder.flush(),
            Encoder::Zstd(encoder) => encoder.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256_of;

    /// Compressible, not trivial input: a counter mixed with a PRNG.
    fn sample() -> Vec<u8> {
        let mut x: u64 = 1;
        (0..3_000_000u64)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 7 < 3 {
                    (x >> 33) as u8
                } else {
                    (i % 251) as u8
                }
            })
            .collect()
    }

    fn compress(compression: Compression, data: &[u8], write_sizes: &[usize]) -> Vec<u8> {
        let mut encoder = compression.encoder(Vec::new()).unwrap();
        let mut rest = data;
        for size in write_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*size).min(rest.len()));
            encoder.write_all(now).unwrap();
            rest = later;
        }
        encoder.finish().unwrap()
    }

    /// The compressed bytes are a file format. These digests were produced
    /// by this crate's pinned compressors; a failure means that a dependency
    /// update or a setting changed compressed layers, so blobs built earlier
    /// would no longer match their recorded digests.
    #[test]
    fn compressed_bytes_are_pinned_and_independent_of_write_sizes() {
        let data = sample();
        let cases = [
            (
                Compression::Gzip { level: 6 },
                "sha256:813fdc43870cba71d2fd97e31f3ebc7caecd192e2459953756cf34fce4b78f0b",
            ),
            (
                Compression::Zstd { level: 3 },
                "sha256:a96970fb3bdfb3339f6a76fcc4c72740788313fe323f39eae0db4bdb98fbbf28",
            ),
        ];
        for (compression, pinned) in cases {
            let reference = compress(compression, &data, &[1 << 20]);
            for sizes in [&[1usize, 7, 4096, 100_000, 3][..], &[512, 65536, 13]] {
                assert_eq!(
                    compress(compression, &data, sizes),
                    reference,
                    "{compression:?} with writes of {sizes:?}"
                );
            }
            assert_eq!(sha256_of(&reference).to_string(), pinned, "{compression:?}");
        }
    }

    #[test]
    fn names_and_levels() {
        let cases: &[(&str, Option<i64>, Option<Compression>)] = &[
            ("gzip", None, Some(Compression::Gzip { level: 6 })),
            ("gzip", Some(9), Some(Compression::Gzip { level: 9 })),
            ("gzip", Some(10), None),
            ("zstd", None, Some(Compression::Zstd { level: 3 })),
            ("zstd", Some(0), None),
            ("zstd", Some(-3), Some(Compression::Zstd { level: -3 })),
            ("none", None, Some(Compression::None)),
            ("none", Some(1), None),
            ("xz", None, None),
        ];
        for (name, level, expected) in cases {
            assert_eq!(
                Compression::from_name(name, *level).ok(),
                *expected,
                "{name} {level:?}"
            );
        }
    }

    #[test]
    fn json_form() {
        let json = serde_json::to_string(&Compression::Gzip { level: 6 }).unwrap();
        assert_eq!(json, r#"{"algorithm":"gzip","level":6}"#);
        assert_eq!(
            serde_json::from_str::<Compression>(&json).unwrap(),
            Compression::Gzip { level: 6 }
        );
    }
}
