//! Where the platform keeps its state, behind one trait ([`Store`]) so that
//! one machine (SQLite, [`SqliteStore`]) and a fleet (PostgreSQL) look the
//! same to the platform layer.
//!
//! - Connections, with their secrets encrypted at rest (XChaCha20-Poly1305,
//!   bound to the connection id) under a master key that never enters the
//!   database.
//! - Sync state per connection and sync: the checkpoint to resume from, the
//!   last run, the last error, and a lease so that a sync never runs twice at
//!   once and a killed run does not stay "running".
//! - Records per connection and model, upserted by id. A page's records and
//!   its checkpoint commit in one transaction, so a sync stopped anywhere
//!   resumes from the last committed page, losing and duplicating nothing.
//! - Request budgets per provider tenant, one atomic statement per request,
//!   so every process on the store keeps the provider's limits together.
//! - Tool policy and the audit log of tool calls.

mod crypto;
mod roles;
mod schema;
pub mod sql;
mod sqlite;
pub mod time;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use terapi_domain::budget::BudgetStore;
use terapi_domain::{Connection, Credentials, SyncPage, SyncRecord};

pub use crypto::{KEY_ENV_VAR, KEY_FILE, MasterKey};
pub use roles::*;
pub use sqlite::{DATABASE_FILE, SqliteStore};

/// A failed run is due again this long after it failed.
pub const RETRY_FAILED_AFTER_MS: u64 = 60_000;

/// The provider's own time of a record in unix ms, for ordering versions.
pub fn modified_at_ms(record: &SyncRecord) -> Option<i64> {
    record.modified_at.as_deref().and_then(|t| time::parse_ms(t).ok()).and_then(|ms| i64::try_from(ms).ok())
}

/// Live records of a model, and those a full pass has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnseenRecords {
    pub unseen: u64,
    pub live: u64,
}

/// How a sync run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome<'a> {
    Done,
    /// Done, with something the operator should read (deletions held
    /// back): shown as the sync's last error, yet the run succeeded.
    Warned(&'a str),
    /// Failed with this message (scrubbed of secrets); retried after
    /// `RETRY_FAILED_AFTER_MS` if scheduled.
    Failed(&'a str),
    /// Stopped on purpose (SIGINT, SIGTERM) between or inside a page: the
    /// committed pages and their checkpoint stay, the lease is given up at
    /// once, and a scheduled sync is due again now.
    Interrupted(&'a str),
    /// Paused between pages to give its worker slot to syncs that wait
    /// (a long pass yields now and then): the lease is given up, the
    /// checkpoint stays, and the sync is due again now, behind those that
    /// waited. The run goes on as the same run: its start and whether it
    /// resumed are kept for its change event.
    Yielded,
}

impl RunOutcome<'_> {
    /// The `status` column's word.
    pub fn status(&self) -> &'static str {
        match self {
            RunOutcome::Done | RunOutcome::Warned(_) => "done",
            RunOutcome::Failed(_) => "failed",
            RunOutcome::Interrupted(_) => "interrupted",
            RunOutcome::Yielded => "yielded",
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            RunOutcome::Done | RunOutcome::Yielded => None,
            RunOutcome::Warned(m) | RunOutcome::Failed(m) | RunOutcome::Interrupted(m) => Some(m),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} could not be used: {message}")]
    Database { path: PathBuf, message: String },
    #[error(
        "the master key does not match the one this store was created with, so its secrets cannot be read; \
         set {KEY_ENV_VAR} (or restore the key file) to the original key. Nothing was changed."
    )]
    WrongKey,
    #[error("master key: {0}")]
    Key(String),
    #[error(
        "the store at {path} was written by a newer terapi (schema version {found}; this build knows up to \
         {known}); upgrade terapi to use it. Nothing was changed."
    )]
    NewerSchema { path: PathBuf, found: u32, known: u32 },
    #[error("a connection named `{0}` already exists; rotate its credential or delete it first")]
    ConnectionExists(String),
    #[error("no connection named `{0}`; `connection list` shows the saved ones")]
    NoConnection(String),
    #[error("connection `{id}` could not be decrypted: {message}")]
    Corrupt { id: String, message: String },
    #[error(
        "sync `{sync}` of `{connection}` is already running (by {owner}, lease until {until}); wait for it to end, \
         or for the lease to expire if that run was killed"
    )]
    SyncRunning { connection: String, sync: String, owner: String, until: String },
    #[error(
        "sync `{sync}` of `{connection}` lost its lease (this run went longer than the lease without a sign of life: \
         its process was paused or cut off from the store, and another run took over); nothing more of it was saved"
    )]
    LeaseLost { connection: String, sync: String },
    #[error("{0}")]
    BadQuery(String),
    /// A stored value is not what this build reads there (a store edited by
    /// hand or by another program).
    #[error(
        "a stored value could not be read ({0}); the store was changed by something other than terapi: \
         restore it from a backup"
    )]
    Unreadable(String),
    /// The database cannot be reached now (restarting, failing over, a
    /// dropped connection, a busy lock): the same call may work shortly.
    /// Callers that can wait retry with backoff (`retry_unavailable`).
    #[error("the store at {path} is unavailable ({message}); retrying shortly usually works")]
    Unavailable { path: PathBuf, message: String },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Runs `op` until it succeeds, fails for a reason other than the store
