//! A stand-in for the Gong API on loopback, for tests, benchmarks and the demo.
//!
//! It behaves like Gong where our code depends on it (see
//! `shared/gong/FACTS.md`): HTTP basic auth with access key and secret (401 in
//! Gong's error shape otherwise), lists paginated through an opaque
//! `records.cursor` that is absent on the last page, 404 "No calls found" for
//! an empty call window, and 429 with `Retry-After` when told to throttle.
//! Every request is recorded so tests can assert on what Gong saw.

// Handlers return axum's `Response` as their error: the error *is* the
// answer Gong would give, and its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub mod fixtures;
mod oauth;
mod surface;
pub mod tls;

pub use oauth::OAuthConfig;

#[derive(Debug, Clone)]
pub struct FakeGongConfig {
    pub access_key: String,
    pub access_key_secret: String,
    pub users: Vec<Value>,
    pub calls: Vec<Value>,
    /// Gong's pages hold up to 100 records.
    pub page_size: usize,
    /// Enforce Gong's per-second limit: more requests than this in any one
    /// second get 429 with `Retry-After: 1`.
    pub rate_limit_per_second: Option<usize>,
    /// Permission profiles, CRM and library answer 404, as for a company
    /// whose plan lacks them.
    pub plan_gated: bool,
    /// How many of each settings list (scorecards, trackers, workspaces,
    /// flows, call outcomes, permission profiles per workspace).
    pub extras: usize,
    /// Play Gong's OAuth server too: the API then also takes bearer tokens,
    /// and a second port serves as the customer's API base URL.
    pub oauth: Option<OAuthConfig>,
    /// Further (access key, secret) pairs of the same company: Gong lets a
    /// company have several keys, all seeing its data.
    pub more_keys: Vec<(String, String)>,
    /// The company's time zone, as minutes east of UTC (-480 for UTC-8):
    /// Gong reads date filters such as `reviewFromDate` as days there.
    pub company_utc_offset_minutes: i32,
}

impl FakeGongConfig {
    /// The `fake-gong` binary's company, for the demo and the README's
    /// examples: `users` users, `calls` calls in the two days before `now`
    /// (unix seconds), the demo's key, Gong's 3 requests a second.
    pub fn demo(users: usize, calls: usize, now: i64) -> FakeGongConfig {
        FakeGongConfig {
            access_key: "demo-access-key".into(),
            access_key_secret: "demo-access-key-secret".into(),
            users: fixtures::users(users),
            calls: fixtures::calls_between(calls, now - 2 * 86_400, now),
            rate_limit_per_second: Some(3),
            ..FakeGongConfig::default()
        }
    }

    /// terapi's providers.yaml with gong-oauth's authorization and token
    /// URLs on this fake at `base_url`, for trying OAuth locally.
    pub fn oauth_providers_yaml(base_url: &str) -> String {
        include_str!("../../../providers.yaml").replace("https://app.gong.io", base_url.trim_end_matches('/'))
    }
}

