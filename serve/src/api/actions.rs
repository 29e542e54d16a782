//! `POST /action/trigger`: runs one of the component's actions.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::connection_from_headers;
use crate::{ApiError, ServeState};

#[derive(Debug, Deserialize)]
pub struct TriggerBody {
    action_name: String,
    #[serde(default)]
    input: Value,
}

pub async fn trigger(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    Json(body): Json<TriggerBody>,
) -> Result<Json<Value>, ApiError> {
    if headers.get("x-async").and_then(|v| v.to_str().ok()) == Some("true") {
        return Err(ApiError::bad_request(
            "invalid_headers",
            "asynchronous actions are not supported here; leave X-Async out",
        ));
    }
    let connection = connection_from_headers(&state, &headers).await?;
    let input = match body.input {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    };
    let session = state.platform.session(&connection.id).await?;
    let output = session.run_action(&body.action_name, &input).await.map_err(terapi_platform::PlatformError::from)?;
    let value = serde_json::from_str(&output).unwrap_or(Value::String(output));
    Ok(Json(value))
}
