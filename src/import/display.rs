//! What the operator sees: a progress bar on a terminal (resources, rate, ETA from the bytes
//! committed out of the bytes to load), a log line every few seconds otherwise, and the
//! summary at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

/// Refused resources listed in the summary; the rejects file has them all.
pub const REJECTS_SHOWN: usize = 50;

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Resources read (lines, Bundle entries), skipped types aside.
    pub read: u64,
    pub written: u64,
    /// Resources refused (every entry of a refused transaction Bundle counts).
    pub rejected: u64,
    /// Transaction Bundles refused as a whole.
    pub rejected_bundles: u64,
    /// Resources left out because this server does not serve their type, by type.
    pub skipped: BTreeMap<String, u64>,
    /// Bytes of the sources committed in this run.
    pub bytes: u64,
    pub files_already_done: u64,
    pub files_resumed: u64,
    pub elapsed: Duration,
    /// Time the writer waited for prepared resources (reading, parsing, validating, indexing
    /// are then the bound), and time it spent in database transactions.
    pub waiting: Duration,
    pub writing: Duration,
    /// Writer threads: `waiting` and `writing` are summed over them.
    pub writers: usize,
    /// The first refusals, `where: why`.
    pub reject_lines: Vec<String>,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.written as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported: {} read, {} written, {} rejected in {:.1} s ({:.0} resources/s)",
            self.read,
            self.written,
            self.rejected,
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        let over = if self.writers > 1 {
            format!(" (summed over {} writers)", self.writers)
        } else {
            String::new()
        };
        writeln!(
            f,
            "time: {:.1} s writing to the database, {:.1} s waiting for resources to be read \
             and validated{over}",
            self.writing.as_secs_f64(),
            self.waiting.as_secs_f64()
        )?;
        if self.files_already_done > 0 || self.files_resumed > 0 {
            writeln!(
                f,
                "files already imported (skipped): {}, resumed: {}",
                self.files_already_done, self.files_resumed
            )?;
        }
        if !self.skipped.is_empty() {
            let list: Vec<String> = self
                .skipped
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            writeln!(f, "not served, left out: {}", list.join(", "))?;
        }
        if self.rejected > 0 {
            if self.rejected_bundles > 0 {
                writeln!(f, "transaction Bundles refused: {}", self.rejected_bundles)?;
            }
            writeln!(f, "rejected:")?;
            for line in &self.reject_lines {
                writeln!(f, "  {line}")?;
            }
            if self.reject_lines.len() as u64 >= REJECTS_SHOWN as u64 {
                writeln!(f, "  ... (all of them in the --rejects file)")?;
            }
        }
        Ok(())
    }
}

/// The progress display.
pub struct Display {
    bar: bool,
    total_bytes: u64,
    started: Instant,
    last: Instant,
    drawn: bool,
}

impl Display {
    pub fn new(bar: bool, total_bytes: u64) -> Display {
        let now = Instant::now();
        Display {
            bar,
            total_bytes,
            started: now,
            last: now,
            drawn: false,
        }
    }

    /// After each commit: redraws the bar (at most ten times a second) or logs a line (every
    /// five seconds).
    pub fn update(&mut self, summary: &Summary) {
        let every = if self.bar {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = summary.written as f64 / secs;
        let fraction = if self.total_bytes == 0 {
            1.0
        } else {
            (summary.bytes as f64 / self.total_bytes as f64).min(1.0)
        };
        let eta = if fraction > 0.0 {
            Some(secs * (1.0 - fraction) / fraction)
        } else {
            None
        };
        let eta = eta.map_or("?".to_string(), |s| clock(s as u64));
        if self.bar {
            const WIDTH: usize = 30;
            let filled = (fraction * WIDTH as f64) as usize;
            let line = format!(
                "\r[{}{}] {:>3.0}% {} resources, {:.0}/s, {} rejected, ETA {eta}  ",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                fraction * 100.0,
                summary.written,
                rate,
                summary.rejected
            );
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
            self.drawn = true;
        } else {
            log::info!(
                "import: {:.0}% of the bytes, {} resources written ({:.0}/s), {} rejected, ETA {eta}",
                fraction * 100.0,
                summary.written,
                rate,
                summary.rejected
            );
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}

fn clock(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
