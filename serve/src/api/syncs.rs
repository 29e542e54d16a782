//! `/sync/trigger`, `/sync/start`, `/sync/pause`, `/sync/status`,
//! `/sync/update-connection-frequency`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{connection, rfc3339, rfc3339_ms};
use crate::{ApiError, ServeState, frequency};

/// A sync named by string, or `{name, variant}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SyncName {
    Name(String),
    WithVariant { name: String },
}

impl SyncName {
    fn name(&self) -> &str {
        match self {
            SyncName::Name(n) | SyncName::WithVariant { name: n } => n,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SyncsBody {
    #[serde(default)]
    syncs: Vec<SyncName>,
    provider_config_key: Option<String>,
    connection_id: Option<String>,
    sync_mode: Option<String>,
    full_resync: Option<bool>,
    opts: Option<TriggerOpts>,
}

#[derive(Debug, Deserialize)]
pub struct TriggerOpts {
    reset: Option<bool>,
}

/// The (connection, sync) pairs a body names: its connection, or every
/// connection of the integration; its syncs, or all the component offers.
async fn targets(state: &ServeState, headers: &HeaderMap, body: &SyncsBody) -> Result<Vec<(String, String)>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = body.provider_config_key.clone().or_else(|| header("provider-config-key")).ok_or_else(|| {
        ApiError::bad_request(
            "missing_provider_config_key",
            "`provider_config_key` is required (the integration, e.g. `gong`)",
        )
    })?;
    let offered: Vec<String> = state.platform.describe(&key).await?.syncs.iter().map(|s| s.name.clone()).collect();
    let syncs: Vec<String> =
        if body.syncs.is_empty() { offered.clone() } else { body.syncs.iter().map(|s| s.name().to_string()).collect() };
    if let Some(unknown) = syncs.iter().find(|s| !offered.contains(s)) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_syncs_found",
            format!("integration `{key}` has no sync named `{unknown}`; it offers {}", offered.join(", ")),
        ));
    }
    let connections = match body.connection_id.clone().or_else(|| header("connection-id")) {
        Some(id) => vec![connection(state, &id, &key).await?.id],
        None => state
            .platform
            .store()
            .connections()
            .await?
            .into_iter()
            .filter(|c| c.provider == key)
            .map(|c| c.id)
            .collect(),
    };
    Ok(connections.iter().flat_map(|c| syncs.iter().map(move |s| (c.clone(), s.clone()))).collect())
}

pub async fn trigger(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Json(body): Json<SyncsBody>,
) -> Result<Json<Value>, ApiError> {
    let reset = body.full_resync == Some(true)
        || body.opts.as_ref().and_then(|o| o.reset) == Some(true)
        || body.sync_mode.as_deref().is_some_and(|m| m.starts_with("full_refresh"));
    for (connection, sync) in targets(&state, &headers, &body).await? {
        state.platform.trigger_sync(&connection, &sync, reset).await?;
    }
    Ok(Json(json!({ "success": true })))
}

pub async fn start(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Json(body): Json<SyncsBody>,
) -> Result<Json<Value>, ApiError> {
    change_schedules(&state, &headers, &body, true).await
}

pub async fn pause(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Json(body): Json<SyncsBody>,
) -> Result<Json<Value>, ApiError> {
    change_schedules(&state, &headers, &body, false).await
}

async fn change_schedules(
    state: &ServeState,
    headers: &HeaderMap,
    body: &SyncsBody,
    start: bool,
) -> Result<Json<Value>, ApiError> {
    for (connection, sync) in targets(state, headers, body).await? {
        if start {
            state.platform.start_schedule(&connection, &sync).await?;
        } else {
            state.platform.pause_schedule(&connection, &sync).await?;
        }
    }
    Ok(Json(json!({ "success": true })))
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    syncs: Option<String>,
    provider_config_key: Option<String>,
    connection_id: Option<String>,
}

