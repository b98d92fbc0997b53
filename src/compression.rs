//! Layer blob compression, computed at build time so that the registry digest
//! of every blob is known before anything is pushed.
//!
//! Compressed bytes are part of the file format: the same tar must always
//! compress to the same bytes, on any machine, whatever its number of cores.
//! The compressors are pinned by `Cargo.lock` (flate2 with its pure-Rust
//! zlib-rs backend, and zstd's reference library through zstd-sys) and take
//! their whole configuration from the constants below. Both run on every
//! core in a way that keeps the output independent of the number of
//! threads:
//!
//! * gzip is cut into blocks of [`GZIP_BLOCK_BYTES`] of tar, compressed
//!   independently (each primed with the 32 KiB before it, as pigz does)
//!   and joined into one deflate stream inside one gzip member: any gzip
//!   reader (Go's `compress/gzip` in containerd and Docker, zlib, umoci)
//!   reads it as an ordinary gzip file.
//! * zstd runs in its multithreaded mode with at least one worker, whose
//!   output zstd defines independently of the worker count.
//!
//! Their output does not depend on how the input is split into writes, nor
//! on flushes (a test pins that). A new compressor version may give other
//! bytes: that is why the image JSON records the executable that built it,
//! and why transports should be that executable.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use oci_spec::image::MediaType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// gzip level when none is given; pigz's and skopeo's default. Changing it
/// changes digests.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// zstd level when none is given; zstd's own default. Changing it changes
/// digests.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Bytes of tar per independently compressed gzip block: the unit of
/// parallel gzip. Changing it changes digests.
pub const GZIP_BLOCK_BYTES: usize = 1 << 20;

/// Bytes before a gzip block given to its compressor as the dictionary:
/// deflate's whole window, so blocks compress almost as well as one
/// stream. Changing it changes digests.
const GZIP_DICTIONARY_BYTES: usize = 32 * 1024;

/// The gzip header: magic, deflate, no flags, modification time 0, no
/// extra flags, operating system 255 ("unknown", so that the byte does not
/// depend on the building machine). Changing it changes digests.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Compressed blocks in flight per worker thread. Does not affect the
/// output.
const BLOCKS_PER_WORKER: usize = 2;

/// Most compression threads per blob.
const MAX_WORKERS: usize = 16;

/// Threads a compressor uses: every core this process may run on. Never
/// affects the output.
pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_WORKERS)
}

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

    /// A writer compressing into `out`, on [`worker_count`] threads.
    pub fn encoder<W: Write>(&self, out: W) -> Result<Encoder<W>> {
        self.encoder_with_workers(out, worker_count())
    }

    /// A writer compressing into `out` on `workers` threads (at least 1);
    /// the bytes are the same for every number.
    pub fn encoder_with_workers<W: Write>(&self, out: W, workers: usize) -> Result<Encoder<W>> {
        let workers = workers.max(1);
        Ok(match *self {
            Compression::None => Encoder::None(out),
            Compression::Gzip { level } => Encoder::Gzip(GzipEncoder::new(out, level, workers)),
            Compression::Zstd { level } => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(out, level).map_err(Error::Output)?;
                encoder
                    .multithread(u32::try_from(workers).unwrap_or(1))
                    .map_err(Error::Output)?;
                Encoder::Zstd(encoder)
            }
        })
    }
}

/// A compressing writer; [`Encoder::finish`] writes the trailer.
///
/// [`Write::flush`] passes the bytes compressed so far on to the inner
/// writer where it can without changing the compressed bytes: a flush
/// never ends a compressed block, so output depends only on the input.
pub enum Encoder<W: Write> {
    /// Passes bytes through.
    None(W),
    /// gzip, in parallel blocks.
    Gzip(GzipEncoder<W>),
    /// zstd, multithreaded.
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

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(out) => out.write_all(buf),
            Encoder::Gzip(encoder) => encoder.write_all(buf),
            Encoder::Zstd(encoder) => encoder.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(out) => out.flush(),
            Encoder::Gzip(encoder) => encoder.flush(),
            // zstd's flush ends a block, which would change the bytes.
            Encoder::Zstd(_) => Ok(()),
        }
    }
}

