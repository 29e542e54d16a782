//! A wasmtime host for terapi provider components.
//!
//! ```text
//! providers.yaml ──► Providers ──► ProviderSpec ─┐
//! component.wasm ──► Runtime::load_component ────┼─► Runtime::connect ──► Session
//! credentials ─────► Connection ─────────────────┘        │
//!                                   verify / run_sync_page / run_action / proxy
//! ```
//!
//! The guest asks for HTTP by method + path + query + body; `Egress` resolves
//! the connection's base URL, refuses anything leaving it, injects the
//! credential and performs the call. The guest never sees a secret.

pub mod destination;
pub mod egress;
pub mod error;
pub mod limits;
pub mod oauth;
pub mod runtime;
pub mod sync;

// The shared vocabulary lives in `terapi-domain` (no wasmtime); these keep
// `terapi_host::providers::...` and friends working for embedders.
pub use terapi_domain::{connection, providers, records, secret, template};

pub use connection::{ACCOUNT_CONFIG_KEY, BASE_URL_CONFIG_KEY, Connection, Credentials};
pub use destination::{DestinationRefused, EgressPolicy, HttpClient};
pub use egress::{Authorizer, EgressError, EgressLimits, InboundResponse, Method, OutboundRequest};
pub use error::{Error, GuestFailure, ProviderFailure, SyncFailure};
pub use oauth::{OAuthClient, OAuthError, TokenRefresher, TokenSet};
pub use providers::{AuthMode, ConfigError, ProviderSpec, Providers};
pub use runtime::{
    ActionInfo, ProviderComponent, ProviderDescription, Requirements, Runtime, RuntimeConfig, Session, SyncInfo,
    SyncOptions, SyncPage, SyncRecord, Verification, WebhookRecords,
};
pub use secret::{Redactor, Secret};
pub use sync::{PageSink, SyncRun, run_sync};
