//! Errors at the host library's boundary. Every message says what went wrong
//! and, where the user can act, what to do; none carries a secret.

use std::time::Duration;

use crate::connection::ConnectionError;
use crate::egress::EgressError;
use crate::providers::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("connection `{id}`: {source}")]
    Connection {
        id: String,
        #[source]
        source: ConnectionError,
    },
    #[error("the provider component could not be loaded: {0}")]
    Load(String),
    #[error(transparent)]
    Guest(#[from] GuestFailure),
    #[error(transparent)]
    Provider(#[from] ProviderFailure),
    #[error(transparent)]
    Http(#[from] EgressError),
    #[error(transparent)]
    Sync(#[from] SyncFailure),
}

/// The guest was stopped, or stopped itself, outside its contract.
#[derive(Debug, thiserror::Error)]
pub enum GuestFailure {
    #[error("the provider component used up its CPU budget ({0:?}) and was stopped")]
    CpuBudget(Duration),
    #[error("the provider component needed more than {0} MiB of memory and was stopped")]
    Memory(usize),
    #[error("the provider call took longer than {0:?} and was stopped")]
    WallTime(Duration),
    #[error("too many provider calls at once ({0}); retry when some have finished")]
    Busy(String),
    #[error("the provider component crashed: {0}")]
    Crashed(String),
}

/// What the provider reported (the WIT `provider-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderFailure {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("not available for this account: {0}")]
    NotAvailable(String),
    #[error("the provider answered HTTP {status}: {message}")]
    Remote { status: u16, message: String },
    #[error(transparent)]
    Http(EgressError),
    #[error("unexpected answer from the provider: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Unknown(String),
    #[error("not supported: {0}")]
    NotSupported(String),
}

/// A sync loop that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SyncFailure {
    #[error(
        "sync `{sync}` returned a checkpoint it had already returned (page {page}); the provider's pagination is looping, so the sync was stopped"
    )]
    RepeatingCheckpoint { sync: String, page: u64 },
    #[error("sync `{sync}` said it was not done but gave no checkpoint to continue from (page {page})")]
    MissingCheckpoint { sync: String, page: u64 },
    #[error("sync `{sync}`: saving page {page} failed: {message}")]
    Sink { sync: String, page: u64, message: String },
    #[error(
        "sync `{sync}` stopped after {sent} requests in this run, its budget ({budget}; RuntimeConfig \
         max_requests_per_run, `--max-requests-per-run`): what it read is saved and the next run resumes from page \
         {page}"
    )]
    RequestBudget { sync: String, sent: u64, budget: u64, page: u64 },
}
