//! terapi as a service: the platform layer behind Nango's public HTTP API,
//! so an app written against Nango (`@nangohq/node`) works by changing only
//! the host.
//!
//! ```text
//!             ┌ /records /sync/* /action/trigger /proxy/* /connections /providers /integrations /connect/sessions
//! app ──HTTP──┤   (secret key, hashed in the store)
//!             ├ /governance/*  (tool governance, secret key)
//!             └ /connect?session_token=…  (the end user's Connect page: paste key and secret, or OAuth)
//! MCP client ── /mcp/{connection} (a user's bearer token; governed tools)
//!                     │
//!                  Platform ── scheduler (due syncs, a bounded pool) ── webhook events (the store's outbox, HMAC-signed, retried)
//! ```
//!
//! Nothing here holds state of its own beyond caches: schedules, keys and
//! sessions live in the store, so several servers and workers can share one
//! PostgreSQL database.

mod api;
pub mod auth;
mod connect;
pub mod connections;
mod dashboard;
mod error;
pub mod frequency;
mod html;
mod mcp;
pub mod openapi;
mod state;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{any, get, post, put};
use terapi_platform::WorkerOptions;

pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use state::{ConnectPageConfig, ServeConfig, ServeState};

/// The whole HTTP surface. Requests larger than 8 MiB are refused.
pub fn router(state: Arc<ServeState>) -> Router {
    let authenticated = Router::new()
        .route("/providers", get(api::providers::list_providers))
        .route("/providers/{provider}", get(api::providers::get_provider))
        .route("/integrations", get(api::providers::list_integrations))
        .route("/integrations/{key}", get(api::providers::get_integration))
        .route("/integrations/{key}/functions", get(api::providers::list_functions))
        .route("/integrations/{key}/functions/{name}", get(api::providers::get_function))
        .route("/scripts/config", get(api::providers::scripts_config))
        .route("/connections", get(api::connections::list).post(api::connections::import))
        .route("/connection", get(api::connections::list))
        .route("/connections/metadata", post(api::connections::post_metadata).patch(api::connections::patch_metadata))
        .route("/connection/metadata", post(api::connections::post_metadata).patch(api::connections::patch_metadata))
        .route(
            "/connections/{id}",
            get(api::connections::get).delete(api::connections::delete).patch(api::connections::patch),
        )
        .route("/connection/{id}", get(api::connections::get).delete(api::connections::delete))
        .route("/records", get(api::records::list))
        .route("/records/", get(api::records::list))
        .route("/records/prune", axum::routing::patch(api::records::prune))
        .route("/sync/trigger", post(api::syncs::trigger))
        .route("/sync/start", post(api::syncs::start))
        .route("/sync/pause", post(api::syncs::pause))
        .route("/sync/status", get(api::syncs::status))
        .route("/sync/runs", get(api::syncs::runs))
        .route("/sync/update-connection-frequency", put(api::syncs::update_frequency))
        .route("/action/trigger", post(api::actions::trigger))
        .route("/action/{id}", get(api::actions::result))
        .route("/proxy/{*path}", any(api::proxy::proxy))
        .route("/connect/sessions", post(connect::create_session))
        .route("/connect/sessions/reconnect", post(connect::create_reconnect_session))
        .route("/metrics", get(metrics))
        .route(
            "/governance/connections/{id}/tools",
            get(api::governance::connection_tools).patch(api::governance::change_connection_tools),
        )
        .route("/governance/toolsets", get(api::governance::toolsets).post(api::governance::create_toolset))
        .route(
            "/governance/toolsets/{name}",
            axum::routing::patch(api::governance::change_toolset).delete(api::governance::delete_toolset),
        )
        .route("/governance/access-profiles", get(api::governance::profiles).post(api::governance::create_profile))
        .route(
            "/governance/access-profiles/{name}",
            axum::routing::patch(api::governance::change_profile).delete(api::governance::delete_profile),
        )
        .route("/governance/users", get(api::governance::users).post(api::governance::create_user))
        .route("/governance/users/{name}", axum::routing::delete(api::governance::delete_user))
        .route("/governance/users/{name}/token", post(api::governance::rotate_user_token))
        .route("/governance/audit", get(api::governance::audit))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_secret_key));
    Router::new()
        .merge(authenticated)
        .merge(mcp::routes(state.clone()))
        .route("/", get(dashboard::root))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/dashboard/login", get(dashboard::login_page).post(dashboard::login))
        .route("/dashboard/logout", post(dashboard::logout))
        .route("/connect", get(connect::page))
        .route("/connect/api/connections", post(connect::save_connection))
        .route("/connect/oauth/start", get(connect::oauth_start))
        .route("/oauth/callback", get(connect::oauth_callback))
        .route("/openapi.json", get(openapi::document))
        .route("/health", get(|| async { "ok" }))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        // Nango's clients read `error.code` of every failure, unknown
        // routes and methods included.
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_route",
                format!("no route {}; GET /openapi.json lists what this server answers", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not served on {}; GET /openapi.json lists what this server answers", uri.path()),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .layer(middleware::from_fn(time_requests))
        .with_state(state)
}

