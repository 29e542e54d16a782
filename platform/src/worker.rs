//! A worker runs due syncs from the store. Several workers, in one process
//! or on many machines sharing one database, never claim the same sync
//! twice; a worker that dies leaves its leases to lapse, and another
//! resumes its syncs from their last committed page.
//!
//! Claiming is fair across provider tenants (whose request budgets the
//! syncs share): a worker first takes the longest-due sync of a tenant
//! that runs nothing, then of one that runs one, and so on up to
//! `per_tenant`; it skips tenants whose budget has a queue, since a sync
//! claimed there would only wait while others could run. Long runs yield
//! their slot between pages after `time_slice` when syncs wait. A worker
//! that already runs syncs waits a little before claiming more, so that
//! idle workers take the next ones and one worker's death stalls few.
//!
//! The store may go away (a database restart): the worker waits for it,
//! and its runs keep their pages until they can commit them.

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
    /// Told of every run this worker finishes. (Change webhooks do not
    /// need it: they are written to the store's outbox as runs end.)
    pub finished_runs: Option<tokio::sync::mpsc::UnboundedSender<FinishedRun>>,
    /// Syncs of one tenant run at once by the whole fleet (as far as
    /// claims racing on several workers allow).
    pub per_tenant: u32,
    /// See `StoredSyncOptions::time_slice`.
    pub time_slice: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
            exit_when_idle: false,
            finished_runs: None,
            per_tenant: 2,
            time_slice: Some(Duration::from_secs(60)),
        }
    }
}

/// A tenant whose next free request slot is further away than this is
/// busy: a sync claimed for it now would only wait.
const BUSY_BACKLOG_MS: u64 = 1_000;