pub async fn status(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let names = query.syncs.as_deref().unwrap_or("*");
    let body = SyncsBody {
        syncs: if names == "*" {
            Vec::new()
        } else {
            names.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| SyncName::Name(s.to_string())).collect()
        },
        provider_config_key: query.provider_config_key,
        connection_id: query.connection_id,
        sync_mode: None,
        full_resync: None,
        opts: None,
    };
    let description = match body.provider_config_key.as_deref() {
        Some(key) => state.platform.describe(key).await?,
        None => return Err(ApiError::bad_request("missing_provider_config_key", "`provider_config_key` is required")),
    };
    let mut reported = Vec::new();
    for (connection, sync) in targets(&state, &headers, &body).await? {
        let info = state.platform.schedule(&connection, &sync).await?;
        let model = description.syncs.iter().find(|s| s.name == sync).map(|s| s.model.clone()).unwrap_or_default();
        let s = info.state.as_ref();
        let due = s.and_then(|s| s.due_at_ms).is_some_and(|at| at <= terapi_host::limits::unix_ms());
        let status = match (s.map(|s| s.status.as_str()), info.paused) {
            // A yielded run gave its slot away between pages and goes on.
            (Some("running" | "yielded"), _) => "RUNNING",
            (_, true) => "PAUSED",
            // Stopped by a signal, due again at once: it goes on.
            (Some("interrupted"), _) if due => "RUNNING",
            (Some("failed" | "interrupted"), _) => "ERROR",
            (Some("done"), _) => "SUCCESS",
            // Never ran: queued (started, or triggered), or not started.
            (Some("queued") | None, _) if info.started || due => "RUNNING",
            _ => "STOPPED",
        };
        // The last run's outcome; none (left out, as Nango's type has it
        // optional) for a sync that never ran.
        let execution = match s.map(|s| s.status.as_str()) {
            Some("running" | "yielded") => Some("RUNNING"),
            Some("failed" | "interrupted") => Some("ERROR"),
            Some("done") => Some("SUCCESS"),
            _ => None,
        };
        reported.push(json!({
            "id": format!("{connection}:{sync}"),
            "type": if s.is_some_and(|s| s.checkpoint.is_some()) { "INCREMENTAL" } else { "INITIAL" },
            "name": sync,
            "variant": "base",
            "connection_id": connection,
            "status": status,
            "jobStatus": execution.unwrap_or(status),
            "frequency": frequency::format(info.frequency_secs),
            "finishedAt": s.and_then(|s| s.last_finished_at).map(rfc3339),
            "nextScheduledSyncAt": s.and_then(|s| s.due_at_ms).map(rfc3339_ms),
            "recordCount": { model.clone(): s.map(|s| s.records).unwrap_or(0) },
            "checkpoint": null,
            "error": s.and_then(|s| s.last_error.clone()),
        }));
        if let Some(Value::Object(last)) = reported.last_mut() {
            if let Some(execution) = execution {
                last.insert("latestExecutionStatus".into(), execution.into());
            }
            // `Date | undefined` in Nango's type: left out until a run ends.
            if last.get("finishedAt").is_some_and(Value::is_null) {
                last.remove("finishedAt");
            }
        }
    }
    Ok(Json(json!({ "syncs": reported })))
}

#[derive(Debug, Deserialize)]
pub struct FrequencyBody {
    sync_name: String,
    provider_config_key: String,
    connection_id: String,
    frequency: Option<String>,
}

pub async fn update_frequency(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<FrequencyBody>,
) -> Result<Json<Value>, ApiError> {
    let connection = connection(&state, &body.connection_id, &body.provider_config_key).await?;
    let secs = match body.frequency.as_deref() {
        None => None,
        Some(text) => Some(frequency::parse(text).map_err(|e| ApiError::bad_request("invalid_body", e))?),
    };
    let set = state.platform.set_frequency(&connection.id, &body.sync_name, secs).await?;
    Ok(Json(json!({ "frequency": frequency::format(set) })))
}

#[derive(Debug, serde::Deserialize)]
pub struct RunsQuery {
    connection_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /sync/runs` (not Nango's): the run history, newest first, of one
/// connection or of all: start, end, owner, pages, records, outcome.
pub async fn runs(
    State(state): State<Arc<ServeState>>,
    axum::extract::Query(query): axum::extract::Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).min(10_000);
    let runs = state.platform.recent_runs(query.connection_id.as_deref(), limit).await?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}
