//! The store's roles: one trait each, so a caller can depend on the part it
//! uses. `Store` is all of them.

use super::*;

/// The platform's state: every role below, and the request budgets
/// (`BudgetStore`), so every process sharing a store keeps the provider's
/// limits together. Every method is one transaction. A caller that needs
/// one role depends on that trait alone; `Store` is for those that need
/// the lot (the platform). Implemented for any type with every role.
pub trait Store:
    ConnectionStore
    + SyncRunStore
    + ScheduleStore
    + CoordinationStore
    + RecordStore
    + EventStore
    + GovernanceStore
    + ApiKeyStore
    + AsyncActionStore
    + ConnectSessionStore
    + BudgetStore
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: ConnectionStore
        + SyncRunStore
        + ScheduleStore
        + CoordinationStore
        + RecordStore
        + EventStore
        + GovernanceStore
        + ApiKeyStore
        + AsyncActionStore
        + ConnectSessionStore
        + BudgetStore
        + Send
        + Sync
{
}

/// Connections and their sealed credentials, and the secrets derived from the master key.
#[async_trait::async_trait]
pub trait ConnectionStore: Send + Sync {
    /// A secret for `purpose` derived from the master key (see
    /// [`MasterKey::derive`]): never in the database, the same on every
    /// server that holds the key.
    fn derived_secret(&self, purpose: &str) -> [u8; 32];
    /// Saves a new connection, with its `event` (Nango's auth webhook) in
    /// the same transaction; the caller verifies the credential first.
    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError>;
    /// Replaces the credential in place: id, config, checkpoints and records
    /// stay. `event` (Nango's auth webhook, `override`) is written with it.
    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError>;
    /// Saves renewed OAuth tokens in place, and merges `config` (e.g. the
    /// token response's `api_base_url_for_customer`) into the connection's.
    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
    /// Deletes the connection with its sync state and records.
    async fn delete_connection(&self, id: &str) -> Result<(), StoreError>;
    /// The connection with its decrypted credential, ready for the host.
    async fn connection(&self, id: &str) -> Result<Connection, StoreError>;
    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError>;
    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError>;
    async fn mark_verified(&self, id: &str) -> Result<(), StoreError>;
    /// Sets who a connection is for and its tags (JSON texts: an object or
    /// `None`, and an object of strings).
    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError>;
    /// Sets a connection's metadata (a JSON object's text, or `None`).
    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError>;
}

/// Sync runs under a lease: begin, commit page by page, finish, take over; their state and history.
#[async_trait::async_trait]
pub trait SyncRunStore: Send + Sync {
    /// Takes the lease and returns the checkpoint to start from (`None` when
    /// `full` or when the last run finished from scratch). Fails with
    /// `SyncRunning` while another holder's lease is live.
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError>;
    /// Commits a page's records and its next checkpoint together, and
    /// renews the lease; `LeaseLost` (and nothing saved) if it lapsed and
    /// another run took it.
    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError>;
    /// Records how a run ended and gives the lease up. The checkpoint stays
    /// as the last committed page set it. `event` (a change webhook) is
    /// written in the same transaction, with the run's start, whether it
    /// resumed, and, for `Done`, the records it added, updated and deleted;
    /// nothing is written if the lease was lost.
    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError>;
    /// Ends the lease `dead_owner` holds on a sync (a process known to be
    /// gone), so a new run can begin at once instead of waiting for it to
    /// lapse; `false` if that owner no longer holds it.
    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError>;
    /// At the end of a complete pass of a full sync: every record of
    /// `model` not seen since the pass started is gone upstream, and is
    /// marked deleted (kept, with `deleted_at`, so readers learn of it).
    /// Returns how many were marked.
    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError>;
    /// How many live records of `model` this pass has not seen (what
    /// `mark_unseen_deleted` would mark), and how many are live in all:
    /// the platform checks a deletion is believable before making it.
    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError>;
    /// Extends a held lease by its `ttl` (a run's heartbeat while a long
    /// page is fetched); `LeaseLost` if another holder has it now.
    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError>;
    /// The syncs under a live lease now: (connection, sync, owner).
    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError>;
    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError>;
    /// The runs of a connection's syncs, oldest first.
    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError>;
}

/// When syncs are due, and workers claiming them fairly across tenants.
#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Marks a sync due at `due_at_ms` (unix ms) for a worker to run. A run
    /// that finishes clears it (or, on a schedule, sets the next run); one
    /// that fails leaves it due a minute later. `reset`: the run starts
    /// from the beginning, not from the saved checkpoint.
    async fn schedule_sync(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        due_at_ms: u64,
        reset: bool,
    ) -> Result<(), StoreError>;
    /// Sets a sync's schedule: every `frequency_secs`, paused or not, next
    /// due at `due_at_ms` (`None`: not due). Each finished run of an
    /// unpaused schedule makes the sync due again `frequency_secs` later.
    async fn set_schedule(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        frequency_secs: u64,
        paused: bool,
        due_at_ms: Option<u64>,
    ) -> Result<(), StoreError>;
    /// How records of `model` changed at or after `since_ms` (unix ms), by
    /// their last change: added, updated, found deleted. The same records
    /// `records` lists with `modified_after_ms: Some(since_ms)`.
    async fn record_changes(
        &self,
        connection_id: &str,
        model: &str,
        since_ms: u64,
    ) -> Result<RecordChanges, StoreError>;
    /// Claims the longest-due sync whose lease is free or lapsed and whose
    /// tenant is not in `skip_tenants`, taking the lease for `owner`:
    /// workers on one store never claim the same sync twice, and a dead
    /// worker's sync is claimed again once its lease lapses. Returns
    /// (connection id, sync).
    async fn claim_due_sync(
        &self,
        owner: &str,
        ttl: Duration,
        skip_tenants: &[String],
    ) -> Result<Option<(String, String)>, StoreError>;
    /// Names the provider tenant (whose request budget they share) of a
    /// connection's syncs, for fair claiming.
    async fn set_sync_tenant(&self, connection_id: &str, tenant: &str) -> Result<(), StoreError>;
    /// Syncs running per tenant, and tenants whose budget has more than
    /// `backlog_ms` of requests queued.
    async fn tenant_load(&self, backlog_ms: u64) -> Result<TenantLoad, StoreError>;
    /// How many due syncs wait for a worker (due, lease free or lapsed).
    async fn waiting_syncs(&self) -> Result<u64, StoreError>;
    /// The queue's depth and lag, for `/metrics` and the dashboard.
    async fn sync_queue(&self) -> Result<SyncQueue, StoreError>;
    /// How many syncs are due now, claimable or not (a dead worker's stay
    /// due until its lease lapses and another claims them).
    async fn due_now(&self) -> Result<u64, StoreError>;
}

