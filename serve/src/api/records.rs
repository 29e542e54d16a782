//! `GET /records`: stored records with Nango's `_nango_metadata`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use terapi_store::{LastAction, RecordQuery, StoredRecord};

use super::{connection_from_headers, rfc3339};
use crate::{ApiError, ServeState};

#[derive(Debug, Deserialize)]
pub struct RecordsQuery {
    model: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
    modified_after: Option<String>,
    /// Nango's older name for `modified_after`.
    delta: Option<String>,
    filter: Option<String>,
    variant: Option<String>,
}

const MAX_LIMIT: u32 = 10_000;

pub async fn list(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Query(query): Query<RecordsQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let connection = connection_from_headers(&state, &headers).await?;
    let model = query.model.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query_params",
            "`model` is required, e.g. ?model=GongUser (GET /sync/status shows each sync's models)",
        )
    })?;
    let models: Vec<String> =
        state.platform.describe(&connection.provider).await?.syncs.iter().map(|s| s.model.clone()).collect();
    // Nango's Gong model names read terapi's records in Nango's shapes.
    let view = super::nango_models::view(&connection.provider, &model);
    let model = view.map_or(model, |v| v.model.to_string());
    if !models.contains(&model) {
        let mut known: Vec<&str> = models.iter().map(String::as_str).collect();
        known.extend(super::nango_models::names(&connection.provider));
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_model",
            format!("`{}` has no model `{model}`; its models are {}", connection.provider, known.join(", ")),
        ));
    }
    if query.variant.as_deref().is_some_and(|v| v != "base") {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "sync variants are not supported here; leave `variant` out",
        ));
    }
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(text) => text.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query_params",
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
            )
        })?,
    };
    let modified_after = match query.modified_after.or(query.delta).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(parse_time_ms(&text).map_err(|e| {
            ApiError::bad_request("invalid_query_params", format!("`modified_after` must be an ISO 8601 time ({e})"))
        })?),
    };
    let actions = match query.filter.as_deref().filter(|f| !f.is_empty()) {
        None => Vec::new(),
        Some(filter) => parse_filter(filter)?,
    };
    // Only these record ids: `ids=a&ids=b` (as @nangohq/node sends them) or `ids=a,b`.
    let ids: Vec<String> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "ids")
        .flat_map(|(_, value)| value.split(',').map(|id| id.trim().to_string()).collect::<Vec<_>>())
        .filter(|id| !id.is_empty())
        .collect();
    if ids.len() > 10_000 {
        return Err(ApiError::bad_request("invalid_query_params", "`ids` takes at most 10,000 ids"));
    }
    let page = state
        .platform
        .store()
        .records(&RecordQuery {
            connection_id: connection.id,
            model,
            modified_after_ms: modified_after,
            cursor: query.cursor.filter(|c| !c.is_empty()),
            limit,
            // Nango lists deleted records too, marked: that is how apps learn of them.
            include_deleted: true,
            actions,
            ids,
        })
        .await?;
    let records: Vec<Value> = page.records.iter().map(|r| with_metadata(r, view.map(|v| v.map))).collect();
    Ok(Json(json!({ "records": records, "next_cursor": page.next_cursor })))
}

fn with_metadata(record: &StoredRecord, view: Option<fn(&Value) -> Value>) -> Value {
    let stored = serde_json::from_str::<Value>(&record.json);
    // A pruned record has no payload to show in another shape.
    let shown = match (stored, view) {
        (Ok(value), Some(map)) if record.pruned_at.is_none() => Ok(map(&value)),
        (other, _) => other,
    };
    let mut object = match shown {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("value".to_string(), other)]),
        Err(_) => Map::new(),
    };
    object.entry("id").or_insert_with(|| Value::String(record.id.clone()));
    object.insert(
        "_nango_metadata".into(),
        json!({
            "first_seen_at": rfc3339(record.first_seen_at),
            "last_modified_at": terapi_store::time::rfc3339_ms(record.changed_at_ms),
            "last_action": record.last_action.as_str(),
            "deleted_at": record.deleted_at.map(rfc3339),
            "pruned_at": record.pruned_at.map(rfc3339),
            "cursor": record.cursor,
        }),
    );
    Value::Object(object)
}

/// `added`, `updated,deleted`, … (either case).
fn parse_filter(filter: &str) -> Result<Vec<LastAction>, ApiError> {
    filter
        .split(',')
        .map(|part| match part.trim().to_ascii_lowercase().as_str() {
            "added" => Ok(LastAction::Added),
            "updated" => Ok(LastAction::Updated),
            "deleted" => Ok(LastAction::Deleted),
            _ => Err(ApiError::bad_request(
                "invalid_query_params",
                "`filter` takes added, updated or deleted, or two of them joined by a comma",
            )),
        })
        .collect()
}

/// Unix ms of RFC 3339 (milliseconds kept, as the webhook's `modifiedAfter`
/// has them), or of a bare date (`2026-01-31`) as Nango accepts.
fn parse_time_ms(text: &str) -> Result<u64, String> {
    terapi_store::time::parse_ms(text)
}

#[derive(Debug, Deserialize)]
pub struct PruneBody {
    model: String,
    until_cursor: String,
    limit: Option<u32>,
}

/// `PATCH /records/prune` (`pruneRecords`): empties the payloads of records
/// up to a cursor (a record's `_nango_metadata.cursor`), keeping their
/// metadata; a later sync restores them.
pub async fn prune(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Json(body): Json<PruneBody>,
) -> Result<Json<Value>, ApiError> {
    let connection = connection_from_headers(&state, &headers).await?;
    let limit = body.limit.unwrap_or(1_000).clamp(1, MAX_LIMIT);
    let (count, more) =
        state.platform.store().prune_records(&connection.id, &body.model, &body.until_cursor, limit).await?;
    Ok(Json(json!({ "count": count, "has_more": more })))
}