impl Default for FakeGongConfig {
    fn default() -> Self {
        FakeGongConfig {
            access_key: "fake-access-key".into(),
            access_key_secret: "fake-access-key-secret".into(),
            users: fixtures::users(10),
            calls: fixtures::calls(10),
            page_size: 100,
            rate_limit_per_second: None,
            plan_gated: false,
            extras: 5,
            oauth: None,
            more_keys: Vec::new(),
            company_utc_offset_minutes: 0,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
    /// The `Host` header: tells which of the fake's ports was used.
    pub host: String,
    pub body: Vec<u8>,
    pub status: u16,
    pub at: Instant,
}

/// A fault the next request gets instead of its answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After` seconds.
    TooManyRequests { retry_after_secs: u64 },
    /// 429 with `Retry-After` as an HTTP date this many seconds ahead
    /// (RFC 9110 allows either form).
    TooManyRequestsUntil { secs_ahead: u64 },
    /// A 5xx (or any) status with Gong's error shape.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// 200 with this body: a remote that answers garbage (truncated JSON,
    /// absurd nesting) where JSON was promised.
    Body(String),
    /// This status, with the request's own `Authorization` header quoted
    /// in the error (as some gateways and debug builds do): the host must
    /// keep the echoed credential out of errors, logs and the store.
    EchoAuthorization(u16),
    /// 401 as Gong answers a token whose grant lacks this scope.
    MissingScope(String),
    /// 200 with an empty page of `items` and a cursor never seen before:
    /// a broken or hostile upstream that never ends a listing.
    EmptyPageWithNewCursor { items: String },
}

pub(crate) struct Shared {
    config: FakeGongConfig,
    /// Each user as JSON text, serialised once: pages are assembled from
    /// these, so the fake stays cheap next to the code it serves.
    /// Swapped whole when users leave (`remove_users`), so a page request
    /// only clones an `Arc`.
    users_json: std::sync::RwLock<Arc<Vec<String>>>,
    /// Calls can be added while running (new calls for incremental syncs).
    calls: Mutex<Vec<Value>>,
    oauth: Mutex<oauth::OAuthState>,
    /// The second port's URL (the customer API base URL under OAuth).
    second_base_url: std::sync::OnceLock<String>,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Arrival times of requests in the last second (for the enforced limit).
    window: Mutex<VecDeque<Instant>>,
    delay: Mutex<std::time::Duration>,
    /// Once this many requests were answered normally, answer 500 until `recover`.
    fail_after: Mutex<Option<usize>>,
    served: AtomicU64,
    /// Requests that arrived, counted before any delay (a client that gives
    /// up on a slow answer is not in `requests`, which logs answers).
    arrivals: AtomicU64,
    /// Requests whose client hung up while the fake was still delaying its
    /// answer (the server dropped the handler with the connection).
    abandoned: AtomicU64,
    request_ids: AtomicU64,
}

pub struct FakeGong {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

impl FakeGong {
    /// Starts on 127.0.0.1 on a free port, on the current tokio runtime.
    pub async fn start(config: FakeGongConfig) -> std::io::Result<FakeGong> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: FakeGongConfig) -> std::io::Result<FakeGong> {
        let users_json = std::sync::RwLock::new(Arc::new(config.users.iter().map(|u| u.to_string()).collect()));
        let calls = Mutex::new(config.calls.clone());
        let shared = Arc::new(Shared {
            users_json,
            calls,
            config,
            oauth: Mutex::new(oauth::OAuthState::default()),
            second_base_url: std::sync::OnceLock::new(),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            window: Mutex::new(VecDeque::new()),
            delay: Mutex::new(std::time::Duration::ZERO),
            fail_after: Mutex::new(None),
            served: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            request_ids: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v2/users", get(list_users))
            .route("/v2/users/{id}", get(get_user))
            .route("/v2/calls", get(list_calls).post(surface::echo))
            .route("/v2/calls/extensive", axum::routing::post(surface::calls_extensive))
            .route("/v2/calls/transcript", axum::routing::post(surface::transcripts))
            .route("/v2/stats/activity/scorecards", axum::routing::post(surface::answered_scorecards))
            .route("/v2/settings/scorecards", get(surface::settings_list))
            .route("/v2/settings/trackers", get(surface::settings_list))
            .route("/v2/workspaces", get(surface::settings_list))
            .route("/v2/flows", get(surface::flows))
            .route("/v2/call-outcomes", get(surface::settings_list))
            .route("/v2/all-permission-profiles", get(surface::settings_list))
            .route("/v2/calls/{id}", get(surface::echo))
            .route("/v2/flows/prospects", axum::routing::post(surface::echo))
            .route("/v2/flows/prospects/assign", axum::routing::post(surface::echo))
            .route("/v2/flows/prospects/unassign-flows-by-crm-id", axum::routing::post(surface::echo))
            .route("/v2/permission-profile/users", get(surface::echo))
            .route("/v2/crm/entities", get(surface::crm_entities).post(surface::crm_upload))
            .route("/v2/crm/entity-schema", get(surface::echo))
            .route("/v2/stats/activity/aggregate", axum::routing::post(surface::echo))
            .route("/v2/stats/activity/day-by-day", axum::routing::post(surface::echo))
            .route("/v2/stats/interaction", axum::routing::post(surface::echo))
            .route("/v2/library/folders", get(surface::echo))
            .route("/v2/library/folder-content", get(surface::echo))
            .route("/v2/logs", get(surface::echo))
            .route("/v2/data-privacy/data-for-email-address", get(surface::echo))
            .route("/v2/data-privacy/erase-data-for-email-address", axum::routing::post(surface::echo))
            .route("/oauth2/authorize", get(oauth::authorize))
            .route("/oauth2/generate-customer-token", axum::routing::post(oauth::token))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(shared.clone(), gate))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let serve = |listener: tokio::net::TcpListener, app: Router, mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await;
        };
        if shared.config.oauth.is_some() {
            let second = tokio::net::TcpListener::bind((addr.ip(), 0)).await?;
            let _ = shared.second_base_url.set(format!("http://{}", second.local_addr()?));
            tokio::spawn(serve(second, app.clone(), rx.clone()));
        }
        tokio::spawn(serve(listener, app, rx));
        Ok(FakeGong { addr, shared, shutdown: Some(tx) })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Under OAuth: the customer API base URL the token response names.
    pub fn api_base_url(&self) -> Option<String> {
        self.shared.second_base_url.get().cloned()
    }

    /// Access tokens stop working now (as if revoked or expired early).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.oauth).expire_access_tokens();
    }

