//! Where sync pages go from the CLI: NDJSON on stdout or a file, or the store;
//! with a progress line on a terminal.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use terapi_host::{PageSink, SyncPage};

/// Writes each record's JSON on its own line as pages arrive, so memory stays
/// flat however large the sync.
pub struct NdjsonSink {
    out: BufWriter<Box<dyn Write>>,
    pub last_checkpoint: Option<String>,
    pub broken_pipe: bool,
    /// Hashes of the ids written in this run: a record Gong lists twice
    /// (pages shift while they are read, windows overlap) is written once.
    /// Eight bytes a record.
    seen: std::collections::HashSet<u64>,
    hasher: std::hash::RandomState,
    pub written: u64,
    pub duplicates: u64,
}

impl NdjsonSink {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let out: Box<dyn Write> = match path {
            Some(path) => {
                Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => Box::new(std::io::stdout()),
        };
        Ok(NdjsonSink {
            out: BufWriter::with_capacity(256 * 1024, out),
            last_checkpoint: None,
            broken_pipe: false,
            seen: Default::default(),
            hasher: Default::default(),
            written: 0,
            duplicates: 0,
        })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing records")
    }
}

impl PageSink for NdjsonSink {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        use std::hash::BuildHasher as _;
        let mut kept = 0;
        let written = page
            .records
            .iter()
            .filter(|record| self.seen.insert(self.hasher.hash_one(&record.id)))
            .try_for_each(|record| {
                kept += 1;
                self.out.write_all(record.json.as_bytes())?;
                self.out.write_all(b"\n")
            })
            // Flushed per page: a checkpoint printed for resuming must never
            // be ahead of the records actually written.
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            self.broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
            return Err(format!("writing records: {e}"));
        }
        self.written += kept;
        self.duplicates += page.records.len() as u64 - kept;
        self.last_checkpoint = page.next_checkpoint.clone();
        Ok(())
    }
}

/// A sink that may keep fewer records than a page holds.
pub trait CountsRecords {
    fn records_kept(&self) -> u64;
}

impl CountsRecords for NdjsonSink {
    fn records_kept(&self) -> u64 {
        self.written
    }
}

/// Counts pages and records. On a terminal it keeps a progress bar (with
/// the listing's total and the time left, when the provider counts it);
/// piped, a plain line every few seconds.
pub struct Progress<S> {
    pub inner: S,
    label: String,
    started: Instant,
    pub pages: u64,
    pub records: u64,
    bar: Option<indicatif::ProgressBar>,
    /// The total of the listing being read and the records counted before
    /// it began: a sync over several listings (a workspace each) has a
    /// total per listing.
    listing: Option<(u64, u64)>,
    last_line: Instant,
    plain_every: std::time::Duration,
}

/// How often a piped run says how far it got, unless
/// `TERAPI_PROGRESS_INTERVAL_MS` says otherwise.
fn plain_every() -> std::time::Duration {
    let ms = std::env::var("TERAPI_PROGRESS_INTERVAL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    std::time::Duration::from_millis(ms)
}

impl<S> Progress<S> {
    pub fn new(inner: S, label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(counting_style());
            bar.set_message(label.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            inner,
            label: label.to_string(),
            started: Instant::now(),
            pages: 0,
            records: 0,
            bar,
            listing: None,
            last_line: Instant::now(),
            plain_every: plain_every(),
        }
    }

    /// Takes the bar down so the summary starts on a fresh line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The total the run is heading for, if the provider counted it.
    fn total(&self) -> Option<u64> {
        self.listing.map(|(base, total)| (base + total).max(self.records))
    }
}

fn counting_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {msg}: {pos} records, {per_sec}, {elapsed}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

fn total_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{msg} [{wide_bar}] {pos}/{len} records, {per_sec}, ETA {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl<S> Progress<S> {
    /// Counts a page that reached its destination.
    pub fn count(&mut self, page: &SyncPage) {
        self.count_kept(page.records.len() as u64, page.total_records);
    }

    fn count_kept(&mut self, records: u64, total: Option<u64>) {
        if let Some(total) = total
            && self.listing.is_none_or(|(_, known)| known != total)
        {
            self.listing = Some((self.records, total));
        }
        self.pages += 1;
        self.records += records;
        match &self.bar {
            Some(bar) => {
                if let Some(total) = self.total() {
                    if bar.length().is_none() {
                        bar.set_style(total_style());
                    }
                    bar.set_length(total);
                }
                bar.set_position(self.records);
            }
            None if self.last_line.elapsed() >= self.plain_every => {
                self.last_line = Instant::now();
                let seconds = self.started.elapsed().as_secs_f64().max(0.001);
                let rate = self.records as f64 / seconds;
                let left = match self.total() {
                    Some(total) if rate > 0.0 => {
                        format!(" of {total}, about {:.0} s left", total.saturating_sub(self.records) as f64 / rate)
                    }
                    Some(total) => format!(" of {total}"),
                    None => String::new(),
                };
                eprintln!("{}: {} records{left}, {} pages, {rate:.0} records/s", self.label, self.records, self.pages);
            }
            None => {}
        }
    }
}

impl<S: PageSink + CountsRecords> PageSink for Progress<S> {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        let before = self.inner.records_kept();
        self.inner.accept(page).await?;
        self.count_kept(self.inner.records_kept() - before, page.total_records);
        Ok(())
    }
}
