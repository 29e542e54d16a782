//! MCP's streamable HTTP transport at `/mcp`, behind two checks of ours:
//!
//! - **Origin.** A browser sends `Origin` with every cross-origin request.
//!   The endpoint acts with the connection's credential and has no login,
//!   so a page from anywhere but loopback gets 403 (MCP's transport spec
//!   asks servers to validate `Origin` against DNS rebinding; rmcp checks
//!   `Host`, which stays on too).
//! - **JSON-RPC errors** (`jsonrpc::check`): a body that is not JSON or not
//!   JSON-RPC gets 400 with -32700 / -32600; a known method with wrong
//!   params gets 200 with -32602 and the request's id, as any other answer.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::{ToolServer, jsonrpc};

/// A request body may be this long.
const MAX_BODY_BYTES: usize = 8 << 20;

pub fn router(server: ToolServer) -> axum::Router {
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(loopback_gate))
}

/// For `terapi serve`: every request carries a bearer token (checked by the
/// layer in front, which also names the connection), so neither `Host` nor
/// `Origin` is what keeps strangers out, and the server may sit behind any
/// host name. A browser page elsewhere cannot send the token without a CORS
/// preflight, which this endpoint never grants.
pub fn served_service<S: Clone + Send + Sync + 'static>(server: ToolServer) -> axum::routing::MethodRouter<S> {
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    );
    axum::routing::any_service(service).layer(axum::middleware::from_fn(json_rpc_gate))
}

async fn loopback_gate(request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && !is_loopback_origin(origin)
    {
        return answer(
            StatusCode::FORBIDDEN,
            serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message":
                "Forbidden: this MCP endpoint answers pages served from loopback only (the request's Origin is elsewhere)"}}),
        );
    }
    json_rpc_gate(request, next).await
}

async fn json_rpc_gate(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": jsonrpc::INVALID_REQUEST,
                    "message": format!("Invalid Request: a message may be {MAX_BODY_BYTES} bytes at most")}}),
            );
        }
    };
    if let Err(refusal) = jsonrpc::check(&bytes) {
        // A request that is not JSON-RPC is an HTTP error; a JSON-RPC
        // request with bad params is answered like any request.
        let status = if refusal.code == jsonrpc::INVALID_PARAMS { StatusCode::OK } else { StatusCode::BAD_REQUEST };
        return answer(status, refusal.response);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `http://127.0.0.1:8750`, `http://localhost`, `http://[::1]:3000` (any
/// scheme and port). `null` (a sandboxed or file page) is not loopback.
fn is_loopback_origin(origin: &HeaderValue) -> bool {
    let Some(url) = origin.to_str().ok().and_then(|text| url::Url::parse(text).ok()) else { return false };
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_origins_pass() {
        for good in ["http://127.0.0.1:8750", "http://localhost", "https://LOCALHOST:3000", "http://[::1]:1"] {
            assert!(is_loopback_origin(&HeaderValue::from_static(good)), "{good}");
        }
        for bad in ["https://evil.example", "null", "http://127.0.0.1.evil.example", "http://10.0.0.1", ""] {
            assert!(!is_loopback_origin(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