/// How long a worker's registration (`worker:<owner>` in the store's
/// locks) lasts without renewal: a worker dead or frozen longer than this
/// no longer counts when the others share out the runs.
const WORKER_HEARTBEAT_TTL: Duration = Duration::from_secs(5);

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
    /// Runs that gave their slot to waiting syncs, to go on later.
    pub yielded: u64,
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
        self.store.schedule_sync(connection_id, sync, &model, due, false).await?;
        self.note_tenant(connection_id).await;
        Ok(())
    }

    /// Claims and runs due syncs, `concurrency` at a time, until `shutdown`
    /// resolves (then the running syncs abandon the page they are fetching,
    /// give up their leases at once and are marked `interrupted`, due again
    /// now for any worker) or, with `exit_when_idle`, until nothing is due
    /// or running. A store that is away is waited for, never fatal.
    pub async fn run_worker(
        self: Arc<Self>,
        options: WorkerOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, PlatformError> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let report = Arc::new(std::sync::Mutex::new(WorkerReport::default()));
        let mut running = JoinSet::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let mut store_backoff = Duration::ZERO;
        let mut pruned_at: Option<std::time::Instant> = None;
        let mut reaped_at: Option<std::time::Instant> = None;
        let registration = format!("worker:{}", self.owner);
        let mut over_share_since: Option<std::time::Instant> = None;
        let mut registered_at: Option<std::time::Instant> = None;
        tokio::pin!(shutdown);
        loop {
            // Alive, for the others' share (a missed renewal costs nothing
            // but a share computed a little off). Renewed at most once a
            // second: the loop also wakes each time a run ends.
            if registered_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                let heartbeat = WORKER_HEARTBEAT_TTL.max(options.poll_interval * 3);
                if let Err(e) = self.store.try_lock(&registration, &self.owner, heartbeat).await {
                    tracing::debug!("worker: registration not renewed ({e})");
                }
                registered_at = Some(std::time::Instant::now());
            }
            // Asked only when there is a slot to fill.
            let full = running.len() >= options.concurrency.max(1);
            let share = if full { None } else { self.fair_share(options.per_tenant).await };
            // Runs of processes on this machine that are gone (SIGKILL, OOM)
            // are taken over now, not when their leases lapse.
            if reaped_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                self.take_over_dead_local_runs().await;
                reaped_at = Some(std::time::Instant::now());
            }
            // The outbox is kept 7 days, webhooks configured or not.
            if pruned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                self.prune_events().await;
                pruned_at = Some(std::time::Instant::now());
            }
            let mut claimed_any = false;
            let mut store_trouble = false;
            while running.len() < options.concurrency.max(1) {
                // More than this worker's share of what can run now: let
                // idle workers take the next, so losing one worker stalls
                // only its share. If none does within a poll and a half,
                // claim anyway (they may be frozen, or full).
                if share.is_some_and(|share| running.len() >= share) {
                    let since = *over_share_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() < options.poll_interval.mul_f32(1.5) {
                        break;
                    }
                }
                let owner = format!("{}:{}", self.owner, RUNS.fetch_add(1, Ordering::Relaxed));
                let claim = match self.claim_fairly(&owner, options.per_tenant).await {
                    Ok(claim) => claim,
                    Err(e) => {
                        store_backoff = (store_backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                        tracing::warn!("worker: no claim ({e}); trying again in {} ms", store_backoff.as_millis());
                        store_trouble = true;
                        break;
                    }
                };
                store_backoff = Duration::ZERO;
                let Some((connection, sync)) = claim else { break };
                claimed_any = true;
                over_share_since = None;
                let platform = self.clone();
                let report = report.clone();
                let finished_runs = options.finished_runs.clone();
                let run_stop = stop.clone();
                let time_slice = options.time_slice;
                running.spawn(async move {
                    let stop = run_stop;
                    let mut counted = (0u64, 0u64);
                    let started_at_ms = terapi_host::limits::unix_ms();
                    let result = platform.run_claimed(&connection, &sync, owner, &mut counted, stop, time_slice).await;
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
                        // Paused between claim and start, and the sync went
                        // to another worker: nothing ran here.
                        Err(PlatformError::Store(terapi_store::StoreError::LeaseLost { .. })) if counted.0 == 0 => {
                            tracing::info!(
                                "sync `{sync}` of `{connection}` went to another worker before it began here"
                            );
                        }
                        Err(e) => {
                            report.failed += 1;
                            tracing::warn!("sync `{sync}` of `{connection}` failed: {e}");
                        }
                        Ok(run) if run.yielded => report.yielded += 1,
                        Ok(_) => {}
                    }
                });
            }
            if stop.is_cancelled() {
                break;
            }
            // Idle: nothing running here and nothing due anywhere (a sync a
            // dead worker held is still due, and is waited for).
            if running.is_empty()
                && !claimed_any
                && !store_trouble
                && options.exit_when_idle
                && matches!(self.store.due_now().await, Ok(0))
            {
                break;
            }
            let wait = if store_trouble { store_backoff } else { options.poll_interval };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Runs in flight stop now; each gives its lease up as it goes.
        stop.cancel();
        while running.join_next().await.is_some() {}
        if let Err(e) = self.store.unlock(&registration, &self.owner).await {
            tracing::debug!("worker: registration not removed ({e}); it lapses");
        }
        let report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(report)
    }

    /// Expires the leases held by processes of this machine that are no
    /// longer running, so their syncs can be claimed at once.
    async fn take_over_dead_local_runs(&self) {
        let leases = match self.store.live_leases().await {
            Ok(leases) => leases,
            Err(e) => return tracing::debug!("worker: leases not read ({e})"),
        };
        for (connection, sync, owner) in leases {
            if crate::owner_is_gone(&owner) {
                tracing::info!("sync `{sync}` of `{connection}`: {owner} is no longer running; taking over its lease");
                if let Err(e) = self.store.expire_lease(&connection, &sync, &owner).await {
                    tracing::warn!("sync `{sync}` of `{connection}`: the dead run's lease was not expired ({e})");
                }
            }
        }
    }

    /// This worker's share of the runs that can go on now (those running
    /// and those due that the per-tenant cap lets start), across the
    /// workers alive on the store; `None` when it is alone or the store
    /// cannot say.
    async fn fair_share(&self, per_tenant: u32) -> Option<usize> {
        let workers = self.store.live_locks("worker:").await.ok()?;
        if workers <= 1 {
            return None;
        }
        let load = self.store.tenant_load(BUSY_BACKLOG_MS).await.ok()?;
        let running: u32 = load.running.values().sum();
        let startable: u32 = load
            .waiting
            .iter()
            .map(|(tenant, waiting)| match tenant {
                Some(tenant) => {
                    (*waiting).min(per_tenant.max(1).saturating_sub(load.running.get(tenant).copied().unwrap_or(0)))
                }
                None => *waiting,
            })
            .sum();
        Some(((running + startable) as usize).div_ceil(workers as usize).max(1))
    }

    /// Claims the next sync fairly across tenants (see the module's text).
    pub async fn claim_fairly(
        &self,
        owner: &str,
        per_tenant: u32,
    ) -> Result<Option<(String, String)>, terapi_store::StoreError> {
        let load = self.store.tenant_load(BUSY_BACKLOG_MS).await?;
        let most = load.running.values().copied().max().unwrap_or(0);
        for level in 0..per_tenant.max(1) {
            let skip: Vec<String> = load
                .running
                .iter()
                .filter(|(_, running)| **running > level)
                .map(|(tenant, _)| tenant.clone())
                .chain(load.busy.iter().cloned())
                .collect();
            if let Some(claimed) = self.store.claim_due_sync(owner, self.lease_ttl(), &skip).await? {
                return Ok(Some(claimed));
            }
            // Every later level skips only the busy: the same claim again.
            if level >= most {
                break;
            }
        }
        Ok(None)
    }

    async fn finished_run(
        &self,
        connection_id: &str,
        sync: &str,
        started_at_ms: u64,
        result: &Result<crate::StoredSyncRun, PlatformError>,
    ) -> Option<FinishedRun> {
        // A connection deleted meanwhile has nobody left to tell.
        let provider = self.store.connection_summary(connection_id).await.ok()?.provider;
        let (model, _) = self.sync_info(&provider, sync).await.ok()?;
        let (resumed, error) = match result {
            // It goes on later; the run that ends it is told of.
            Ok(run) if run.yielded => return None,
            Ok(run) => (run.resumed, None),
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

    /// Runs a claimed sync.
    async fn run_claimed(
        &self,
        connection_id: &str,
        sync: &str,
        owner: String,
        counted: &mut (u64, u64),
        stop: tokio_util::sync::CancellationToken,
        time_slice: Option<Duration>,
    ) -> Result<crate::StoredSyncRun, PlatformError> {
        let session = terapi_store::retry_unavailable("opening a connection", crate::syncs::STORE_OUTAGE_WAIT, || {
            self.store.connection(connection_id)
        })
        .await?;
        let session = self.session_on(&session)?;
        let mut progress = |page: &SyncPage| {
            counted.0 += 1;
            counted.1 += page.records.len() as u64;
        };
        let options = StoredSyncOptions { stop: Some(stop), time_slice, ..StoredSyncOptions::default() };
        let holder = crate::syncs::LeaseHolder { owner, claimed: true };
        self.run_sync_as(&session, connection_id, sync, &options, &mut progress, holder).await
    }
}
