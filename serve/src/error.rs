//! Errors in Nango's shape, `{"error": {"code", "message"}}`, with the
//! status a Nango client expects. Messages come from the platform, which
//! scrubs provider text of secrets first.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use terapi_host::{EgressError, ProviderFailure};
use terapi_platform::{GovernanceProblem, PlatformError};
use terapi_store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unknown_connection(id: &str, provider_config_key: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_connection",
            format!("no connection `{id}` for integration `{provider_config_key}`; GET /connections lists them"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        match e {
            StoreError::NoConnection(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_connection", message),
            StoreError::ConnectionExists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::SyncRunning { .. } => ApiError::new(StatusCode::CONFLICT, "sync_running", message),
            StoreError::BadQuery(_) => ApiError::bad_request("invalid_query_params", message),
            // A database restarting or failing over: the app retries.
            StoreError::Unavailable { .. } => {
                tracing::warn!("store: {message}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "the store is unavailable for a moment (a database restart or failover); try again in a few seconds"
                        .to_string(),
                )
            }
            _ => {
                tracing::error!("store: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            }
        }
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> ApiError {
        let message = e.to_string();
        match e {
            PlatformError::Store(e) => e.into(),
            PlatformError::NoSync { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown_sync", message),
            PlatformError::NoAction(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_action", message),
            PlatformError::NoComponent { .. } | PlatformError::Config(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_provider_config", message)
            }
            PlatformError::NotSaved { .. } => ApiError::bad_request("connection_test_failed", message),
            PlatformError::Connection(_) => ApiError::bad_request("invalid_connection_config", message),
            PlatformError::NotOAuth(_) | PlatformError::NoOAuthClient(_) => {
                ApiError::bad_request("invalid_auth_mode", message)
            }
            PlatformError::Host(host) => host_error(host, message),
            PlatformError::Governance { problem, .. } => match problem {
                GovernanceProblem::Invalid => ApiError::bad_request("invalid_body", message),
                GovernanceProblem::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
                GovernanceProblem::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            },
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", message),
        }
    }
}

fn host_error(e: terapi_host::Error, message: String) -> ApiError {
    use terapi_host::Error;
    let http = |e: &EgressError| match e {
        EgressError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
        EgressError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "provider_timeout"),
        EgressError::Refused(_) => (StatusCode::BAD_REQUEST, "proxy_refused"),
        EgressError::Reauthorize(_) => (StatusCode::FAILED_DEPENDENCY, "invalid_credentials"),
        EgressError::TooLarge(_) => (StatusCode::BAD_GATEWAY, "response_too_large"),
        EgressError::Transport(_) => (StatusCode::BAD_GATEWAY, "provider_unreachable"),
    };
    let (status, code) = match &e {
        Error::Provider(p) => match p {
            // The app's own key is fine: the provider refused the
            // connection's credential, so 424, not 401.
            ProviderFailure::Unauthorized(_) => (StatusCode::FAILED_DEPENDENCY, "invalid_credentials"),
            ProviderFailure::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_action_input"),
            ProviderFailure::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ProviderFailure::NotAvailable(_) => (StatusCode::FORBIDDEN, "not_available"),
            ProviderFailure::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
            ProviderFailure::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_action"),
            ProviderFailure::Http(h) => http(h),
            ProviderFailure::Remote { .. } | ProviderFailure::BadResponse(_) => {
                (StatusCode::BAD_GATEWAY, "provider_error")
            }
        },
        Error::Http(h) => http(h),
        Error::Connection { .. } | Error::Config(_) => (StatusCode::BAD_REQUEST, "invalid_connection_config"),
        Error::Guest(_) | Error::Load(_) | Error::Sync(_) => (StatusCode::INTERNAL_SERVER_ERROR, "script_error"),
    };
    ApiError::new(status, code, message)
}
