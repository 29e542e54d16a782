//! What every part of terapi shares, without the sandbox: the runtime, the
//! stores, the platform and the servers all speak these types, and none of
//! them needs wasmtime to do so.
//!
//! - [`providers`]: providers.yaml (Nango's format) and what an entry says.
//! - [`connection`]: one account at one provider, its credential and the
//!   base URL it resolves to; [`secret`] keeps credentials out of logs.
//! - [`records`]: sync records and pages as the platform stores them.
//! - [`budget`]: the request budget arithmetic and where budgets are kept.
//! - [`template`]: `${...}` templates of providers.yaml.
//! - [`clock`], [`digest`]: the wall clock, hex and SHA-256, once.

pub mod budget;
pub mod clock;
pub mod connection;
pub mod digest;
pub mod providers;
pub mod records;
pub mod secret;
pub mod template;

pub use connection::{ACCOUNT_CONFIG_KEY, BASE_URL_CONFIG_KEY, Connection, Credentials};
pub use providers::{AuthMode, ConfigError, ProviderSpec, Providers};
pub use records::{SyncPage, SyncRecord, WebhookRecords};
pub use secret::{Redactor, Secret};