    /// Refresh tokens stop working: the user revoked the app.
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.shared.oauth).revoke_refresh_tokens();
    }

    /// Every token endpoint call so far, by grant type.
    pub fn token_grants(&self) -> Vec<String> {
        lock(&self.shared.oauth).grants.clone()
    }

    pub fn config(&self) -> &FakeGongConfig {
        &self.shared.config
    }

    /// New calls appear in Gong (for incremental syncs).
    pub fn add_calls(&self, calls: Vec<Value>) {
        lock(&self.shared.calls).extend(calls);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// After `served` more requests answered normally, Gong fails with 500
    /// until `recover` is called: a sync dies mid-way.
    pub fn fail_after(&self, served: usize) {
        let already = self.shared.served.load(Ordering::SeqCst) as usize;
        *lock(&self.shared.fail_after) = Some(already + served);
    }

    pub fn recover(&self) {
        *lock(&self.shared.fail_after) = None;
    }

    /// The next `times` requests get 429 with `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, times: usize, retry_after_secs: u64) {
        self.inject(times, Fault::TooManyRequests { retry_after_secs });
    }

    /// The next `times` requests get `status` (e.g. 503).
    pub fn fail_next(&self, times: usize, status: u16) {
        self.inject(times, Fault::Status(status));
    }

    /// The next request is redirected to `location`.
    pub fn redirect_next(&self, location: &str) {
        self.inject(1, Fault::Redirect(location.to_string()));
    }

    pub fn inject(&self, times: usize, fault: Fault) {
        lock(&self.shared.faults).extend(std::iter::repeat_n(fault, times));
    }

    /// Drops the faults not yet used.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every answer from now on waits this long first (a slow network or Gong).
    /// The most requests that arrived within any one second (what Gong's
    /// per-second limit counts).
    pub fn busiest_second(&self) -> usize {
        let mut times: Vec<Instant> = lock(&self.shared.requests).iter().map(|r| r.at).collect();
        times.sort();
        let mut most = 0;
        let mut first = 0;
        for (last, at) in times.iter().enumerate() {
            while at.duration_since(times[first]) >= std::time::Duration::from_secs(1) {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    /// Users deleted in Gong: later lists no longer have them.
    pub fn remove_users(&self, ids: &[String]) {
        let mut users = self.shared.users_json.write().unwrap_or_else(|p| p.into_inner());
        let kept = users
            .iter()
            .filter(|json| !ids.iter().any(|id| json.contains(&format!("\"id\":\"{id}\""))))
            .cloned()
            .collect();
        *users = Arc::new(kept);
    }

    /// Gong's users from now on (changed, added, removed): later lists
    /// show these.
    pub fn set_users(&self, users: &[Value]) {
        let listed = users.iter().map(|u| u.to_string()).collect();
        *self.shared.users_json.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(listed);
    }

    /// How many requests arrived, answered or not.
    pub fn arrivals(&self) -> u64 {
        self.shared.arrivals.load(Ordering::SeqCst)
    }

    /// How many requests the client gave up on (hung up) while a delay
    /// (`set_delay`) held their answer: a client that stops a call shows here.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::SeqCst)
    }

    pub fn set_delay(&self, delay: std::time::Duration) {
        *lock(&self.shared.delay) = delay;
    }
}

impl Drop for FakeGong {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide later results.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn request_id(shared: &Shared) -> String {
    format!("fake-{:x}", shared.request_ids.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn gong_error(shared: &Shared, status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "requestId": request_id(shared), "errors": [message] }))).into_response()
}

