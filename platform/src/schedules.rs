//! Sync schedules: every (connection, sync) runs at a frequency (the
//! component's default, changeable per connection), can be paused and
//! started, and can be triggered now. Schedules live in the store, so they
//! survive restarts and every worker on the store sees them.

use terapi_store::SyncState;

use crate::{Platform, PlatformError};

/// A schedule as an API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub frequency_secs: u64,
    /// Whether the frequency is the component's default.
    pub default_frequency: bool,
    pub paused: bool,
    /// Never started (no schedule yet), as opposed to paused.
    pub started: bool,
    pub state: Option<SyncState>,
}

impl Platform {
    /// The component's default frequency for `sync` of `provider`.
    pub async fn default_frequency(&self, provider: &str, sync: &str) -> Result<u64, PlatformError> {
        self.describe(provider)
            .await?
            .syncs
            .iter()
            .find(|s| s.name == sync)
            .map(|s| u64::from(s.frequency_secs.max(1)))
            .ok_or_else(|| PlatformError::NoSync { provider: provider.to_string(), sync: sync.to_string() })
    }

    /// Runs `sync` of a connection as soon as a worker is free, once; the
    /// schedule (if any) goes on after it. `reset`: from the beginning.
    pub async fn trigger_sync(&self, connection_id: &str, sync: &str, reset: bool) -> Result<(), PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let (model, _) = self.sync_info(&provider, sync).await?;
        let now = terapi_host::limits::unix_ms();
        self.store.schedule_sync(connection_id, sync, &model, now, reset).await?;
        self.note_tenant(connection_id).await;
        Ok(())
    }

    /// Names the connection's tenant on its syncs, so that workers claim
    /// them fairly from their first run on. Costs nothing if it fails.
    pub(crate) async fn note_tenant(&self, connection_id: &str) {
        let tenant = match self.session(connection_id).await {
            Ok(session) => session.tenant().map(str::to_string),
            Err(_) => None,
        };
        if let Some(tenant) = tenant
            && let Err(e) = self.store.set_sync_tenant(connection_id, &tenant).await
        {
            tracing::debug!("`{connection_id}`: tenant not recorded: {e}");
        }
    }

    /// Starts (or resumes) the schedule: the sync runs now, then every
    /// frequency. Starting a running schedule changes nothing.
    pub async fn start_schedule(&self, connection_id: &str, sync: &str) -> Result<(), PlatformError> {
        let info = self.schedule(connection_id, sync).await?;
        if info.started && !info.paused {
            return Ok(());
        }
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let (model, _) = self.sync_info(&provider, sync).await?;
        let now = terapi_host::limits::unix_ms();
        self.store.set_schedule(connection_id, sync, &model, info.frequency_secs, false, Some(now)).await?;
        self.note_tenant(connection_id).await;
        Ok(())
    }

    /// Pauses the schedule: a run under way finishes its pass, and nothing
    /// runs the sync again until it is started (or triggered).
    pub async fn pause_schedule(&self, connection_id: &str, sync: &str) -> Result<(), PlatformError> {
        let info = self.schedule(connection_id, sync).await?;
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let (model, _) = self.sync_info(&provider, sync).await?;
        Ok(self.store.set_schedule(connection_id, sync, &model, info.frequency_secs, true, None).await?)
    }

    /// Sets how often the sync runs for this connection (`None`: back to the
    /// component's default). The next run moves to one frequency after the
    /// last one ended (or now, if that is past). Returns the frequency.
    pub async fn set_frequency(
        &self,
        connection_id: &str,
        sync: &str,
        frequency_secs: Option<u64>,
    ) -> Result<u64, PlatformError> {
        let info = self.schedule(connection_id, sync).await?;
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let (model, _) = self.sync_info(&provider, sync).await?;
        let frequency = match frequency_secs {
            Some(secs) => secs.max(1),
            None => self.default_frequency(&provider, sync).await?,
        };
        let due = if info.paused || !info.started {
            info.state.as_ref().and_then(|s| s.due_at_ms)
        } else {
            let now = terapi_host::limits::unix_ms();
            let last = info.state.as_ref().and_then(|s| s.last_finished_at).map(|t| t * 1000).unwrap_or(now);
            Some((last + frequency * 1000).max(now))
        };
        self.store.set_schedule(connection_id, sync, &model, frequency, info.paused, due).await?;
        Ok(frequency)
    }

    /// The schedule of `sync` for a connection, with its state.
    pub async fn schedule(&self, connection_id: &str, sync: &str) -> Result<ScheduleInfo, PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let default = self.default_frequency(&provider, sync).await?;
        let state = self.store.sync_states(connection_id).await?.into_iter().find(|s| s.sync == sync);
        let frequency = state.as_ref().and_then(|s| s.frequency_secs);
        Ok(ScheduleInfo {
            frequency_secs: frequency.unwrap_or(default),
            default_frequency: frequency.is_none_or(|f| f == default),
            paused: state.as_ref().is_some_and(|s| s.paused),
            started: frequency.is_some(),
            state,
        })
    }
}
