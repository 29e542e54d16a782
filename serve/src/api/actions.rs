//! `POST /action/trigger`: runs one of the component's actions.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
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
) -> Result<Response, ApiError> {
    let connection = connection_from_headers(&state, &headers).await?;
    let input = match body.input {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    };
    // `X-Async: true`: answered at once; the result is kept in the store.
    if headers.get("x-async").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let id = state.platform.start_action(&connection.id, &body.action_name, input).await?;
        let answer = serde_json::json!({ "id": id, "statusUrl": format!("/action/{id}") });
        return Ok((axum::http::StatusCode::ACCEPTED, Json(answer)).into_response());
    }
    let session = state.platform.session(&connection.id).await?;
    let output = session.run_action(&body.action_name, &input).await.map_err(terapi_platform::PlatformError::from)?;
    let value = serde_json::from_str(&output).unwrap_or(Value::String(output));
    Ok(Json(value).into_response())
}

/// `GET /action/{id}` (`getAsyncActionResult`): the output of a finished
/// async action; 404 while it runs (as for an unknown id: no result yet),
/// 500 `action_script_failure` if it failed.
pub async fn result(
    State(state): State<Arc<ServeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = |message: String| ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", message);
    let action =
        state.platform.store().async_action(&id).await?.ok_or_else(|| not_found(format!("no action `{id}`")))?;
    match action.status.as_str() {
        "done" => {
            let output = action.output.unwrap_or_default();
            Ok(Json(serde_json::from_str(&output).unwrap_or(Value::String(output))))
        }
        "failed" => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "action_script_failure",
            action.error.unwrap_or_default(),
        )),
        _ => Err(not_found(format!("action `{id}` ({}) has not finished yet; ask again shortly", action.action))),
    }
}