/// Records the request, applies throttling, then checks basic auth the way
/// Gong does before any handler runs.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(url_decode_pairs).unwrap_or_default();
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let host = request.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let oauth_endpoint = path.starts_with("/oauth2/");
    let at = Instant::now();
    shared.arrivals.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let request = Request::from_parts(parts, axum::body::Body::from(body.clone()));

    let delay = *lock(&shared.delay);
    if !delay.is_zero() {
        /// Counts the request as abandoned if the handler is dropped (its
        /// connection closed) before the delay is over.
        struct Waiting<'a>(&'a AtomicU64, bool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let mut waiting = Waiting(&shared.abandoned, false);
        tokio::time::sleep(delay).await;
        waiting.1 = true;
    }
    let fault = lock(&shared.faults).pop_front();
    let response = if let Some(fault) = fault {
        match fault {
            Fault::TooManyRequests { retry_after_secs } => too_many_requests(&shared, retry_after_secs),
            Fault::TooManyRequestsUntil { secs_ahead } => {
                let mut response = gong_error(&shared, StatusCode::TOO_MANY_REQUESTS, "API request limit exceeded");
                let at = std::time::SystemTime::now() + std::time::Duration::from_secs(secs_ahead);
                if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                    response.headers_mut().insert("retry-after", value);
                }
                response
            }
            Fault::Status(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                gong_error(&shared, status, "Injected failure")
            }
            Fault::Redirect(location) => {
                let mut response = StatusCode::FOUND.into_response();
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert("location", value);
                }
                response
            }
            Fault::Body(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
            Fault::MissingScope(scope) => gong_error(
                &shared,
                StatusCode::UNAUTHORIZED,
                &format!("You don't have permission to use '{scope}', please contact your Gong admin"),
            ),
            Fault::EmptyPageWithNewCursor { items } => {
                let n = shared.arrivals.load(Ordering::SeqCst);
                let body = serde_json::json!({
                    "requestId": format!("empty-{n}"),
                    "records": { "totalRecords": 0, "currentPageSize": 0, "currentPageNumber": n, "cursor": format!("endless-{n}") },
                    items: [],
                });
                axum::Json(body).into_response()
            }
            Fault::EchoAuthorization(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let echoed = authorization.as_deref().unwrap_or("(none)");
                gong_error(&shared, status, &format!("Upstream refused the request with Authorization: {echoed}"))
            }
        }
    } else if over_rate_limit(&shared, at) {
        too_many_requests(&shared, 1)
    } else if lock(&shared.fail_after).is_some_and(|n| shared.served.load(Ordering::SeqCst) as usize >= n) {
        gong_error(&shared, StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    } else if !oauth_endpoint && !authorized(&shared, request.headers()) {
        gong_error(&shared, StatusCode::UNAUTHORIZED, "Invalid access key or access key secret")
    } else {
        shared.served.fetch_add(1, Ordering::SeqCst);
        next.run(request).await
    };
    lock(&shared.requests).push(RecordedRequest {
        method,
        path,
        query,
        authorization,
        host,
        body: body.to_vec(),
        status: response.status().as_u16(),
        at,
    });
    response
}

fn too_many_requests(shared: &Shared, retry_after_secs: u64) -> Response {
    let mut response = gong_error(shared, StatusCode::TOO_MANY_REQUESTS, "API request limit exceeded");
    response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}

/// Gong's 3-a-second limit, as a sliding one-second window.
fn over_rate_limit(shared: &Shared, now: Instant) -> bool {
    let Some(limit) = shared.config.rate_limit_per_second else {
        return false;
    };
    let mut window = lock(&shared.window);
    while window.front().is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1)) {
        window.pop_front();
    }
    if window.len() >= limit {
        return true;
    }
    window.push_back(now);
    false
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let config = &shared.config;
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return config.oauth.is_some() && lock(&shared.oauth).access_token_valid(token.trim());
    }
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    std::iter::once((&config.access_key, &config.access_key_secret))
        .chain(config.more_keys.iter().map(|(k, s)| (k, s)))
        .any(|(key, secret)| decoded == format!("{key}:{secret}").as_bytes())
}

