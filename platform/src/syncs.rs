//! Syncs into the store: leased (never twice at once; a killed run lapses),
//! page by page (each page's records and checkpoint in one transaction),
//! resumable from the last committed page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use terapi_host::{PageSink, Session, SyncOptions, SyncPage, SyncRun};
use terapi_store::{RunOutcome, Store, StoreError, SyncLease, retry_unavailable};
use tokio_util::sync::CancellationToken;

use crate::{Platform, PlatformError};

#[derive(Debug, Clone)]
pub struct StoredSyncOptions {
    /// Start from the beginning, ignoring the saved checkpoint.
    pub full: bool,
    /// Start from this checkpoint instead of the saved one.
    pub checkpoint: Option<String>,
    pub sync: SyncOptions,
    /// Cancelled to stop the run (SIGINT, SIGTERM): the page being fetched
    /// is abandoned, the lease given up at once, the run marked
    /// `interrupted`, and `PlatformError::Interrupted` returned.
    pub stop: Option<CancellationToken>,
    /// A run that has held its slot this long gives it up between pages
    /// when other syncs wait for a worker (`RunOutcome::Yielded`), and goes
    /// on later from its checkpoint, so one long pass (Gong's per-user
    /// `flows` on a big company) cannot starve the rest. `None`: never.
    pub time_slice: Option<Duration>,
    /// Marks what a full pass did not see deleted even when the pass looks
    /// incomplete (fewer records than the provider's own total) or would
    /// delete more than `MASS_DELETION_SHARE` of the stored records. For an
    /// operator who checked that the records really are gone.
    pub allow_mass_deletion: bool,
}

/// A full pass may mark at most this share of the stored records deleted
/// (and always up to `MASS_DELETION_FLOOR`) unless the operator allows it:
/// a listing cut short upstream looks exactly like records gone, and an app
/// acting on `deleted` can do harm that is hard to undo.
pub const MASS_DELETION_SHARE: f64 = 0.25;
pub const MASS_DELETION_FLOOR: u64 = 20;

/// Why a full pass's deletions are held back, if they are: the pass saw
/// fewer records than the provider said it has, or would delete an
/// implausible share. Written once, for every store.
fn deletions_held_back(
    unseen: terapi_store::UnseenRecords,
    provider_total: Option<u64>,
    lease: &SyncLease,
) -> Option<String> {
    if unseen.unseen == 0 {
        return None;
    }
    let force =
        format!("`terapi sync run {} --connection {} --full --allow-mass-deletion`", lease.sync, lease.connection_id);
    let seen = unseen.live.saturating_sub(unseen.unseen);
    if let Some(total) = provider_total
        && seen < total
    {
        return Some(format!(
            "warning: {} records not seen this pass were kept, not marked deleted: the provider said its listing holds \
             {total} records but the pass saw {seen}, so the listing ended early. The next full pass checks again; run \
             {force} if they really are gone",
            unseen.unseen
        ));
    }
    let share = unseen.unseen as f64 / unseen.live.max(1) as f64;
    if unseen.unseen > MASS_DELETION_FLOOR && share > MASS_DELETION_SHARE {
        return Some(format!(
            "warning: {} of {} stored records ({:.0}%) were not seen this pass and were kept, not marked deleted: more \
             than {:.0}% at once looks like a listing cut short rather than records gone. Run {force} if they really \
             are gone",
            unseen.unseen,
            unseen.live,
            share * 100.0,
            MASS_DELETION_SHARE * 100.0
        ));
    }
    None
}

impl Default for StoredSyncOptions {
    fn default() -> Self {
        StoredSyncOptions {
            full: false,
            checkpoint: None,
            sync: SyncOptions { modified_since: None, backfill_days: None },
            stop: None,
            time_slice: None,
            allow_mass_deletion: false,
        }
    }
}

/// How long a run waits for an unavailable store (a database restart)
/// before it fails; its pages are kept meanwhile, and committed when the
/// store is back if the run still holds its lease.
pub(crate) const STORE_OUTAGE_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSyncRun {
    pub run: SyncRun,
    /// Whether the run started from a checkpoint (resumed or incremental).
    pub resumed: bool,
    /// Records of a full sync found gone upstream, marked deleted.
    pub deleted: u64,
    /// The run gave its slot to waiting syncs between pages; it goes on
    /// from its checkpoint when next claimed.
    pub yielded: bool,
    /// Deletions a full pass held back (see `MASS_DELETION_SHARE`), said
    /// as the operator should read it; also kept as the sync's last error.
    pub warning: Option<String>,
}

