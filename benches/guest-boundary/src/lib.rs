//! Hands the host N synthetic user records, either as N structured
//! `sync-record`s (`sync.run-page`, N from the checkpoint) or as one JSON
//! array string (`action.run("page-json", N)`), so the benchmark can compare
//! the two ways across the boundary with no HTTP in the way.

wit_bindgen::generate!({
    path: "../../wit",
    world: "sync-provider",
});

use exports::terapi::provider::{action, auth, sync};
use terapi::provider::types::ProviderError;

struct Boundary;

fn record(i: usize) -> (String, String) {
    let id = (7_000_000_000_000_000_000u64 + i as u64).to_string();
    let json = format!(
        r#"{{"id":"{id}","email":"user{i}@example.com","firstName":"First{i}","lastName":"Last{i}","title":"Account Executive","phoneNumber":"+1-555-0000","active":true,"managerId":"7000000000000000000","createdAt":"2023-11-14T22:13:20Z"}}"#
    );
    (id, json)
}

fn count(text: &str) -> Result<usize, ProviderError> {
    text.trim().parse().map_err(|_| ProviderError::InvalidInput(format!("a record count, got {text:?}")))
}

impl sync::Guest for Boundary {
    fn list_syncs() -> Vec<sync::SyncInfo> {
        Vec::new()
    }
    fn run_page(request: sync::PageRequest) -> Result<sync::SyncPage, ProviderError> {
        let n = count(request.checkpoint.as_deref().unwrap_or("100"))?;
        let records = (0..n)
            .map(|i| {
                let (id, json) = record(i);
                sync::SyncRecord { id, modified_at: None, json }
            })
            .collect();
        Ok(sync::SyncPage { records, next_checkpoint: None, done: true, total_records: None })
    }
}

impl action::Guest for Boundary {
    fn list_actions() -> Vec<action::ActionInfo> {
        Vec::new()
    }
    fn run(_name: String, input: String) -> Result<String, ProviderError> {
        let n = count(&input)?;
        let mut out = String::with_capacity(n * 240 + 2);
        out.push('[');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&record(i).1);
        }
        out.push(']');
        Ok(out)
    }
}

impl auth::Guest for Boundary {
    fn describe() -> auth::Requirements {
        auth::Requirements { basic: None, oauth2_scopes: Vec::new(), oauth2_base_scopes: Vec::new() }
    }
    fn verify() -> Result<auth::Verification, ProviderError> {
        Ok(auth::Verification { summary: String::new(), account: None })
    }
    fn check_config(_config: Vec<(String, String)>) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(Boundary);