/// being unavailable, or `give_up_after` passes, backing off from 100 ms to
/// 5 s between tries (logging the first and then every tenth). A database
/// restart or failover then costs a wait, not a failed run.
pub async fn retry_unavailable<T, F, Fut>(what: &str, give_up_after: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut tries = 0u32;
    loop {
        match op().await {
            Err(e) if e.is_unavailable() && started.elapsed() < give_up_after => {
                if tries.is_multiple_of(10) {
                    tracing::warn!("{what}: {e}; trying again");
                }
                tries += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
            Ok(value) => {
                if tries > 0 {
                    tracing::info!("{what}: the store is back after {tries} retries");
                }
                return Ok(value);
            }
        }
    }
}

/// What `connection list/show` print: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionSummary {
    pub id: String,
    pub provider: String,
    pub auth_mode: String,
    /// The access key (Gong's basic-auth user name) is an identifier, not a secret.
    pub username: Option<String>,
    pub config: BTreeMap<String, String>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    pub verified_at: Option<u64>,
    /// Who the connection is for (Nango's `ApiEndUser`: `id`,
    /// `display_name`, `email`, `tags`, `organization`), if known.
    pub end_user: Option<serde_json::Value>,
    /// The app's labels for it.
    pub tags: BTreeMap<String, String>,
    /// The app's own data on it (a JSON object), if set.
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub connection_id: String,
    pub sync: String,
    pub model: String,
    /// Where the next run starts; `None` means from the beginning.
    pub checkpoint: Option<String>,
    /// `running`, `done`, `failed`, or `interrupted` (a run whose lease
    /// expired: its process died or was killed).
    pub status: String,
    pub records: u64,
    pub pages: u64,
    /// Unix seconds.
    pub last_started_at: Option<u64>,
    pub last_finished_at: Option<u64>,
    pub last_error: Option<String>,
    /// Run every this many seconds (a schedule); `None`: only when asked.
    pub frequency_secs: Option<u64>,
    /// The schedule is paused: nothing runs it until it is started again.
    pub paused: bool,
    /// Unix ms when a worker will run it next, if it is due at all.
    pub due_at_ms: Option<u64>,
}

/// What a run changed in a model, as a change webhook reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecordChanges {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// A Connect session: a short-lived token an app hands to its end user so
/// that they can create one connection from the Connect page. Only the
/// token's SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSession {
    pub token_sha256: String,
    /// Who the connection will be for, as the app described them: end
    /// user, organization and tags (JSON; the platform's `ConnectionOwner`).
    /// Kept in the `end_user` column.
    pub owner: String,
    /// Providers the end user may connect; empty: any.
    pub allowed_integrations: Vec<String>,
    /// Unix ms.
    pub expires_at_ms: u64,
    /// The connection made with it, once made (or being made: a session is
    /// claimed for the connection's id before the credential is checked).
    pub connection_id: Option<String>,
    /// The origin of the app's page that opened Connect: the page posts its
    /// result there only, and may be framed by it.
    pub allowed_origin: Option<String>,
    /// A reconnect session: saving replaces this connection's credential
    /// instead of making a new connection.
    pub reconnect_connection_id: Option<String>,
}