/// Told about every page once it is committed.
pub trait SyncProgress: Send {
    fn page_saved(&mut self, page: &SyncPage);
}

impl<F: FnMut(&SyncPage) + Send> SyncProgress for F {
    fn page_saved(&mut self, page: &SyncPage) {
        self(page)
    }
}

impl Platform {
    /// Runs `sync` of a saved connection to the end, committing page by
    /// page. On failure the pages already committed stay, the error is
    /// recorded in the sync state (scrubbed of secrets), and the next run
    /// resumes after them.
    pub async fn run_sync(
        &self,
        connection_id: &str,
        sync: &str,
        options: &StoredSyncOptions,
        progress: &mut dyn SyncProgress,
    ) -> Result<StoredSyncRun, PlatformError> {
        let session = self.session(connection_id).await?;
        self.run_sync_in(&session, connection_id, sync, options, progress).await
    }

    /// `run_sync` on a session the caller keeps (so an OAuth token it
    /// refreshes serves later calls too).
    pub async fn run_sync_in(
        &self,
        session: &Session,
        connection_id: &str,
        sync: &str,
        options: &StoredSyncOptions,
        progress: &mut dyn SyncProgress,
    ) -> Result<StoredSyncRun, PlatformError> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        // Each run is its own lease holder, even two in one process.
        let owner = format!("{}:run{}", self.owner, RUNS.fetch_add(1, Ordering::Relaxed));
        self.run_sync_as(session, connection_id, sync, options, progress, LeaseHolder { owner, claimed: false }).await
    }

    /// The model a provider's sync writes, and whether it is incremental.
    pub(crate) async fn sync_info(&self, provider: &str, sync: &str) -> Result<(String, bool), PlatformError> {
        self.describe(provider)
            .await?
            .syncs
            .iter()
            .find(|s| s.name == sync)
            .map(|s| (s.model.clone(), s.incremental))
            .ok_or_else(|| PlatformError::NoSync { provider: provider.to_string(), sync: sync.to_string() })
    }

    /// A run under the lease of `owner` (a worker's claim, or a fresh one).
    pub(crate) async fn run_sync_as(
        &self,
        session: &Session,
        connection_id: &str,
        sync: &str,
        options: &StoredSyncOptions,
        progress: &mut dyn SyncProgress,
        holder: LeaseHolder,
    ) -> Result<StoredSyncRun, PlatformError> {
        let LeaseHolder { owner, claimed } = holder;
        let store = self.store.as_ref();
        let provider =
            retry_unavailable("reading the connection", STORE_OUTAGE_WAIT, || store.connection_summary(connection_id))
                .await?
                .provider;
        let (model, incremental) = self.sync_info(&provider, sync).await?;
        let lease = SyncLease {
            connection_id: connection_id.to_string(),
            sync: sync.to_string(),
            owner,
            ttl: self.lease_ttl(),
            claimed,
        };
        let begin = || {
            retry_unavailable("starting a run", STORE_OUTAGE_WAIT, || store.begin_sync(&lease, &model, options.full))
        };
        let saved = match begin().await {
            // A run killed on this machine left its lease behind; its
            // process is gone, so nothing can be running: take over now
            // rather than when the lease lapses.
            Err(StoreError::SyncRunning { owner, .. }) if crate::owner_is_gone(&owner) => {
                tracing::info!(
                    "sync `{sync}` of `{connection_id}`: {owner} is no longer running; taking over its lease"
                );
                self.store.expire_lease(connection_id, sync, &owner).await?;
                begin().await?
            }
            other => other?,
        };
        if let Some(tenant) = session.tenant() {
            // For fair claiming only: a failure here costs nothing else.
            if let Err(e) = store.set_sync_tenant(connection_id, tenant).await {
                tracing::debug!("sync `{sync}` of `{connection_id}`: tenant not recorded: {e}");
            }
        }
        let start = options.checkpoint.clone().or(saved);
        let resumed = start.is_some();
        let mut sink = StoreSink {
            store,
            lease: &lease,
            model: &model,
            progress,
            started: Instant::now(),
            last_sign_of_life: Instant::now(),
            time_slice: options.time_slice,
            provider_total: None,
        };
        let run = terapi_host::run_sync(session, sync, start, &options.sync, &mut sink);
        // While a page is fetched (which can take long: rate limits,
        // retries), the lease is renewed, so only a dead run loses it. A
        // store that is away is waited for: only a lease another owner
        // holds now stops the run.
        let heartbeat = async {
            loop {
                tokio::time::sleep(lease.ttl / 3).await;
                match self.store.renew_lease(&lease).await {
                    Err(lost @ StoreError::LeaseLost { .. }) => return lost,
                    Err(e) => {
                        tracing::warn!("sync `{sync}` of `{connection_id}`: lease not renewed ({e}); trying again")
                    }
                    Ok(()) => {}
                }
            }
        };
        let stopped = async {
            match &options.stop {
                Some(stop) => stop.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let finish = |outcome: RunOutcome<'static>, event: Option<terapi_store::NewEvent>| {
            let lease = &lease;
            async move {
                retry_unavailable("ending a run", STORE_OUTAGE_WAIT, || {
                    store.finish_sync(lease, outcome, event.as_ref())
                })
                .await
            }
        };
        let began = Instant::now();
        let observed = |outcome: &str, records: u64| {
            let labels = [("provider", provider.as_str()), ("sync", sync), ("outcome", outcome)];
            terapi_metrics::count(
                "terapi_sync_runs_total",
                "Sync runs that ended, by provider, sync and outcome.",
                &labels,
                1,
            );
            terapi_metrics::observe(
                "terapi_sync_run_duration_seconds",
                "How long sync runs took, by provider, sync and outcome.",
                &labels,
                began.elapsed().as_secs_f64(),
            );
            terapi_metrics::count(
                "terapi_sync_records_total",
                "Records sync runs saved, by provider and sync.",
                &[("provider", provider.as_str()), ("sync", sync)],
                records,
            );
        };
        let outcome = tokio::select! {
            outcome = run => outcome,
            lost = heartbeat => {
                tracing::error!("sync `{sync}` of `{connection_id}` stopped: {lost}");
                // Only ends this run's history (as `lost`): the lease and
                // the sync are another run's now.
                let reason = lost.to_string();
                let _ = self.store.finish_sync(&lease, RunOutcome::Failed(&reason), None).await;
                return Err(lost.into());
            }
            // The page in flight is dropped: committed pages are whole (a
            // commit is one transaction), the rest is fetched again.
            () = stopped => {
                let reason = "interrupted (SIGINT or SIGTERM); resumes from the last saved page";
                // A stopping process does not wait out a store outage: the
                // lease lapses by itself.
                self.store.finish_sync(&lease, RunOutcome::Interrupted(reason), None).await?;
                tracing::info!("sync `{sync}` of `{connection_id}` interrupted; its lease is released");
                return Err(PlatformError::Interrupted { connection: connection_id.into(), sync: sync.into() });
            }
        };
        match &outcome {
            Ok(run) if !run.done => observed("yielded", run.records),
            Ok(run) => observed("done", run.records),
            Err(_) => observed("failed", 0),
        }
        // One line per run, with fields a log pipeline can index
        // (`--log-format json`); a failure's error is scrubbed first.
        let (outcome_name, pages, records) = match &outcome {
            Ok(run) => (if run.done { "done" } else { "yielded" }, run.pages, run.records),
            Err(_) => ("failed", 0, 0),
        };
        let error = outcome.as_ref().err().map(|e| session.redact(&e.to_string()));
        tracing::info!(
            connection = connection_id,
            provider = provider.as_str(),
            sync,
            outcome = outcome_name,
            pages,
            records,
            resumed,
            duration_ms = began.elapsed().as_millis() as u64,
            owner = lease.owner.as_str(),
            error = error.as_deref().unwrap_or(""),
            "sync run ended"
        );
        match outcome {
            Ok(run) if !run.done => {
                finish(RunOutcome::Yielded, None).await?;
                tracing::debug!("sync `{sync}` of `{connection_id}` yielded its slot after {} pages", run.pages);
                Ok(StoredSyncRun { run, resumed, deleted: 0, yielded: true, warning: None })
            }
            Ok(run) => {
                // A full sync that reached its end from a pass that began at
                // the beginning has seen everything Gong has: what it did
                // not see is gone upstream. (A pass given a checkpoint by
                // hand may have skipped records, so it deletes nothing.)
                let (deleted, warning) = if !incremental && options.checkpoint.is_none() {
                    let unseen = retry_unavailable("counting records not seen", STORE_OUTAGE_WAIT, || {
                        store.unseen_records(&lease, &model)
                    })
                    .await?;
                    match deletions_held_back(unseen, sink.provider_total, &lease)
                        .filter(|_| !options.allow_mass_deletion)
                    {
                        Some(warning) => {
                            tracing::warn!("sync `{sync}` of `{connection_id}`: {warning}");
                            (0, Some(warning))
                        }
                        None => {
                            let deleted = retry_unavailable("marking deleted records", STORE_OUTAGE_WAIT, || {
                                store.mark_unseen_deleted(&lease, &model)
                            })
                            .await?;
                            (deleted, None)
                        }
                    }
                } else {
                    (0, None)
                };
                let event = crate::events::sync_event(connection_id, &provider, sync, &model, None);
                let outcome = match &warning {
                    Some(warning) => RunOutcome::Warned(warning),
                    None => RunOutcome::Done,
                };
                retry_unavailable("ending a run", STORE_OUTAGE_WAIT, || {
                    store.finish_sync(&lease, outcome, Some(&event))
                })
                .await?;
                Ok(StoredSyncRun { run, resumed, deleted, yielded: false, warning })
            }
            Err(error) => {
                let message = session.redact(&error.to_string());
                let event = crate::events::sync_event(connection_id, &provider, sync, &model, Some(&message));
                let recorded = retry_unavailable("ending a run", STORE_OUTAGE_WAIT, || {
                    store.finish_sync(&lease, RunOutcome::Failed(&message), Some(&event))
                })
                .await;
                if let Err(e) = recorded {
                    tracing::error!("sync `{sync}` of `{connection_id}`: its failure could not be recorded: {e}");
                }
                Err(error.into())
            }
        }
    }
}

