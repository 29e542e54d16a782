//! `GET /providers` (providers.yaml) and `GET /integrations` (the
//! providers a component serves here).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use terapi_host::{AuthMode, ProviderSpec};

use crate::{ApiError, ServeState};

pub fn auth_mode_name(mode: &AuthMode) -> &'static str {
    match mode {
        AuthMode::Basic => "BASIC",
        AuthMode::OAuth2 => "OAUTH2",
    }
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
        "proxy": { "base_url": spec.proxy.base_url },
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
        .get(&name)
        .map_err(|e| ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    Ok(Json(json!({ "data": provider(&name, spec) })))
}

pub async fn list_integrations(State(state): State<Arc<ServeState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .platform
        .providers()
        .iter()
        .filter(|(name, _)| state.platform.component(name).is_ok())
        .map(|(name, spec)| {
            json!({
                "unique_key": name,
                "provider": name,
                "display_name": spec.display_name,
                "logo": null,
                "created_at": null,
                "updated_at": null,
            })
        })
        .collect();
    Json(json!({ "data": data }))
}
