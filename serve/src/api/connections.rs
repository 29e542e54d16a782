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
    #[serde(rename = "endUserId")]
    end_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    provider_config_key: Option<String>,
}

/// Nango's numeric connection `id` (its database row): here a stable
/// number from the connection id, below 2^53 so JavaScript keeps it exact.
/// Apps address connections by `connection_id`.
fn numeric_id(id: &str) -> u64 {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(id.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().unwrap_or_default()) >> 11
}

fn public(c: &ConnectionSummary) -> Value {
    json!({
        "id": numeric_id(&c.id),
        "connection_id": c.id,
        "provider_config_key": c.provider,
        "provider": c.provider,
        "created": rfc3339(c.created_at),
        "metadata": c.metadata,
        "errors": [],
        "end_user": c.end_user,
        "tags": c.tags,
    })
}

pub async fn list(
    State(state): State<Arc<ServeState>>,
    Query(query): Query<ListQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let integrations: Option<Vec<&str>> = query.integration_id.as_deref().map(|i| i.split(',').collect());
    // `tags[plan]=pro`: every tag given must match.
    let tags: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter_map(|(k, v)| Some((k.strip_prefix("tags[")?.strip_suffix(']')?.to_string(), v.into_owned())))
        .collect();
    let connections: Vec<Value> = state
        .platform
        .store()
        .connections()
        .await?
        .iter()
        .filter(|c| query.connection_id.as_ref().is_none_or(|id| &c.id == id))
        .filter(|c| query.search.as_ref().is_none_or(|s| c.id.contains(s.as_str())))
        .filter(|c| integrations.as_ref().is_none_or(|i| i.contains(&c.provider.as_str())))
        .filter(|c| {
            query.end_user_id.as_ref().is_none_or(|user| {
                c.end_user.as_ref().and_then(|u| u.get("id")).and_then(Value::as_str) == Some(user.as_str())
            })
        })
        .filter(|c| tags.iter().all(|(k, v)| c.tags.get(k).is_some_and(|t| t.eq_ignore_ascii_case(v))))
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
    Ok(Json(full(&summary)))
}

/// Nango's `ApiPublicConnectionFull`, without any secret.
fn full(summary: &ConnectionSummary) -> Value {
    let mut full = public(summary);
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
    full
}

#[derive(Debug, Deserialize)]
pub struct ImportBody {
    connection_id: Option<String>,
    provider_config_key: String,
    credentials: Value,
    #[serde(default)]
    connection_config: std::collections::BTreeMap<String, String>,
    metadata: Option<Value>,
    end_user: Option<Value>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

/// `POST /connections`: imports a connection made elsewhere (a Nango
/// export, another system), checked with the provider first like every
/// save; `BASIC` (`username`, `password`) or `OAUTH2` (`access_token`,
/// optional `refresh_token` and `expires_at`) as the provider's auth mode
/// says.
pub async fn import(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<ImportBody>,
) -> Result<Json<Value>, ApiError> {
    use terapi_host::Credentials;
    let spec = state.platform.providers().get(&body.provider_config_key).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_provider_config",
            format!("no integration `{}`; GET /integrations lists them", body.provider_config_key),
        )
    })?;
    state.platform.integration(&body.provider_config_key)?;
    let text = |key: &str| {
        body.credentials.get(key).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let kind = text("type").unwrap_or_default();
    if kind != spec.auth_mode.as_str() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`{}` takes `credentials.type: {}`", body.provider_config_key, spec.auth_mode),
        ));
    }
    let field = |name: &str| match name {
        // Nango sends `expires_at` as an ISO time; the host takes seconds.
        "expires_at" => text("expires_at").map(|t| terapi_store::time::parse(&t).map(|s| s.to_string()).unwrap_or(t)),
        other => text(other),
    };
    let credentials =
        Credentials::from_fields(&spec.auth_mode, &field).map_err(|e| ApiError::bad_request("invalid_body", e))?;
    let id = match body.connection_id.filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => format!(
            "conn_{}",
            crate::auth::random_hex(12).map_err(|e| {
                ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
            })?
        ),
    };
    let connection = terapi_host::Connection {
        id: id.clone(),
        provider: body.provider_config_key.clone(),
        credentials,
        config: body.connection_config,
    };
    let owner = terapi_platform::ConnectionOwner {
        end_user: body.end_user.clone(),
        organization: None,
        tags: body.tags.clone().unwrap_or_default(),
    };
    state.platform.create_connection_for(&connection, Some(&owner)).await?;
    if let Some(Value::Object(metadata)) = &body.metadata {
        state.platform.set_metadata(&id, metadata, false).await?;
    }
    Ok(Json(full(&state.platform.store().connection_summary(&id).await?)))
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

#[derive(Debug, Deserialize)]
pub struct MetadataBody {
    connection_id: Value,
    provider_config_key: String,
    metadata: Value,
}

/// `POST /connections/metadata` (set) and `PATCH` (merge), for one
/// connection id or several.
pub async fn set_metadata(state: Arc<ServeState>, body: MetadataBody, merge: bool) -> Result<Json<Value>, ApiError> {
    let ids: Vec<String> = match &body.connection_id {
        Value::String(id) => vec![id.clone()],
        Value::Array(ids) => ids.iter().filter_map(|id| id.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let Value::Object(metadata) = &body.metadata else {
        return Err(ApiError::bad_request("invalid_body", "`metadata` must be a JSON object"));
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "`connection_id` must be a connection id or a list of them"));
    }
    // All exist before any changes.
    for id in &ids {
        connection(&state, id, &body.provider_config_key).await?;
    }
    for id in &ids {
        state.platform.set_metadata(id, metadata, merge).await?;
    }
    Ok(Json(json!({
        "connection_id": body.connection_id,
        "provider_config_key": body.provider_config_key,
        "metadata": body.metadata,
    })))
}

pub async fn post_metadata(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    set_metadata(state, body, false).await
}

pub async fn patch_metadata(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    set_metadata(state, body, true).await
}

#[derive(Debug, Deserialize)]
pub struct PatchBody {
    end_user: Option<Value>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

/// `PATCH /connections/{id}`: who it is for and its tags.
pub async fn patch(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
    Query(query): Query<KeyQuery>,
    Json(body): Json<PatchBody>,
) -> Result<Json<Value>, ApiError> {
    let summary = connection(&state, &id, required_key(&query)?).await?;
    let end_user = match &body.end_user {
        Some(input) => Some(terapi_platform::EndUser::from_input(input).ok_or_else(|| {
            ApiError::bad_request("invalid_body", "`end_user` needs an `id` (a string), e.g. {\"id\": \"u-1\"}")
        })?),
        None => summary.end_user.as_ref().and_then(terapi_platform::EndUser::from_input),
    };
    // Tags given replace the app's tags; the end user's own are added back.
    let tags = match body.tags {
        Some(tags) => tags,
        None => summary.tags.into_iter().filter(|(k, _)| !k.starts_with("end_user_")).collect(),
    };
    state.platform.set_end_user(&summary.id, end_user.as_ref(), &tags).await?;
    Ok(Json(json!({ "success": true })))
}