/// Who a run's lease is for: a worker's claim (`claimed`: it may begin
/// only while the claim holds), or a run begun directly.
pub(crate) struct LeaseHolder {
    pub owner: String,
    pub claimed: bool,
}

struct StoreSink<'a> {
    store: &'a dyn Store,
    lease: &'a SyncLease,
    model: &'a str,
    progress: &'a mut dyn SyncProgress,
    started: Instant,
    /// The last time the store confirmed the lease (a commit or a check).
    last_sign_of_life: Instant,
    time_slice: Option<Duration>,
    /// The largest total the provider reported for a listing of this run.
    provider_total: Option<u64>,
}

impl PageSink for StoreSink<'_> {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        // A store that is away (restarting) is waited for with the page in
        // hand; the commit checks the lease, so a page is never committed
        // by a run that lost it.
        retry_unavailable("committing a page", STORE_OUTAGE_WAIT, || {
            self.store.commit_page(self.lease, self.model, page)
        })
        .await
        .map_err(|e| e.to_string())?;
        self.last_sign_of_life = Instant::now();
        self.provider_total = self.provider_total.max(page.total_records);
        self.progress.page_saved(page);
        Ok(())
    }

    async fn before_page(&mut self) -> Result<bool, String> {
        // A process that was paused (SIGSTOP, a frozen VM) may wake long
        // after its lease lapsed and another run took the sync over: it
        // checks before sending anything more.
        if self.last_sign_of_life.elapsed() > self.lease.ttl / 3 {
            retry_unavailable("checking the lease", STORE_OUTAGE_WAIT, || self.store.renew_lease(self.lease))
                .await
                .map_err(|e| e.to_string())?;
            self.last_sign_of_life = Instant::now();
        }
        if let Some(slice) = self.time_slice
            && self.started.elapsed() >= slice
        {
            match self.store.waiting_syncs().await {
                Ok(waiting) if waiting > 0 => return Ok(false),
                Ok(_) => {}
                Err(e) => tracing::debug!("waiting syncs not counted ({e}); going on"),
            }
        }
        Ok(true)
    }
}

impl Platform {
    /// The newest `limit` sync runs, newest first, of one connection or of
    /// every one (`terapi runs list`, `GET /sync/runs`).
    pub async fn recent_runs(
        &self,
        connection_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<terapi_store::SyncRunRecord>, PlatformError> {
        let connections = match connection_id {
            Some(id) => vec![self.store.connection_summary(id).await?.id],
            None => self.store.connections().await?.into_iter().map(|c| c.id).collect(),
        };
        let mut runs = Vec::new();
        for id in &connections {
            runs.extend(self.store.sync_runs(id).await?);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.started_at_ms));
        runs.truncate(limit);
        Ok(runs)
    }
}
