//! What a push tells its user, on standard error: on a terminal, a bar per
//! blob being uploaded and one for the whole image (indicatif, which writes
//! each frame unbuffered, at most 20 times a second); otherwise one line
//! per blob; with `--quiet`, nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Error;
use crate::transport::human_size;

/// Length of the digest prefix a bar shows.
const SHORT_DIGEST: usize = 12;

/// Reports a push's progress.
pub(crate) struct Reporter {
    mode: Mode,
}

enum Mode {
    Quiet,
    Lines,
    Bars {
        multi: MultiProgress,
        total: ProgressBar,
    },
}

impl Reporter {
    /// A reporter for a push of `total_bytes`, in the mode standard error
    /// calls for.
    pub fn new(quiet: bool, total_bytes: u64) -> Reporter {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(total_bytes));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            total.set_prefix("total");
            Mode::Bars { multi, total }
        } else {
            Mode::Lines
        };
        Reporter { mode }
    }

    /// A reporter printing lines only, even on a terminal (pulls have no
    /// bars).
    pub fn lines(quiet: bool) -> Reporter {
        Reporter {
            mode: if quiet { Mode::Quiet } else { Mode::Lines },
        }
    }

    /// Prints a line (above the bars, if any).
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{text}"),
            Mode::Bars { multi, .. } => {
                // A terminal that went away is not worth failing a push.
                let _ = multi.println(text);
            }
        }
    }

    /// A bar for a blob about to be uploaded.
    pub fn blob(&self, kind: &str, digest: &str, size: u64) -> BlobBar {
        match &self.mode {
            Mode::Bars { multi, total } => {
                let bar = multi.insert_before(total, ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>20} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
                bar.set_prefix(format!("{kind} {}", &hex[..hex.len().min(SHORT_DIGEST)]));
                BlobBar {
                    bar: Some(bar),
                    total: Some(total.clone()),
                }
            }
            _ => BlobBar {
                bar: None,
                total: None,
            },
        }
    }

    /// Counts a blob that needs no upload towards the total.
    pub fn skipped(&self, size: u64) {
        if let Mode::Bars { total, .. } = &self.mode {
            total.inc(size);
        }
    }

    /// Reports that `operation` failed and will be tried again.
    pub fn retrying(
        &self,
        operation: &str,
        error: &Error,
        delay: Duration,
        attempt: u32,
        retries: u32,
    ) {
        self.line(&format!(
            "retrying {operation} in {:.1} s (attempt {attempt} of {}): {error}",
            delay.as_secs_f64(),
            retries + 1
        ));
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Mode::Bars { total, .. } = &self.mode {
            total.finish_and_clear();
        }
    }
}

/// The bar of one blob; counts bytes as they are read for the upload.
#[derive(Clone)]
pub(crate) struct BlobBar {
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
}

impl BlobBar {
    /// Counts `bytes` more sent.
    pub fn inc(&self, bytes: u64) {
        if let (Some(bar), Some(total)) = (&self.bar, &self.total) {
            bar.inc(bytes);
            total.inc(bytes);
        }
    }

    /// Starts the blob over (a retry).
    pub fn restart(&self) {
        if let (Some(bar), Some(total)) = (&self.bar, &self.total) {
            total.set_position(total.position().saturating_sub(bar.position()));
            bar.reset();
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1.234` → `1.2 s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// `12.3 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    human_size(bytes)
}
