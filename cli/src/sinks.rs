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

/// Counts pages and records and, when stderr is a terminal, keeps one
/// progress line up to date; silent when piped.
pub struct Progress<S> {
    pub inner: S,
    label: String,
    started: Instant,
    pub pages: u64,
    pub records: u64,
    live: bool,
}

impl<S> Progress<S> {
    pub fn new(inner: S, label: &str) -> Self {
        Progress {
            inner,
            label: label.to_string(),
            started: Instant::now(),
            pages: 0,
            records: 0,
            live: std::io::stderr().is_terminal(),
        }
    }

    /// Ends the progress line so the summary starts on a fresh one.
    pub fn finish(&self) {
        if self.live && self.pages > 0 {
            eprintln!();
        }
    }
}

impl<S> Progress<S> {
    /// Counts a page that reached its destination.
    pub fn count(&mut self, page: &SyncPage) {
        self.count_kept(page.records.len() as u64);
    }

    fn count_kept(&mut self, records: u64) {
        self.pages += 1;
        self.records += records;
        if self.live {
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r{}: {} records, {} pages, {:.0} records/s   ",
                self.label,
                self.records,
                self.pages,
                self.records as f64 / seconds
            );
        }
    }
}

impl<S: PageSink + CountsRecords> PageSink for Progress<S> {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        let before = self.inner.records_kept();
        self.inner.accept(page).await?;
        self.count_kept(self.inner.records_kept() - before);
        Ok(())
    }
}