fn url_decode_pairs(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    gong_error(&shared, StatusCode::NOT_FOUND, "Not found")
}

/// A cursor names the list, the offset and the filter it was issued for; like
/// Gong's, it is opaque to clients and only valid with the same filter.
fn encode_cursor(list: &str, offset: usize, filter: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}|{offset}|{filter}"))
}

fn decode_cursor(cursor: &str, list: &str, filter: &str) -> Option<usize> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = raw.splitn(3, '|');
    let (l, offset, f) = (parts.next()?, parts.next()?, parts.next()?);
    (l == list && f == filter).then(|| offset.parse().ok()).flatten()
}

/// Where a list answer carries its cursor.
#[derive(Clone, Copy)]
pub(crate) enum CursorAt {
    Records,
    TopLevel,
    /// Not paginated: everything in one answer.
    Unpaged,
}

fn page(shared: &Shared, list: &str, items: &[String], cursor: Option<&String>, filter: &str) -> Response {
    page_at(shared, list, items, cursor.map(String::as_str), filter, CursorAt::Records)
}

/// One page of `items` (JSON texts) from the cursor's offset, in Gong's
/// list shape.
pub(crate) fn page_at(
    shared: &Shared,
    list: &str,
    items: &[String],
    cursor: Option<&str>,
    filter: &str,
    cursor_at: CursorAt,
) -> Response {
    let offset = match cursor {
        None => 0,
        Some(c) => match decode_cursor(c, list, filter) {
            Some(offset) if offset <= items.len() => offset,
            _ => return gong_error(shared, StatusCode::BAD_REQUEST, "cursor is invalid for this request"),
        },
    };
    let size = match cursor_at {
        CursorAt::Unpaged => items.len().max(1),
        _ => shared.config.page_size.max(1),
    };
    let end = (offset + size).min(items.len());
    let mut records = json!({
        "totalRecords": items.len(),
        "currentPageSize": end - offset,
        "currentPageNumber": offset / size,
    });
    let next = (end < items.len()).then(|| encode_cursor(list, end, filter));
    let mut top = String::new();
    match (cursor_at, next) {
        (CursorAt::Records, Some(next)) => records["cursor"] = json!(next),
        (CursorAt::TopLevel, Some(next)) => top = format!(r#""cursor":{},"#, json!(next)),
        (CursorAt::Unpaged, _) | (_, None) => {}
    }
    let page = &items[offset..end];
    let mut body = String::with_capacity(128 + page.iter().map(|i| i.len() + 1).sum::<usize>());
    body.push_str(&format!(r#"{{"requestId":"{}",{top}"records":{records},"{list}":["#, request_id(shared)));
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn list_users(State(shared): State<Arc<Shared>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let users = shared.users_json.read().unwrap_or_else(|p| p.into_inner()).clone();
    page(&shared, "users", &users, q.get("cursor"), "")
}

async fn get_user(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.config.users.iter().find(|u| u["id"] == json!(id)) {
        Some(user) => axum::Json(json!({ "requestId": request_id(&shared), "user": user })).into_response(),
        None => gong_error(&shared, StatusCode::NOT_FOUND, &format!("User {id} not found")),
    }
}

async fn list_calls(State(shared): State<Arc<Shared>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let bound = |name: &str| -> Result<Option<i64>, Response> {
        match q.get(name) {
            None => Ok(None),
            Some(text) => fixtures::parse_rfc3339(text).map(Some).ok_or_else(|| {
                gong_error(&shared, StatusCode::BAD_REQUEST, &format!("{name} is not a valid date-time"))
            }),
        }
    };
    let (from, to) = match (bound("fromDateTime"), bound("toDateTime")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let matching: Vec<String> = lock(&shared.calls)
        .iter()
        .filter(|c| {
            let started = c["started"].as_str().and_then(fixtures::parse_rfc3339).unwrap_or(i64::MIN);
            from.is_none_or(|f| started >= f) && to.is_none_or(|t| started < t)
        })
        .map(Value::to_string)
        .collect();
    if matching.is_empty() {
        return gong_error(&shared, StatusCode::NOT_FOUND, "No calls found corresponding to the provided filters");
    }
    let filter = format!("{:?}-{:?}", from, to);
    page(&shared, "calls", &matching, q.get("cursor"), &filter)
}
