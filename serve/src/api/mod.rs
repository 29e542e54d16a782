//! Nango's public API, route by route (shapes from `@nangohq/types`).

pub mod actions;
pub mod connections;
pub mod governance;
pub mod nango_models;
pub mod providers;
pub mod proxy;
pub mod records;
pub mod syncs;

use axum::http::HeaderMap;
use terapi_store::ConnectionSummary;

use crate::{ApiError, ServeState};

/// The connection named by `Connection-Id` / `Provider-Config-Key` headers.
pub async fn connection_from_headers(state: &ServeState, headers: &HeaderMap) -> Result<ConnectionSummary, ApiError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request("invalid_headers", format!("the `{name}` header is required")))
    };
    let id = header("connection-id")?;
    let key = header("provider-config-key")?;
    connection(state, id, key).await
}

/// A saved connection of integration `provider_config_key` (our provider
/// key): one of another integration is unknown here, as in Nango.
pub async fn connection(
    state: &ServeState,
    id: &str,
    provider_config_key: &str,
) -> Result<ConnectionSummary, ApiError> {
    match state.platform.store().connection_summary(id).await {
        Ok(summary) if summary.provider == provider_config_key => Ok(summary),
        Ok(_) | Err(terapi_store::StoreError::NoConnection(_)) => {
            Err(ApiError::unknown_connection(id, provider_config_key))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn rfc3339(unix: u64) -> String {
    terapi_store::time::rfc3339(unix)
}

pub use terapi_store::time::rfc3339_ms;
