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

use crate::app::{App, when};

/// Where the store's webhook events go (change webhooks after sync runs,
/// auth webhooks for new connections). Every `terapi serve` and `terapi
/// worker` given them delivers events, sharing the work.
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// The app's webhook URL.
    #[arg(long, env = "TERAPI_WEBHOOK_URL")]
    pub webhook_url: Option<url::Url>,
    /// Signs webhooks (X-Nango-Hmac-Sha256); give the same to the app.
    #[arg(long, env = "TERAPI_WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    pub webhook_signing_key: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum WebhooksCommand {
    /// Listen for POSTs to /webhooks/gong and store what they carry.
    Serve {
        /// Address to listen on (port 0: any free port; printed on start).
        #[arg(long, default_value = "127.0.0.1:8787")]
        bind: std::net::SocketAddr,
        /// The saved connection the records belong to (default: the only one).
        #[command(flatten)]
        connection: crate::commands::connection_args::ConnectionArg,
        /// Gong's public key (PEM) for signed rules; unsigned or badly signed
        /// payloads are then rejected with 401.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<std::path::PathBuf>,
        /// The URL Gong's rule posts to, as Gong sees it (behind a proxy, the
        /// public one): a signed token's `webhook_url` must name it.
        #[arg(long, value_name = "URL", env = "TERAPI_WEBHOOK_PUBLIC_URL")]
        public_url: Option<String>,
        /// How old (seconds since Gong signed it) a delivery may be; older
        /// ones are refused as possible replays.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        max_age: u64,
        /// Largest body accepted, in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
    },
    /// The webhook events in the store's outbox, newest first: sent,
    /// pending (with their next attempt) or given up.
    Events {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The delivery log: every attempt, newest first, with the receiver's
    /// answer or why it could not be reached.
    Deliveries {
        /// Only this event's attempts.
        #[arg(long)]
        event: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

struct WebhookServer {
    platform: Platform,
    connection: String,
    /// Checks Gong's signed rules; `None` accepts unsigned payloads.
    verifier: Option<webhooks::WebhookVerifier>,
}

pub async fn run(app: &App, command: WebhooksCommand) -> Result<ExitCode> {
    let (bind, connection, public_key, public_url, max_age, max_body_bytes) = match command {
        WebhooksCommand::Serve { bind, connection, public_key, public_url, max_age, max_body_bytes } => {
            (bind, connection, public_key, public_url, max_age, max_body_bytes)
        }
        WebhooksCommand::Events { limit, json } => return events(app, limit, json).await,
        WebhooksCommand::Deliveries { event, limit, json } => {
            return deliveries(app, event.as_deref(), limit, json).await;
        }
    };
    let verifier = match public_key {
        Some(path) => {
            let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .with_context(|| format!("{} is not an RSA public key in PEM form", path.display()))?;
            if public_url.is_none() {
                tracing::warn!("no --public-url: a signed delivery's webhook_url is not checked against this receiver");
            }
            Some(webhooks::WebhookVerifier { key, public_url, max_age: std::time::Duration::from_secs(max_age) })
        }
        None => None,
    };
    let platform = app.platform().await?;
    let connection = connection.resolve(platform.store().as_ref()).await?;
    platform.store().connection_summary(&connection).await?;
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("listening on {bind}"))?;
    let address = listener.local_addr()?;
    let signed = if verifier.is_some() { "signed payloads only" } else { "unsigned payloads accepted" };
    eprintln!("listening on http://{address}/webhooks/gong ({signed})");
    let server = Arc::new(WebhookServer { platform, connection, verifier });
    let router = Router::new()
        .route("/webhooks/gong", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(server);
    // The same connection limits as `terapi serve`: clients that send
    // nothing or trickle cannot lock the receiver.
    let stop = tokio_util::sync::CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stopping.cancel();
    });
    terapi_serve::connections::serve(listener, router, terapi_serve::ConnectionLimits::default(), stop)
        .await
        .context("the webhook server stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn receive(State(server): State<Arc<WebhookServer>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let reply = |status: StatusCode, body: serde_json::Value| (status, axum::Json(body)).into_response();
    let mut delivery = None;
    if let Some(verifier) = &server.verifier {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        match verifier.verify(authorization, &body, terapi_store::unix_now()) {
            Ok(verified) => delivery = Some(verified),
            Err(reason) => {
                tracing::warn!("webhook rejected: {reason}");
                return reply(StatusCode::UNAUTHORIZED, json!({ "error": reason }));
            }
        }
    }
    match server.platform.ingest_webhook(&server.connection, &body, delivery.as_ref()).await {
        Ok(WebhookOutcome::Duplicate) => {
            reply(StatusCode::OK, json!({ "status": "delivered before; nothing stored again" }))
        }
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

/// `terapi webhooks events`.
async fn events(app: &App, limit: u32, json: bool) -> Result<ExitCode> {
    let events = app.store().await?.events(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        eprintln!("no webhook events yet: sync runs and new connections write them");
    }
    for event in events {
        let state = match event.status.as_str() {
            "pending" if event.attempts > 0 => {
                format!("pending, next attempt {}", when(Some(event.next_attempt_at_ms / 1000)))
            }
            other => other.to_string(),
        };
        println!(
            "{}  {:<4}  {:<24}  {}  {} attempt(s)  created {}{}",
            event.id,
            event.kind,
            event.connection_id,
            state,
            event.attempts,
            when(Some(event.created_at_ms / 1000)),
            event.last_error.map(|e| format!("  last: {e}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `terapi webhooks deliveries`.
async fn deliveries(app: &App, event: Option<&str>, limit: u32, json: bool) -> Result<ExitCode> {
    let deliveries = app.store().await?.deliveries(event, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&deliveries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if deliveries.is_empty() {
        eprintln!(
            "no deliveries yet: run `terapi serve` or `terapi worker` with --webhook-url (TERAPI_WEBHOOK_URL) to send events"
        );
    }
    for d in deliveries {
        let outcome = match (d.status_code, &d.error) {
            (Some(code), None) => format!("{code} ok"),
            (_, Some(error)) => error.clone(),
            (None, None) => "sent".into(),
        };
        println!(
            "{}  {}  attempt {}  {} ms  {}  to {}  by {}",
            when(Some(d.at_ms / 1000)),
            d.event_id,
            d.attempt,
            d.duration_ms,
            outcome,
            d.url,
            d.owner
        );
    }
    Ok(ExitCode::SUCCESS)
}
