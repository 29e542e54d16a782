//! `GET /connections`, `GET|DELETE /connections/{id}`. Credentials never
//! leave terapi: a connection shows its kind and the non-secret parts
//! (Gong's access key); calls go through `/proxy` instead.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use terapi_store::ConnectionSummary;

use super::{connection, rfc3339};
use crate::{ApiError, ServeState};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
    #[serde(rename = "integrationId")]
    integration_id: Option<String>,
    search: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    provider_config_key: Option<String>,
}

fn public(c: &ConnectionSummary) -> Value {
    json!({
        "id": c.id,
        "connection_id": c.id,
        "provider_config_key": c.provider,
        "provider": c.provider,
        "created": rfc3339(c.created_at),
        "metadata": null,
        "errors": [],
        "end_user": null,
        "tags": {},
    })
}

pub async fn list(
    State(state): State<Arc<ServeState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let integrations: Option<Vec<&str>> = query.integration_id.as_deref().map(|i| i.split(',').collect());
    let connections: Vec<Value> = state
        .platform
        .store()
        .connections()
        .await?
        .iter()
        .filter(|c| query.connection_id.as_ref().is_none_or(|id| &c.id == id))
        .filter(|c| query.search.as_ref().is_none_or(|s| c.id.contains(s.as_str())))
        .filter(|c| integrations.as_ref().is_none_or(|i| i.contains(&c.provider.as_str())))
        .map(public)
        .collect();
    Ok(Json(json!({ "connections": connections })))
}

fn required_key(query: &KeyQuery) -> Result<&str, ApiError> {
    query.provider_config_key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_provider_config_key",
            "`provider_config_key` is required (the integration, e.g. `gong`)",
        )
    })
}

pub async fn get(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let summary = connection(&state, &id, required_key(&query)?).await?;
    let mut full = public(&summary);
    let object = full.as_object_mut().expect("a JSON object");
    object.remove("created");
    object.insert("created_at".into(), rfc3339(summary.created_at).into());
    object.insert("updated_at".into(), rfc3339(summary.updated_at).into());
    object.insert("last_fetched_at".into(), summary.verified_at.map(rfc3339).into());
    object.insert("connection_config".into(), json!(summary.config));
    object.insert("webhook_url_override".into(), Value::Null);
    let credentials = match summary.auth_mode.as_str() {
        "BASIC" => json!({ "type": "BASIC", "username": summary.username }),
        other => json!({ "type": other }),
    };
    object.insert("credentials".into(), credentials);
    Ok(Json(full))
}

pub async fn delete(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let summary = connection(&state, &id, required_key(&query)?).await?;
    state.platform.delete_connection(&summary.id).await?;
    Ok(Json(json!({ "success": true })))
}
