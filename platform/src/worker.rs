//! A worker runs due syncs from the store. Several workers, in one process
//! or on many machines sharing one database, never claim the same sync
//! twice; a worker that dies leaves its leases to lapse, and another
//! resumes its syncs from their last committed page.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use terapi_host::SyncPage;
use tokio::task::JoinSet;

use crate::{Platform, PlatformError, StoredSyncOptions};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Syncs run at once by this worker.
    pub concurrency: usize,
    /// How often to look for due syncs when there is nothing to do.
    pub poll_interval: Duration,
    /// Return once nothing is due and nothing is running (batch jobs, tests).
    pub exit_when_idle: bool,
    /// Told of every run this worker finishes (e.g. to send change webhooks).
    pub finished_runs: Option<tokio::sync::mpsc::UnboundedSender<FinishedRun>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
            exit_when_idle: false,
            finished_runs: None,
        }
    }
}

/// A run a worker finished, well or not.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub connection_id: String,
    pub provider: String,
    pub sync: String,
    pub model: String,
    /// Unix ms.
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// Whether it started from a checkpoint (an incremental run) rather
    /// than from the beginning (an initial or full run).
    pub resumed: bool,
    /// The error, scrubbed of secrets, if it failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub runs: u64,
    pub failed: u64,
    /// Runs stopped by the worker's shutdown, resumable at once.
    pub interrupted: u64,
    pub pages: u64,
    pub records: u64,
}

impl Platform {
    /// Marks `sync` of a saved connection due at `due_at_ms` (unix ms; now
    /// when `None`) for a worker to run.
    pub async fn schedule_sync(
        &self,
        connection_id: &str,
        sync: &str,
        due_at_ms: Option<u64>,
    ) -> Result<(), PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let (model, _) = self.sync_info(&provider, sync).await?;
        let due = due_at_ms.unwrap_or_else(terapi_host::limits::unix_ms);
        Ok(self.store.schedule_sync(connection_id, sync, &model, due, false).await?)
    }

    /// Claims and runs due syncs, `concurrency` at a time, until `shutdown`
    /// resolves (then the running syncs abandon the page they are fetching,
    /// give up their leases at once and are marked `interrupted`, due again
    /// now for any worker) or, with `exit_when_idle`, until nothing is due
    /// or running.
    pub async fn run_worker(
        self: Arc<Self>,
        options: WorkerOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, PlatformError> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let report = Arc::new(std::sync::Mutex::new(WorkerReport::default()));
        let mut running = JoinSet::new();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            let mut claimed_any = false;
            while running.len() < options.concurrency.max(1) {
                let owner = format!("{}:{}", self.owner, RUNS.fetch_add(1, Ordering::Relaxed));
                let Some((connection, sync)) = self.store.claim_due_sync(&owner, self.lease_ttl()).await? else {
                    break;
                };
                claimed_any = true;
                let platform = self.clone();
                let report = report.clone();
                let finished_runs = options.finished_runs.clone();
                let stop = stop.clone();
                running.spawn(async move {
                    let mut counted = (0u64, 0u64);
                    let started_at_ms = terapi_host::limits::unix_ms();
                    let result = platform.run_claimed(&connection, &sync, owner, &mut counted, stop).await;
                    if let Some(events) = finished_runs
                        && let Some(event) = platform.finished_run(&connection, &sync, started_at_ms, &result).await
                    {
                        let _ = events.send(event);
                    }
                    let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
                    report.runs += 1;
                    report.pages += counted.0;
                    report.records += counted.1;
                    match result {
                        Err(PlatformError::Interrupted { .. }) => report.interrupted += 1,
                        Err(e) => {
                            report.failed += 1;
                            tracing::warn!("sync `{sync}` of `{connection}` failed: {e}");
                        }
                        Ok(_) => {}
                    }
                });
            }
            // Idle: nothing running here and nothing due anywhere (a sync a
            // dead worker held is still due, and is waited for).
            if running.is_empty() && !claimed_any && options.exit_when_idle && self.store.due_now().await? == 0 {
                break;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(options.poll_interval) => {}
            }
        }
        // Runs in flight stop now; each gives its lease up as it goes.
        stop.cancel();
        while running.join_next().await.is_some() {}
        let report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(report)
    }

    async fn finished_run(
        &self,
        connection_id: &str,
        sync: &str,
        started_at_ms: u64,
        result: &Result<bool, PlatformError>,
    ) -> Option<FinishedRun> {
        // A connection deleted meanwhile has nobody left to tell.
        let provider = self.store.connection_summary(connection_id).await.ok()?.provider;
        let (model, _) = self.sync_info(&provider, sync).await.ok()?;
        let (resumed, error) = match result {
            Ok(resumed) => (*resumed, None),
            // Nothing to tell: it resumes at once, and its pages were told
            // of by nobody yet (the finished run will count them).
            Err(PlatformError::Interrupted { .. }) => return None,
            // Errors from the provider were scrubbed by the session; a
            // store or lease error carries no secret.
            Err(e) => (false, Some(e.to_string())),
        };
        Some(FinishedRun {
            connection_id: connection_id.to_string(),
            provider,
            sync: sync.to_string(),
            model,
            started_at_ms,
            finished_at_ms: terapi_host::limits::unix_ms(),
            resumed,
            error,
        })
    }

    /// Runs a claimed sync; `Ok(resumed)`.
    async fn run_claimed(
        &self,
        connection_id: &str,
        sync: &str,
        owner: String,
        counted: &mut (u64, u64),
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<bool, PlatformError> {
        let session = self.session(connection_id).await?;
        let mut progress = |page: &SyncPage| {
            counted.0 += 1;
            counted.1 += page.records.len() as u64;
        };
        let options = StoredSyncOptions { stop: Some(stop), ..StoredSyncOptions::default() };
        self.run_sync_as(&session, connection_id, sync, &options, &mut progress, owner).await.map(|run| run.resumed)
    }
}
