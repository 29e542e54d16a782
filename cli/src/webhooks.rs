//! `terapi webhooks serve`: receives Gong Automation Rule POSTs
//! (`{callData, isTest}`), checks their signature when a public key is
//! configured, has the component map them to `calls` records, and upserts
//! those into the store (a payload delivered twice is stored once).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;
use terapi_host::{Connection, Error, ProviderComponent, ProviderFailure, Providers, Runtime};
use terapi_store::Store;

pub struct WebhookServer {
    pub runtime: Runtime,
    pub component: ProviderComponent,
    pub providers: Providers,
    pub connection: Connection,
    pub store: Store,
    /// Gong's public key for signed rules; `None` accepts unsigned payloads.
    pub public_key: Option<DecodingKey>,
}

pub fn router(server: Arc<WebhookServer>, max_body_bytes: usize) -> Router {
    Router::new().route("/webhooks/gong", post(receive)).layer(DefaultBodyLimit::max(max_body_bytes)).with_state(server)
}

/// The claims we rely on. Gong signs with RS256; `body_sha256` binds the
/// token to this body, so a captured token cannot carry another payload.
#[derive(Deserialize)]
struct Claims {
    body_sha256: Option<String>,
}

fn verify(headers: &HeaderMap, body: &[u8], key: &DecodingKey) -> Result<(), String> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header with a signed token")?;
    let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
    let mut validation = Validation::new(Algorithm::RS256);
    // Gong's tokens may carry no `exp`; when they do, it is checked.
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| format!("bad signature or token: {e}"))?;
    let expected: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    match claims.claims.body_sha256 {
        Some(hash) if hash.eq_ignore_ascii_case(&expected) => Ok(()),
        Some(_) => Err("the token was signed for another body".into()),
        None => Err("the token carries no body_sha256 claim".into()),
    }
}

async fn receive(State(server): State<Arc<WebhookServer>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let reply = |status: StatusCode, body: serde_json::Value| (status, axum::Json(body)).into_response();
    if let Some(key) = &server.public_key
        && let Err(reason) = verify(&headers, &body, key)
    {
        tracing::warn!("webhook rejected: {reason}");
        return reply(StatusCode::UNAUTHORIZED, json!({ "error": reason }));
    }
    let spec = match server.providers.get(&server.connection.provider) {
        Ok(spec) => spec,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e.to_string() })),
    };
    let mapped = match server.runtime.connect(&server.component, spec, &server.connection) {
        Ok(session) => session.handle_webhook(&body).await,
        Err(e) => Err(e),
    };
    let mapped = match mapped {
        Ok(mapped) => mapped,
        Err(Error::Provider(ProviderFailure::InvalidInput(reason))) => {
            tracing::warn!("webhook rejected: {reason}");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": reason }));
        }
        Err(e) => {
            tracing::error!("webhook failed: {e}");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e.to_string() }));
        }
    };
    if mapped.is_test {
        return reply(StatusCode::OK, json!({ "status": "test delivery acknowledged; nothing stored" }));
    }
    match server.store.upsert_records(&server.connection.id, &mapped.model, &mapped.records) {
        Ok(()) => {
            reply(StatusCode::OK, json!({ "status": "stored", "model": mapped.model, "records": mapped.records.len() }))
        }
        Err(e) => {
            tracing::error!("webhook records could not be stored: {e}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": "the records could not be stored" }))
        }
    }
}