/// A secret API key as `key list` shows it: never the key, only its public id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// The first 12 hex digits of the key's SHA-256.
    pub id: String,
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// A run's claim on a (connection, sync): only the holder may commit pages,
/// and the claim lapses `ttl` after the last page unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLease {
    pub connection_id: String,
    pub sync: String,
    /// Who runs it, e.g. `host:pid:random`.
    pub owner: String,
    pub ttl: Duration,
    /// Taken by `claim_due_sync`: the run may begin only while this owner
    /// still holds it (a worker paused between its claim and its start
    /// must not start a sync another worker ran meanwhile).
    pub claimed: bool,
}

/// One run of a sync, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRunRecord {
    pub connection_id: String,
    pub sync: String,
    pub owner: String,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// The last sign of life: the start, a committed page, or a renewed lease.
    pub last_beat_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// `running` (or dead, if its lease lapsed), `done`, `failed`,
    /// `interrupted`, `yielded`, or `lost` (its lease lapsed and another run
    /// took over; it ended at its last sign of life).
    pub status: String,
    pub pages: u64,
    pub records: u64,
}

/// A page of stored records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    pub connection_id: String,
    pub model: String,
    /// Unix ms: only records that changed here (stored, changed, found
    /// deleted) at or after this moment. Inclusive and to the millisecond,
    /// like the change counts of a webhook whose `modifiedAfter` it is.
    pub modified_after_ms: Option<u64>,
    /// From a previous page's `next_cursor`, or any record's `cursor`:
    /// the page holds what changed after it.
    pub cursor: Option<String>,
    pub limit: u32,
    /// Also records a full sync found gone upstream.
    pub include_deleted: bool,
    /// Only records whose last change was one of these (empty: any).
    /// Applied before the limit.
    pub actions: Vec<LastAction>,
    /// Only these record ids (empty: any).
    pub ids: Vec<String>,
}

/// What last happened to a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LastAction {
    Added,
    Updated,
    Deleted,
}

impl LastAction {
    /// Nango's word, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LastAction::Added => "ADDED",
            LastAction::Updated => "UPDATED",
            LastAction::Deleted => "DELETED",
        }
    }

    pub fn parse(word: &str) -> Option<LastAction> {
        match word {
            "ADDED" => Some(LastAction::Added),
            "UPDATED" => Some(LastAction::Updated),
            "DELETED" => Some(LastAction::Deleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPage {
    pub records: Vec<StoredRecord>,
    pub next_cursor: Option<String>,
}

/// A record as stored, with what the store knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: String,
    /// The record's JSON text.
    pub json: String,
    /// Unix seconds: first stored, last changed here, found deleted.
    pub first_seen_at: u64,
    pub updated_at: u64,
    pub deleted_at: Option<u64>,
    /// Unix ms of the last change here (what `modified_after_ms` compares).
    pub changed_at_ms: u64,
    /// Unix seconds its payload was pruned (emptied to `{}`; a later sync
    /// restores it), if it was.
    pub pruned_at: Option<u64>,
    pub last_action: LastAction,
    /// Its position in the order of changes: a listing from here returns
    /// exactly what changed after this record's last change.
    pub cursor: String,
}

/// How busy a tenant is across every worker on the store: syncs running
/// under a live lease, and whether its request budget has a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantLoad {
    /// Tenant → syncs running now.
    pub running: BTreeMap<String, u32>,
    /// Tenants whose next free request slot is further away than the
    /// backlog asked about: a sync claimed for them now would only wait.
    pub busy: Vec<String>,
    /// Tenant (`None`: not known yet) → syncs due and not running.
    pub waiting: BTreeMap<Option<String>, u32>,
}

/// The scheduler's queue across every worker on the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncQueue {
    /// Due syncs no live lease holds: waiting for a worker.
    pub waiting: u64,
    /// Syncs under a live lease.
    pub running: u64,
    /// How long the longest-waiting of them has been due (ms; 0 when none
    /// waits): how far behind the scheduler is.
    pub lag_ms: u64,
}

