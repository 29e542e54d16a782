//! `/governance/*` (under the secret key): the tool governance an operator
//! manages with `terapi tool|toolset|profile|mcp user`, for an admin UI.
//! Not part of Nango's API; the rules are the platform's.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use terapi_platform::{DefaultClassification, Grant, ProfileEdit, ToolDecision};

use crate::{ApiError, ServeState};

type Answer = Result<Json<Value>, ApiError>;

fn to_json(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))
}

pub async fn connection_tools(State(state): State<Arc<ServeState>>, Path(connection): Path<String>) -> Answer {
    let listed = state.platform.tools(&connection).await?;
    let tools: Vec<Value> = listed
        .tools
        .iter()
        .map(|t| {
            json!({"name": t.action.name, "status": t.status.as_str(), "read_only": t.action.read_only,
                "toolsets": t.toolsets, "description": t.action.description})
        })
        .collect();
    Ok(Json(json!({"connection": connection, "default": listed.default.as_str(), "tools": tools})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsChange {
    default: Option<String>,
    #[serde(default)]
    approve: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    reset: Vec<String>,
}

pub async fn change_connection_tools(
    State(state): State<Arc<ServeState>>,
    Path(connection): Path<String>,
    Json(change): Json<ToolsChange>,
) -> Answer {
    // Checked before anything changes.
    let default = change.default.as_deref().map(DefaultClassification::parse).transpose()?;
    if let Some(default) = default {
        state.platform.set_tool_default(&connection, default).await?;
    }
    for (tools, decision) in [
        (&change.approve, ToolDecision::Approve),
        (&change.deny, ToolDecision::Deny),
        (&change.reset, ToolDecision::Reset),
    ] {
        if !tools.is_empty() {
            state.platform.decide_tools(&connection, tools, decision).await?;
        }
    }
    connection_tools(State(state), Path(connection)).await
}

pub async fn toolsets(State(state): State<Arc<ServeState>>) -> Answer {
    to_json(json!({"toolsets": state.platform.toolsets().await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToolset {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tools: Vec<String>,
}

pub async fn create_toolset(State(state): State<Arc<ServeState>>, Json(body): Json<NewToolset>) -> Answer {
    state.platform.create_toolset(&body.name, &body.description, &body.tools).await?;
    Ok(Json(json!({"name": body.name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsetChange {
    description: Option<String>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

pub async fn change_toolset(
    State(state): State<Arc<ServeState>>,
    Path(name): Path<String>,
    Json(change): Json<ToolsetChange>,
) -> Answer {
    to_json(state.platform.edit_toolset(&name, &change.add, &change.remove, change.description.as_deref()).await?)
}

pub async fn delete_toolset(State(state): State<Arc<ServeState>>, Path(name): Path<String>) -> Answer {
    state.platform.delete_toolset(&name).await?;
    Ok(Json(json!({"success": true})))
}

pub async fn profiles(State(state): State<Arc<ServeState>>) -> Answer {
    to_json(json!({"access_profiles": state.platform.access_profiles().await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn create_profile(State(state): State<Arc<ServeState>>, Json(body): Json<NewProfile>) -> Answer {
    state.platform.create_access_profile(&body.name, &body.description).await?;
    Ok(Json(json!({"name": body.name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    description: Option<String>,
    #[serde(default)]
    grant: Vec<Grant>,
    #[serde(default)]
    revoke: Vec<Grant>,
    #[serde(default)]
    add_users: Vec<String>,
    #[serde(default)]
    remove_users: Vec<String>,
}

pub async fn change_profile(
    State(state): State<Arc<ServeState>>,
    Path(name): Path<String>,
    Json(change): Json<ProfileChange>,
) -> Answer {
    let edit = ProfileEdit {
        description: change.description,
        grant: change.grant,
        revoke: change.revoke,
        add_users: change.add_users,
        remove_users: change.remove_users,
    };
    to_json(state.platform.edit_access_profile(&name, &edit).await?)
}

pub async fn delete_profile(State(state): State<Arc<ServeState>>, Path(name): Path<String>) -> Answer {
    state.platform.delete_access_profile(&name).await?;
    Ok(Json(json!({"success": true})))
}

pub async fn users(State(state): State<Arc<ServeState>>) -> Answer {
    to_json(json!({"users": state.platform.mcp_users().await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    /// The token stops working after this many seconds.
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// The token is in this answer only; the store keeps its hash.
pub async fn create_user(State(state): State<Arc<ServeState>>, Json(body): Json<NewUser>) -> Answer {
    let valid_for = body.expires_in_secs.map(std::time::Duration::from_secs);
    let token = state.platform.create_mcp_user(&body.name, valid_for).await?;
    Ok(Json(json!({"name": body.name, "token": token})))
}

pub async fn rotate_user_token(
    State(state): State<Arc<ServeState>>,
    Path(name): Path<String>,
    body: Option<Json<NewToken>>,
) -> Answer {
    let valid_for = body.and_then(|Json(b)| b.expires_in_secs).map(std::time::Duration::from_secs);
    let token = state.platform.rotate_mcp_user_token(&name, valid_for).await?;
    Ok(Json(json!({"name": name, "token": token})))
}

pub async fn delete_user(State(state): State<Arc<ServeState>>, Path(name): Path<String>) -> Answer {
    state.platform.delete_mcp_user(&name).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
}

pub async fn audit(State(state): State<Arc<ServeState>>, Query(query): Query<AuditQuery>) -> Answer {
    let limit = query.limit.unwrap_or(100).min(10_000);
    to_json(json!({"entries": state.platform.store().audit_entries(limit).await?}))
}
