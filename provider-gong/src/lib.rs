//! The Gong provider as a WebAssembly component.
//!
//! One component serves both `gong` (basic auth) and `gong-oauth`: the guest
//! only ever asks the host for requests by method, path, query and body; the
//! host picks the base URL (regional tenants have their own) and injects the
//! credential. Nothing here sees a secret or a host name.
//!
//! The parsing and mapping code (`gong`, `actions`, `syncs`, `proxy`) is plain
//! Rust so it can be unit-tested and fuzzed natively; only `api` talks to the host.
//!
//! Built without std: std on wasm32-wasip2 brings in WASI (stdio, clocks,
//! environment, exit) that this component never needs, and every host would
//! have to provide it. Without std the component imports exactly what the
//! `provider` world declares: `http` and `log`. The time comes in the
//! request; a panic's message goes out through `log`.

#![no_std]

extern crate alloc;
// The native build (unit tests, fuzzing, the benches' baseline) is an
// ordinary Rust library: std brings its allocator and panic handler.
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

mod actions;
mod api;
pub mod catalog;
pub mod gong;
pub mod proxy;
mod schema;
mod syncs;
pub mod time;
mod webhook;
#[cfg(target_arch = "wasm32")]
mod without_std;

/// What std's prelude would bring, from `alloc`.
mod prelude {
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

use prelude::*;

wit_bindgen::generate!({
    path: "../wit",
    world: "provider",
});

use exports::terapi::provider::{action, auth, proxy as proxy_export, sync, webhook as webhook_export};
use terapi::provider::types::{HttpRequest, ProviderError};

struct GongProvider;

impl auth::Guest for GongProvider {
    fn describe() -> auth::Requirements {
        auth::Requirements {
            basic: Some(auth::BasicFields {
                username_title: "Access Key".into(),
                username_description: "Your Gong access key (Gong > Company settings > Ecosystem > API)".into(),
                password_title: "Access Key Secret".into(),
                password_description: "Your Gong access key secret, shown once when the key is created".into(),
            }),
            oauth2_scopes: gong::oauth_scopes().into_iter().map(str::to_string).collect(),
            // verify lists users.
            oauth2_base_scopes: gong::scope_for("GET", "/v2/users").map(str::to_string).into_iter().collect(),
        }
    }

    fn verify() -> Result<auth::Verification, ProviderError> {
        let page: gong::UsersPage = api::get_json("/v2/users", &[])?;
        let visible = page.records.total_records.unwrap_or(page.users.len() as u64);
        Ok(auth::Verification {
            summary: format!("credential accepted; {visible} users visible"),
            account: gong::company_key(&page),
        })
    }

    fn check_config(config: Vec<(String, String)>) -> Result<(), ProviderError> {
        gong::check_config(&config)
    }
}

impl sync::Guest for GongProvider {
    fn list_syncs() -> Vec<sync::SyncInfo> {
        syncs::SYNCS
            .iter()
            .map(|s| sync::SyncInfo {
                name: s.name.into(),
                model: s.model.into(),
                description: s.description.into(),
                record_schema: s.record_schema.into(),
                incremental: s.incremental(),
                frequency_secs: s.frequency_secs(),
                scopes: s.scopes(),
            })
            .collect()
    }

    fn run_page(request: sync::PageRequest) -> Result<sync::SyncPage, ProviderError> {
        syncs::run_page(request)
    }
}

impl action::Guest for GongProvider {
    fn list_actions() -> Vec<action::ActionInfo> {
        let typed = actions::ACTIONS.iter().map(|a| action::ActionInfo {
            name: a.name.into(),
            description: a.description.into(),
            input_schema: a.input_schema.into(),
            output_schema: a.output_schema.into(),
            // The typed actions (get-user, list-calls) only read.
            read_only: true,
            scopes: a.scopes.iter().map(|s| s.to_string()).collect(),
        });
        let catalogued = catalog::ENDPOINTS.iter().map(|e| action::ActionInfo {
            name: e.name.into(),
            description: e.description.into(),
            input_schema: catalog::input_schema(e),
            output_schema: schema::GONG_ANSWER.into(),
            read_only: e.reads_only,
            scopes: catalog::scopes(e),
        });
        typed.chain(catalogued).collect()
    }

    fn run(name: String, input: String) -> Result<String, ProviderError> {
        actions::run(&name, &input)
    }
}

impl proxy_export::Guest for GongProvider {
    fn prepare(request: HttpRequest) -> Result<HttpRequest, ProviderError> {
        Ok(proxy::prepare(request))
    }
}

impl webhook_export::Guest for GongProvider {
    fn handle(payload: Vec<u8>) -> Result<webhook_export::WebhookRecords, ProviderError> {
        webhook::handle(&payload)
    }
}

// Only the wasm build exports the component's entry points: their symbol names
// (`terapi:provider/...`) are not valid in a native shared library, and the
// native build exists for unit tests and fuzzing of the plain-Rust modules.
#[cfg(target_arch = "wasm32")]
export!(GongProvider);
