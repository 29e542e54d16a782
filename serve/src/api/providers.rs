//! `GET /providers` (providers.yaml) and `GET /integrations` (the
//! providers a component serves here).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use terapi_host::{AuthMode, ProviderSpec};

use crate::{ApiError, ServeState};

pub fn auth_mode_name(mode: &AuthMode) -> &str {
    mode.as_str()
}

fn provider(name: &str, spec: &ProviderSpec) -> Value {
    json!({
        "name": name,
        "display_name": spec.display_name,
        "auth_mode": auth_mode_name(&spec.auth_mode),
        "categories": spec.categories,
        "docs": spec.docs,
        "docs_connect": spec.docs_connect,
        "authorization_url": spec.authorization_url,
        "token_url": spec.token_url,
        "proxy": { "base_url": spec.proxy.as_ref().map(|p| p.base_url.clone()) },
        // Not Nango's: whether this server can connect to it, and why not.
        "terapi": { "served": spec.not_served.is_none(), "reason": spec.not_served },
        "credentials": spec.credentials.iter().map(|(k, f)| (k.clone(), json!({
            "type": f.kind, "title": f.title, "description": f.description, "pattern": f.pattern,
            "optional": f.optional, "secret": f.secret
        }))).collect::<serde_json::Map<_, _>>(),
        "connection_config": spec.connection_config.iter().map(|(k, f)| (k.clone(), json!({
            "type": f.kind, "title": f.title, "description": f.description, "pattern": f.pattern,
            "example": f.example, "optional": f.optional, "automated": f.automated
        }))).collect::<serde_json::Map<_, _>>(),
    })
}

pub async fn list_providers(State(state): State<Arc<ServeState>>) -> Json<Value> {
    let data: Vec<Value> = state.platform.providers().iter().map(|(name, spec)| provider(name, spec)).collect();
    Json(json!({ "data": data }))
}

pub async fn get_provider(
    State(state): State<Arc<ServeState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let spec = state
        .platform
        .providers()
        .entry(&name)
        .map_err(|e| ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    Ok(Json(json!({ "data": provider(&name, spec) })))
}

/// Nango's `ApiPublicIntegration`. The logo is Nango's published one for
/// the provider; the times are when this server loaded providers.yaml.
fn integration(name: &str, spec: &ProviderSpec, loaded_at: u64) -> Value {
    let loaded = super::rfc3339(loaded_at);
    json!({
        "unique_key": name,
        "provider": name,
        "display_name": spec.display_name,
        "logo": format!("https://app.nango.dev/images/template-logos/{}.svg", spec_logo_name(name)),
        "forward_webhooks": false,
        "created_at": loaded,
        "updated_at": loaded,
    })
}

/// `gong-oauth` shares Gong's logo.
fn spec_logo_name(name: &str) -> &str {
    name.split_once('-').map_or(name, |(base, _)| base)
}

pub async fn list_integrations(State(state): State<Arc<ServeState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .platform
        .providers()
        .iter()
        .filter(|(name, _)| state.platform.is_integration(name))
        .map(|(name, spec)| integration(name, spec, state.started_at))
        .collect();
    Json(json!({ "data": data }))
}

/// `GET /integrations/{key}` (`getIntegration`).
pub async fn get_integration(
    State(state): State<Arc<ServeState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let spec =
        state.platform.providers().get(&key).ok().filter(|_| state.platform.is_integration(&key)).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_provider_config",
                format!("no integration `{key}`; GET /integrations lists them"),
            )
        })?;
    Ok(Json(json!({ "data": integration(&key, spec, state.started_at) })))
}

/// `GET /scripts/config` (`getScriptsConfig`): what each integration's
/// component syncs and does, as Nango describes deployed scripts.
pub async fn scripts_config(State(state): State<Arc<ServeState>>) -> Result<Json<Value>, ApiError> {
    let mut configs = Vec::new();
    for (name, _) in state.platform.providers().iter().filter(|(name, _)| state.platform.is_integration(name)) {
        let description = state.platform.describe(name).await?;
        let schema = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let syncs: Vec<Value> = description
            .syncs
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "type": "sync",
                    "runs": crate::frequency::format(u64::from(s.frequency_secs.max(1))),
                    "auto_start": true,
                    "description": s.description,
                    "scopes": description.requirements.oauth2_scopes,
                    "track_deletes": !s.incremental,
                    "sync_type": if s.incremental { "incremental" } else { "full" },
                    "returns": [s.model],
                    "endpoints": [{ "method": "GET", "path": "/records", "group": s.model }],
                    "json_schema": { "definitions": { s.model.clone(): schema(&s.record_schema) } },
                    "sdk_version": null,
                    "features": [],
                    "enabled": true,
                })
            })
            .collect();
        let actions: Vec<Value> = description
            .actions
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "type": "action",
                    "description": a.description,
                    "scopes": description.requirements.oauth2_scopes,
                    "returns": [],
                    "endpoints": [{ "method": "POST", "path": "/action/trigger", "group": a.name }],
                    "json_schema": { "input": schema(&a.input_schema), "output": schema(&a.output_schema) },
                    "sdk_version": null,
                    "features": [],
                    "enabled": true,
                })
            })
            .collect();
        configs.push(json!({
            "providerConfigKey": name,
            "provider": name,
            "syncs": syncs,
            "actions": actions,
            "on-events": [],
        }));
    }
    Ok(Json(Value::Array(configs)))
}