/// One block for a gzip worker.
struct GzipJob {
    data: Vec<u8>,
    /// The [`GZIP_DICTIONARY_BYTES`] of input before `data`.
    dictionary: Vec<u8>,
    /// The last block: ends the deflate stream instead of syncing it.
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// A gzip writer compressing [`GZIP_BLOCK_BYTES`] blocks on worker
/// threads, writing them in order into one gzip member (pigz's format,
/// with a fixed block size so that the bytes never depend on the threads).
pub struct GzipEncoder<W: Write> {
    out: Option<W>,
    /// The block being filled.
    block: Vec<u8>,
    /// The end of the previous block, for the next block's dictionary.
    tail: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    header_written: bool,
    jobs: Option<Sender<GzipJob>>,
    workers: Vec<thread::JoinHandle<()>>,
    /// Compressed blocks not yet written, in order.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
}

impl<W: Write> GzipEncoder<W> {
    fn new(out: W, level: u32, workers: usize) -> GzipEncoder<W> {
        let (jobs, queue) = channel::<GzipJob>();
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..workers)
            .map(|_| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || gzip_worker(&queue, level))
            })
            .collect::<Vec<_>>();
        GzipEncoder {
            out: Some(out),
            block: Vec::with_capacity(GZIP_BLOCK_BYTES),
            tail: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            header_written: false,
            jobs: Some(jobs),
            max_pending: workers.len() * BLOCKS_PER_WORKER,
            workers,
            pending: VecDeque::new(),
        }
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("present until finish")
    }

    /// Sends the current block to the workers.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            self.out().write_all(&GZIP_HEADER)?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK_BYTES));
        let dictionary = std::mem::take(&mut self.tail);
        let keep = data.len().min(GZIP_DICTIONARY_BYTES);
        self.tail.extend_from_slice(&data[data.len() - keep..]);
        let (reply, result) = sync_channel(1);
        self.jobs
            .as_ref()
            .expect("present until finish")
            .send(GzipJob {
                data,
                dictionary,
                last,
                reply,
            })
            .map_err(|_| io::Error::other("a gzip worker stopped"))?;
        self.pending.push_back(result);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest pending block and writes it.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = result
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.out().write_all(&compressed)
    }

    /// Ends the member: last block, CRC-32 and size; returns the inner
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = self.crc.clone().finalize();
        let size = self.size as u32; // ISIZE is the size modulo 2^32.
        let mut out = self.out.take().expect("present until finish");
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&size.to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for GzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_BLOCK_BYTES - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.block.len() == GZIP_BLOCK_BYTES {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Writes the blocks compressed so far; the block being filled stays
    /// open, so the bytes do not change.
    fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for GzipEncoder<W> {
    fn drop(&mut self) {
        self.pending.clear();
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A gzip worker: compresses blocks until the encoder is dropped.
fn gzip_worker(queue: &Mutex<Receiver<GzipJob>>, level: u32) {
    let mut compress = flate2::Compress::new(flate2::Compression::new(level), false);
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = compress_block(&mut compress, &job.data, &job.dictionary, job.last);
        // The encoder may be gone (an error elsewhere); nobody to tell.
        let _ = job.reply.send(result);
    }
}

/// Raw deflate of one block: primed with `dictionary`, ending with a sync
/// flush (byte-aligned, so the next block's stream can follow), or with
/// the final block when `last`.
fn compress_block(
    compress: &mut flate2::Compress,
    data: &[u8],
    dictionary: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    compress.reset();
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 1024);
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        let status = compress
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = (compress.total_in() - start) as usize == data.len();
        let done = match last {
            true => status == flate2::Status::StreamEnd,
            false => all_in && out.len() < out.capacity(),
        };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64 * 1024));
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

    fn compress(
        compression: Compression,
        data: &[u8],
        write_sizes: &[usize],
        workers: usize,
    ) -> Vec<u8> {
        let mut encoder = compression
            .encoder_with_workers(Vec::new(), workers)
            .unwrap();
        let mut rest = data;
        for size in write_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*size).min(rest.len()));
            encoder.write_all(now).unwrap();
            // Flushes must not change the bytes either.
            if now.len() == 7 {
                encoder.flush().unwrap();
            }
            rest = later;
        }
        encoder.finish().unwrap()
    }

    fn decompress(compression: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            Compression::Gzip { .. } => {
                io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
            }
            Compression::Zstd { .. } => out = zstd::stream::decode_all(bytes).unwrap(),
            Compression::None => out = bytes.to_vec(),
        }
        out
    }

    /// The compressed bytes are a file format. These digests were produced
    /// by this crate's pinned compressors; a failure means that a dependency
    /// update or a setting (`GZIP_BLOCK_BYTES`, the levels, the gzip
    /// header) changed compressed layers, so blobs built earlier would no
    /// longer match their recorded digests. The number of threads, the
    /// sizes of writes and flushes must not matter.
    #[test]
    fn compressed_bytes_are_pinned_and_independent_of_writes_and_threads() {
        let data = sample();
        let cases = [
            (
                Compression::Gzip { level: 6 },
                "sha256:8406f95a89a6fc3a50089e5f8ba7d9501d280ae7514136874f56f9392a23421d",
            ),
            (
                Compression::Zstd { level: 3 },
                "sha256:7c356a532dff25ba1b1f9a7bc9d826bd797633e42acf81f696ac61d6a408ba40",
            ),
        ];
        for (compression, pinned) in cases {
            let reference = compress(compression, &data, &[1 << 20], 1);
            for workers in [2, 4] {
                assert_eq!(
                    compress(compression, &data, &[1 << 20], workers),
                    reference,
                    "{compression:?} with {workers} threads"
                );
            }
            for sizes in [&[1usize, 7, 4096, 100_000, 3][..], &[512, 65536, 13]] {
                assert_eq!(
                    compress(compression, &data, sizes, 3),
                    reference,
                    "{compression:?} with writes of {sizes:?}"
                );
            }
            assert_eq!(decompress(compression, &reference), data, "{compression:?}");
            assert_eq!(sha256_of(&reference).to_string(), pinned, "{compression:?}");
        }
    }

    /// Parallel gzip is one ordinary gzip member, for any input length,
    /// including none and exact multiples of the block size.
    #[test]
    fn gzip_blocks_round_trip_at_every_boundary() {
        let data = sample();
        for len in [
            0,
            1,
            GZIP_BLOCK_BYTES - 1,
            GZIP_BLOCK_BYTES,
            2 * GZIP_BLOCK_BYTES + 5,
        ] {
            let compression = Compression::Gzip { level: 6 };
            let bytes = compress(compression, &data[..len], &[65536], 2);
            assert_eq!(&bytes[..10], &GZIP_HEADER);
            assert_eq!(decompress(compression, &bytes), &data[..len], "{len} bytes");
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
