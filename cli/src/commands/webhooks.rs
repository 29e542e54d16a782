//! `terapi webhooks serve`: receives Gong Automation Rule POSTs (`{callData,
//! isTest}`) over HTTP. Checking the signature, mapping and storing are the
//! platform's (`webhooks::verify_signature`, `Platform::ingest_webhook`);
//! this is the HTTP side.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::DecodingKey;
use serde_json::json;
use terapi_host::{Error, ProviderFailure};
use terapi_platform::{Platform, PlatformError, WebhookOutcome, webhooks};

use crate::WebhooksCommand;
use crate::app::App;

struct WebhookServer {
    platform: Platform,
    connection: String,
    /// Gong's public key for signed rules; `None` accepts unsigned payloads.
    public_key: Option<DecodingKey>,
}

pub async fn run(app: &App, command: WebhooksCommand) -> Result<ExitCode> {
    let WebhooksCommand::Serve { bind, connection, public_key, max_body_bytes } = command;
    let public_key = match public_key {
        Some(path) => {
            let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Some(
                DecodingKey::from_rsa_pem(&pem)
                    .with_context(|| format!("{} is not an RSA public key in PEM form", path.display()))?,
            )
        }
        None => None,
    };
    let platform = app.platform().await?;
    platform.store().connection_summary(&connection).await?;
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("listening on {bind}"))?;
    let address = listener.local_addr()?;
    let signed = if public_key.is_some() { "signed payloads only" } else { "unsigned payloads accepted" };
    eprintln!("listening on http://{address}/webhooks/gong ({signed})");
    let server = Arc::new(WebhookServer { platform, connection, public_key });
    let router = Router::new()
        .route("/webhooks/gong", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(server);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the webhook server stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn receive(State(server): State<Arc<WebhookServer>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let reply = |status: StatusCode, body: serde_json::Value| (status, axum::Json(body)).into_response();
    if let Some(key) = &server.public_key {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        if let Err(reason) = webhooks::verify_signature(authorization, &body, key) {
            tracing::warn!("webhook rejected: {reason}");
            return reply(StatusCode::UNAUTHORIZED, json!({ "error": reason }));
        }
    }
    match server.platform.ingest_webhook(&server.connection, &body).await {
        Ok(WebhookOutcome::Test) => {
            reply(StatusCode::OK, json!({ "status": "test delivery acknowledged; nothing stored" }))
        }
        Ok(WebhookOutcome::Stored { model, records }) => {
            reply(StatusCode::OK, json!({ "status": "stored", "model": model, "records": records }))
        }
        Err(PlatformError::Host(Error::Provider(ProviderFailure::InvalidInput(reason)))) => {
            tracing::warn!("webhook rejected: {reason}");
            reply(StatusCode::BAD_REQUEST, json!({ "error": reason }))
        }
        Err(PlatformError::Store(e)) => {
            tracing::error!("webhook records could not be stored: {e}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": "the records could not be stored" }))
        }
        Err(e) => {
            tracing::error!("webhook failed: {e}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e.to_string() }))
        }
    }
}
