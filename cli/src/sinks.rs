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
}

impl NdjsonSink {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let out: Box<dyn Write> = match path {
            Some(path) => {
                Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => Box::new(std::io::stdout()),
        };
        Ok(NdjsonSink { out: BufWriter::with_capacity(256 * 1024, out), last_checkpoint: None, broken_pipe: false })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing records")
    }
}

impl PageSink for NdjsonSink {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        let written = page
            .records
            .iter()
            .try_for_each(|record| {
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
        self.last_checkpoint = page.next_checkpoint.clone();
        Ok(())
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
        self.pages += 1;
        self.records += page.records.len() as u64;
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

impl<S: PageSink> PageSink for Progress<S> {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        self.inner.accept(page).await?;
        self.count(page);
        Ok(())
    }
}