/// `/metrics` (under the secret key: tenants' URLs are in the labels):
/// requests to providers by tenant and status, 429s, budget left, sync runs
/// by outcome and their durations, records saved, webhook deliveries, API
/// latency; and, read from the store at each scrape (so every server on
/// it reports the same), the scheduler's queue depth and lag.
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<ServeState>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    match state.platform.store().sync_queue().await {
        Ok(queue) => {
            use terapi_metrics::set;
            set(
                "terapi_sync_queue_waiting",
                "Due syncs waiting for a worker, across the store.",
                &[],
                queue.waiting as f64,
            );
            set(
                "terapi_sync_queue_running",
                "Syncs running under a live lease, across the store.",
                &[],
                queue.running as f64,
            );
            set(
                "terapi_scheduler_lag_seconds",
                "How long the longest-waiting due sync has waited for a worker.",
                &[],
                queue.lag_ms as f64 / 1000.0,
            );
        }
        Err(e) => tracing::warn!("metrics: the sync queue cannot be read: {e}"),
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], terapi_metrics::render())
}

/// Times every API request, by method, route (its pattern, never the
/// path: ids stay out of the labels) and status.
async fn time_requests(request: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    terapi_metrics::observe(
        "terapi_api_request_duration_seconds",
        "Time to answer API requests, by method, route and status.",
        &[("method", method), ("route", &route), ("status", &status)],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A request's method as a metric label: one of a fixed set, so made-up
/// methods cannot grow `/metrics` without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts a connection answered 503 at the connection cap.
pub(crate) fn metrics_refused_connection() {
    terapi_metrics::count(
        "terapi_connections_refused_total",
        "Connections answered 503 because every allowed connection was busy.",
        &[],
        1,
    );
}

/// Ready when the store answers: a load balancer stops sending requests to
/// a server whose database is away, and sends them again when it is back.
async fn ready(
    axum::extract::State(state): axum::extract::State<Arc<ServeState>>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    match state.platform.store().governance_version().await {
        Ok(_) => (axum::http::StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!("readiness: the store is not answering: {e}");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "unavailable", "reason": "the store is not answering" })),
            )
        }
    }
}

/// Serves `router` on `listener`, runs due syncs (`worker_concurrency` at a
/// time) and delivers the store's webhook events, until `shutdown`
/// resolves; then running syncs give their leases up and deliveries in
/// flight their claims (the events stay in the store for the next sender).
pub async fn serve(
    state: Arc<ServeState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let webhooks = state
        .config
        .webhooks
        .clone()
        .map(|config| tokio::spawn(state.platform.clone().deliver_events(config, stop.clone())));
    let worker = (state.config.worker_concurrency > 0).then(|| {
        let (platform, stop) = (state.platform.clone(), stop.clone());
        let concurrency = state.config.worker_concurrency;
        tokio::spawn(async move {
            let options = WorkerOptions { concurrency, ..WorkerOptions::default() };
            match platform.run_worker(options, stop.cancelled_owned()).await {
                Ok(report) => {
                    tracing::info!("scheduler stopped after {} runs ({} failed)", report.runs, report.failed)
                }
                Err(e) => tracing::error!("scheduler: {e}"),
            }
        })
    });
    let limits = state.config.connections;
    let app = router(state);
    let stopping = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.cancel();
    });
    let served = connections::serve(listener, app, limits, stop.clone()).await;
    for task in [worker, webhooks].into_iter().flatten() {
        if let Err(e) = task.await {
            tracing::error!("serve task: {e}");
        }
    }
    served
}