/// An event to write in the same transaction as what it tells of (a run
/// that ended, a connection that was saved), for delivery to the app's
/// webhook URL by whichever process delivers events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Stable across retries and processes: the receiver's idempotency key.
    pub id: String,
    /// `sync` or `auth`.
    pub kind: String,
    pub connection_id: String,
    /// What the platform knows of it (JSON object); the store adds what
    /// only it knows at commit (a run's start and record changes).
    pub facts: String,
}

/// An event as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub id: String,
    pub kind: String,
    pub connection_id: String,
    pub facts: String,
    /// Unix ms.
    pub created_at_ms: u64,
    /// `pending`, `delivered`, `skipped` (nothing to tell) or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    pub delivered_at_ms: Option<u64>,
    pub last_error: Option<String>,
    /// For a sync event: when the run began (unix ms), whether it began
    /// from a checkpoint, and what it changed (for a run that succeeded).
    pub run_started_at_ms: Option<u64>,
    pub run_resumed: bool,
    pub changes: Option<RecordChanges>,
}

/// One delivery attempt, as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub attempt: u32,
    /// Unix ms.
    pub at_ms: u64,
    /// The process that sent it.
    pub owner: String,
    pub url: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What becomes of an event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    /// Nothing to send (a run that changed nothing, without "always send").
    Skipped,
    /// Try again after this long (timed by the store's clock).
    RetryIn(Duration),
    /// Attempts are spent.
    GiveUp,
}

/// An action run in the background (Nango's `X-Async: true`), kept in the
/// store so any server answers for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncAction {
    pub id: String,
    pub connection_id: String,
    pub action: String,
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// The action's JSON output, once done.
    pub output: Option<String>,
    /// Why it failed (scrubbed of secrets).
    pub error: Option<String>,
    /// Unix ms.
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
}

/// One tool call as the audit log keeps it: never the input itself (it may
/// hold personal data), only its SHA-256; never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    pub caller: String,
    pub connection_id: String,
    pub tool: String,
    pub input_sha256: String,
    /// `ok`, `error` or `refused`.
    pub status: String,
    pub duration_ms: u64,
    pub detail: Option<String>,
}

/// One governance document: a connection's tool policy, a toolset, an
/// access profile or an MCP user, as JSON the platform layer reads and
/// writes (`terapi_platform::governance`), so the rules live once, above
/// both stores. Writes are compare-and-swap on `version`; a deleted
/// document stays as the body `null` with a higher version, so
/// `governance_version` (the sum of all versions) rises with every change
/// and a server can poll that one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceDoc {
    pub key: String,
    /// 1 for a new document, +1 with every write.
    pub version: i64,
    pub body: String,
}

/// How the `connections` table names a credential's kind.
pub fn auth_mode_name(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Basic { .. } => "BASIC",
        Credentials::OAuth2 { .. } => "OAUTH2",
        Credentials::ApiKey { .. } => "API_KEY",
        Credentials::OAuth2ClientCredentials { .. } => "OAUTH2_CC",
    }
}

/// The access key (Gong's basic-auth user name), or an OAUTH2_CC client
/// id: an identifier, not a secret, so stores keep it in clear for
/// `connection list`.
pub fn username(credentials: &Credentials) -> Option<&str> {
    match credentials {
        Credentials::Basic { username, .. } => Some(username),
        Credentials::OAuth2ClientCredentials { client_id, .. } => Some(client_id),
        Credentials::OAuth2 { .. } | Credentials::ApiKey { .. } => None,
    }
}

/// The public id of an API key: the first 12 hex digits of its SHA-256,
/// enough to name it in `key list` / `key revoke` and useless to an attacker.
pub fn api_key_id(sha256: &str) -> String {
    sha256.chars().take(12).collect()
}

pub use terapi_domain::clock::unix_now;

/// Every role trait, for code that calls store methods on a concrete store
/// (`SqliteStore`, `PostgresStore`) rather than through `dyn Store`.
pub mod prelude {
    pub use crate::roles::{
        ApiKeyStore, AsyncActionStore, ConnectSessionStore, ConnectionStore, CoordinationStore, EventStore,
        GovernanceStore, RecordStore, ScheduleStore, Store, SyncRunStore,
    };
    pub use terapi_domain::budget::BudgetStore;
}
