//! `/mcp` and `/mcp/{connection}`: the governed tools over MCP's streamable
//! HTTP, each request authenticated by its user's bearer token (`terapi mcp
//! user add`). The token names the user; the URL names the connection
//! (`/mcp` alone: the only connection the user's profiles reach). What the
//! user sees and may call is the platform's governance, read per request,
//! so a revoked token or grant stops working at once.
//!
//! An MCP session belongs to the user and connection that opened it: a
//! request with another's session id is refused, so a leaked session id is
//! worth nothing without its token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use terapi_mcp::{McpTarget, ToolServer};
use terapi_platform::Caller;

use crate::ServeState;

const SESSION_HEADER: &str = "mcp-session-id";

/// Which user and connection opened each MCP session.
#[derive(Default)]
pub struct McpSessions {
    owners: Mutex<HashMap<String, (String, String)>>,
}

pub fn routes(state: Arc<ServeState>) -> axum::Router<Arc<ServeState>> {
    let service = ToolServer::served(state.platform.clone()).served_service();
    axum::Router::new()
        .route("/mcp", service.clone())
        .route("/mcp/{connection}", service)
        .route_layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// An MCP-shaped refusal: the HTTP status says what happened, the body is
/// JSON-RPC, and a 401 says how to authenticate (RFC 6750).
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": message.into()}});
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"terapi-mcp\""));
    }
    response
}

fn server_error(error: impl std::fmt::Display) -> Response {
    tracing::error!("MCP: {error}");
    refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the server could not check the request: {error}"))
}

async fn authenticate(State(state): State<Arc<ServeState>>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .map(str::trim);
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no bearer token; send `Authorization: Bearer <your token>` (an operator makes one with `terapi mcp user add NAME`)",
        );
    };
    // Never echo the token: it may be a real one sent to the wrong place.
    let user = match state.platform.mcp_user_for_token(token).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid (replaced, its user removed, or never made here); ask an operator for a new one",
            );
        }
        Err(e) => return server_error(e),
    };
    let caller = Caller::User(user.clone());
    let reachable = match state.platform.reachable_connections(&caller).await {
        Ok(reachable) => reachable,
        Err(e) => return server_error(e),
    };
    let named = request.uri().path().strip_prefix("/mcp/").map(str::to_string).filter(|c| !c.is_empty());
    let connection = match named {
        Some(connection) if reachable.contains(&connection) => connection,
        // The same answer whether the connection exists or not: a user
        // learns nothing of connections outside their profiles.
        Some(connection) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "none of your access profiles grants tools on connection `{connection}`; ask an operator \
                     (`terapi profile grant`)"
                ),
            );
        }
        None => match reachable.as_slice() {
            [only] => only.clone(),
            [] => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "none of your access profiles grants tools on any connection; ask an operator (`terapi profile grant`)",
                );
            }
            many => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "your access profiles reach {} connections ({}); connect to /mcp/CONNECTION for one of them",
                        many.len(),
                        many.iter().take(10).map(String::as_str).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        },
    };
    let owner = (user.clone(), connection.clone());
    let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(session) = &session {
        let owners = state.mcp_sessions.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.get(session).is_some_and(|known| *known != owner) {
            return refuse(StatusCode::NOT_FOUND, "no such MCP session for this user and connection; initialize again");
        }
    }
    let closing = request.method() == axum::http::Method::DELETE;
    request.extensions_mut().insert(McpTarget { connection, user });
    let response = next.run(request).await;
    let mut owners = state.mcp_sessions.owners.lock().unwrap_or_else(|p| p.into_inner());
    match (&session, response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
        (None, Some(opened)) => {
            owners.insert(opened.to_string(), owner);
        }
        (Some(session), _) if closing => {
            owners.remove(session);
        }
        _ => {}
    }
    response
}
