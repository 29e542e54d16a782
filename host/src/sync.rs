//! Drives a sync page by page. The host, not the guest, owns the loop, so each
//! page and its checkpoint reach the sink (stdout, a file, a store) before the
//! next page is asked for: a sync stopped at any point resumes from the last
//! page the sink accepted.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use crate::error::{Error, SyncFailure};
use crate::runtime::{Session, SyncOptions, SyncPage};

/// Where pages go. A sink that persists should commit a page's records and
/// its `next_checkpoint` together.
pub trait PageSink {
    fn accept(&mut self, page: &SyncPage) -> impl Future<Output = Result<(), String>>;

    /// Asked before each page after the first is fetched: `Ok(true)` goes
    /// on, `Ok(false)` stops here cleanly (the run returns, not done, with
    /// the checkpoint to resume from), an error fails the run. A sink that
    /// holds a lease checks it here, so a process that was paused past its
    /// lease sends nothing more; a scheduler yields a long run's slot.
    fn before_page(&mut self) -> impl Future<Output = Result<bool, String>> {
        std::future::ready(Ok(true))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRun {
    pub pages: u64,
    pub records: u64,
    /// What the last page returned; where a later run starts from.
    pub checkpoint: Option<String>,
    pub done: bool,
}

/// Runs `sync` from `start` (a checkpoint of an earlier run, or `None` for the
/// beginning) until the provider says it is done.
pub async fn run_sync(
    session: &Session,
    sync: &str,
    start: Option<String>,
    options: &SyncOptions,
    sink: &mut impl PageSink,
) -> Result<SyncRun, Error> {
    // A provider whose cursor repeats would loop forever; remember hashes of
    // every checkpoint seen (8 bytes a page) and stop on the first repeat.
    let hasher = RandomState::new();
    let mut seen: HashSet<u64> = HashSet::new();
    if let Some(start) = &start {
        seen.insert(hasher.hash_one(start));
    }
    let mut run = SyncRun { checkpoint: start, ..SyncRun::default() };
    let sent_before = session.requests_sent();
    let budget = session.runtime_config().max_requests_per_run;
    loop {
        let sent = session.requests_sent() - sent_before;
        if let Some(budget) = budget
            && sent >= budget
        {
            return Err(SyncFailure::RequestBudget { sync: sync.into(), sent, budget, page: run.pages + 1 }.into());
        }
        let number = run.pages + 1;
        if run.pages > 0 {
            let go_on = sink.before_page().await.map_err(|message| SyncFailure::Sink {
                sync: sync.into(),
                page: number,
                message,
            })?;
            if !go_on {
                return Ok(run);
            }
        }
        let page = session.run_sync_page(sync, run.checkpoint.as_deref(), options).await?;
        if !page.done {
            match &page.next_checkpoint {
                None => {
                    return Err(SyncFailure::MissingCheckpoint { sync: sync.into(), page: number }.into());
                }
                Some(next) if !seen.insert(hasher.hash_one(next)) => {
                    return Err(SyncFailure::RepeatingCheckpoint { sync: sync.into(), page: number }.into());
                }
                Some(_) => {}
            }
        }
        sink.accept(&page).await.map_err(|message| SyncFailure::Sink { sync: sync.into(), page: number, message })?;
        run.pages = number;
        run.records += page.records.len() as u64;
        run.checkpoint = page.next_checkpoint;
        if page.done {
            run.done = true;
            return Ok(run);
        }
    }
}
