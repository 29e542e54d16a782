//! Change and auth webhooks: written to the store's event outbox as runs
//! end and connections are made, and delivered from there by any `terapi
//! serve` or `terapi worker` on the store (see `terapi_platform::events`).

pub use terapi_platform::events::{WebhookConfig, legacy_signature, render, sign};
