//! `GET /providers` (providers.yaml) and `GET /integrations` (the
//! providers a component serves here).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use terapi_host::{AuthMode, ProviderSpec};

use crate::{ApiError, ServeState};

pub fn auth_mode_name(mode: &AuthMode) -> &str {
    mode.as_str()
}

/// Nango's `ApiProvider`: what providers.yaml says, with `logo_url`; a
/// field providers.yaml leaves out is left out (never `null`, which
/// `@nangohq/types` does not allow where it says a string).
fn provider(state: &ServeState, name: &str, spec: &ProviderSpec) -> Value {
    let mut body = json!({
        "name": name,
        "display_name": spec.display_name,
        "logo_url": logo_url(state, name),
        "auth_mode": auth_mode_name(&spec.auth_mode),
        "categories": spec.categories,
        "docs": spec.docs,
        "docs_connect": spec.docs_connect,
        "authorization_url": spec.authorization_url,
        "token_url": spec.token_url,
        "proxy": spec.proxy.as_ref().map(|p| json!({ "base_url": p.base_url })),
        // Not Nango's: whether this server can connect to it, and why not.
        "terapi": without_nulls(json!({ "served": spec.not_served.is_none(), "reason": spec.not_served })),
        "credentials": spec.credentials.iter().map(|(k, f)| (k.clone(), without_nulls(json!({
            "type": f.kind, "title": f.title, "description": f.description, "pattern": f.pattern,
            "optional": f.optional, "secret": f.secret
        })))).collect::<serde_json::Map<_, _>>(),
        "connection_config": spec.connection_config.iter().map(|(k, f)| (k.clone(), without_nulls(json!({
            "type": f.kind, "title": f.title, "description": f.description, "pattern": f.pattern,
            "example": f.example, "optional": f.optional, "automated": f.automated
        })))).collect::<serde_json::Map<_, _>>(),
    });
    body = without_nulls(body);
    body
}

/// The object without its `null` members.
fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(object) = &mut value {
        object.retain(|_, v| !v.is_null());
    }
    value
}

/// The provider's logo: `--logo-url`'s template if given, else Nango's
/// published one (`gong-oauth` shares Gong's).
fn logo_url(state: &ServeState, name: &str) -> String {
    let logo = spec_logo_name(name);
    match &state.config.connect_page.logo_url {
        Some(template) => template.replace("{provider}", logo),
        None => format!("https://app.nango.dev/images/template-logos/{logo}.svg"),
    }
}

#[derive(serde::Deserialize, Default)]
pub struct ProviderSearch {
    search: Option<String>,
}

/// `GET /providers` (`listProviders`), `?search=` matching the name or the
/// display name, in any case.
pub async fn list_providers(State(state): State<Arc<ServeState>>, Query(query): Query<ProviderSearch>) -> Json<Value> {
    let search = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
    let data: Vec<Value> = state
        .platform
        .providers()
        .iter()
        .filter(|(name, spec)| {
            search
                .as_ref()
                .is_none_or(|s| name.to_lowercase().contains(s) || spec.display_name.to_lowercase().contains(s))
        })
        .map(|(name, spec)| provider(&state, name, spec))
        .collect();
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
    Ok(Json(json!({ "data": provider(&state, &name, spec) })))
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

#[derive(serde::Deserialize, Default)]
pub struct FunctionFilters {
    #[serde(rename = "type")]
    kind: Option<String>,
    search: Option<String>,
    page: Option<u32>,
    limit: Option<u32>,
}

/// The integration's functions as Nango lists deployed ones
/// (`ListedNangoFunction`): the component's syncs and actions.
async fn functions(state: &ServeState, key: &str) -> Result<Vec<Value>, ApiError> {
    if !state.platform.is_integration(key) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "integration_not_found",
            format!("no integration `{key}`; GET /integrations lists them"),
        ));
    }
    let description = state.platform.describe(key).await?;
    let schema = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let deployed = super::rfc3339(state.started_at);
    let mut listed = Vec::new();
    for (n, sync) in description.syncs.iter().enumerate() {
        listed.push(json!({
            "id": n + 1,
            "name": sync.name,
            "description": sync.description,
            "scopes": sync.scopes,
            "type": "sync",
            "returns": [sync.model],
            "json_schema": { "definitions": { sync.model.clone(): schema(&sync.record_schema) } },
            "runs": crate::frequency::format(u64::from(sync.frequency_secs.max(1))),
            "auto_start": true,
            "track_deletes": !sync.incremental,
            "enabled": true,
            "last_deployed": deployed,
            "source": "repo",
        }));
    }
    for (n, action) in description.actions.iter().enumerate() {
        listed.push(json!({
            "id": description.syncs.len() + n + 1,
            "name": action.name,
            "description": action.description,
            "scopes": action.scopes,
            "type": "action",
            "returns": [],
            "json_schema": { "input": schema(&action.input_schema), "output": schema(&action.output_schema) },
            "enabled": true,
            "last_deployed": deployed,
            "source": "repo",
        }));
    }
    Ok(listed)
}

/// `GET /integrations/{key}/functions` (`listFunctions`): filtered by
/// `type` and `search` (name or description), a page at a time.
pub async fn list_functions(
    State(state): State<Arc<ServeState>>,
    Path(key): Path<String>,
    Query(filters): Query<FunctionFilters>,
) -> Result<Json<Value>, ApiError> {
    let search = filters.search.as_deref().map(str::to_lowercase);
    let matching: Vec<Value> = functions(&state, &key)
        .await?
        .into_iter()
        .filter(|f| filters.kind.as_deref().is_none_or(|kind| f["type"] == kind))
        .filter(|f| {
            search.as_ref().is_none_or(|s| {
                [&f["name"], &f["description"]].iter().any(|t| t.as_str().is_some_and(|t| t.to_lowercase().contains(s)))
            })
        })
        .collect();
    let limit = filters.limit.unwrap_or(100).clamp(1, 1000);
    let page = filters.page.unwrap_or(1).max(1);
    let total = matching.len();
    let data: Vec<Value> = matching.into_iter().skip(((page - 1) * limit) as usize).take(limit as usize).collect();
    Ok(Json(json!({ "data": data, "pagination": { "total": total, "page": page, "limit": limit } })))
}

#[derive(serde::Deserialize, Default)]
pub struct FunctionType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /integrations/{key}/functions/{name}` (`getFunction`).
pub async fn get_function(
    State(state): State<Arc<ServeState>>,
    Path((key, name)): Path<(String, String)>,
    Query(filter): Query<FunctionType>,
) -> Result<Json<Value>, ApiError> {
    functions(&state, &key)
        .await?
        .into_iter()
        .find(|f| f["name"] == name.as_str() && filter.kind.as_deref().is_none_or(|kind| f["type"] == kind))
        .map(|f| Json(json!({ "data": f })))
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("`{key}` has no function `{name}`; GET /integrations/{key}/functions lists them"),
            )
        })
}