/// Coordination between the processes on one store: named locks and once-only claims.
#[async_trait::async_trait]
pub trait CoordinationStore: Send + Sync {
    /// Records `id` under `scope` until `keep_until_ms`: true the first
    /// time, false while it is kept (a replayed webhook delivery). Expired
    /// ids of the scope are forgotten on the way.
    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError>;
    /// Takes the named lock for `ttl` if it is free, lapsed, or already
    /// `owner`'s: one holder across every process on the store.
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives the lock up if `owner` holds it.
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError>;
    /// How many named locks whose names start with `prefix` are held now
    /// (`worker:`: the workers alive on the store).
    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError>;
}

/// Synced records, in change order.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync {
    /// Upserts records outside any sync (a webhook): a record delivered
    /// twice is stored once.
    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError>;
    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError>;
    /// Empties the payload (to `{}`) of up to `limit` records of `model` at
    /// or before the change position `until_cursor`, keeping what the
    /// store knows of them; a later sync restores a payload without
    /// counting it as a change. Returns (pruned, whether more remain).
    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError>;
}

/// The outbox of events (Nango's webhooks) and their deliveries.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Writes an event that stands alone (a refused token refresh).
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError>;
    /// Claims up to `limit` pending events whose next attempt is due and
    /// that no live claim holds (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
    /// oldest first, for `ttl`; counts the attempt.
    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError>;
    /// Logs an attempt and moves the event on, if `owner` still holds it.
    async fn record_delivery(&self, delivery: &DeliveryRecord, next: DeliveryNext) -> Result<(), StoreError>;
    /// Gives up `owner`'s claims (a process stopping): another process
    /// delivers them at once.
    async fn release_events(&self, owner: &str) -> Result<(), StoreError>;
    /// The newest `limit` events, newest first.
    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError>;
    /// The newest `limit` delivery attempts (of one event, or of all),
    /// newest first.
    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Deletes events created before `before_ms` that are done with
    /// (delivered, skipped, given up), or pending with nobody delivering,
    /// with their delivery log.
    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError>;
}

/// Tool decisions, governance documents (policies, toolsets, profiles, MCP users) and the audit log.
#[async_trait::async_trait]
pub trait GovernanceStore: Send + Sync {
    /// The decisions an operator made on `provider`'s tools: tool name →
    /// approved (`true`) or denied. One read, so a server can poll it.
    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError>;
    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError>;
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Every document of `kind` (deleted ones included, with body `null`).
    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError>;
    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError>;
    /// Writes `body` if the document is still at `expected_version` (0: it
    /// does not exist yet); `false` when another writer came first.
    async fn put_governance_doc(
        &self,
        kind: &str,
        key: &str,
        expected_version: i64,
        body: &str,
    ) -> Result<bool, StoreError>;
    /// A number that rises with every governance write.
    async fn governance_version(&self) -> Result<i64, StoreError>;
    /// The newest `limit` entries, oldest first.
    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Secret API keys for `terapi serve`, kept as SHA-256.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Saves a new secret API key by its SHA-256 (hex); the key itself is
    /// never stored.
    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError>;
    /// Whether a key with this SHA-256 exists (and is not revoked).
    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError>;
    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// The SHA-256 of the key whose public id is `id`, if it exists (the
    /// dashboard signs an operator's session cookie with it).
    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Revokes the key with this public id; `false` if there is none.
    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// Actions run in the background, and their results.
#[async_trait::async_trait]
pub trait AsyncActionStore: Send + Sync {
    /// Notes an action started in the background.
    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError>;
    /// Records how it ended (`Ok(output)` or `Err(error)`), with its event
    /// in the same transaction.
    async fn finish_async_action(
        &self,
        id: &str,
        result: Result<&str, &str>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError>;
    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError>;
}

/// Connect sessions: the links an end user saves a connection through.
#[async_trait::async_trait]
pub trait ConnectSessionStore: Send + Sync {
    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError>;
    /// The session with this token hash, expired or not (the caller checks).
    async fn connect_session(&self, token_sha256: &str) -> Result<Option<ConnectSession>, StoreError>;
    /// Claims a live, unused session for the connection `connection_id`
    /// is about to become, in one conditional update: `false` when it is
    /// expired, used, or claimed by a concurrent save, so one link makes at
    /// most one connection however many saves race.
    async fn claim_connect_session(
        &self,
        token_sha256: &str,
        connection_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Gives a claimed session back (the credential was refused), if it is
    /// still claimed for `connection_id`.
    async fn release_connect_session(&self, token_sha256: &str, connection_id: &str) -> Result<(), StoreError>;
}
