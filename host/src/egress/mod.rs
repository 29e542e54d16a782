//! The one place a guest's request becomes a network call: the URL is built
//! from the connection's base URL and checked to stay on its origin, headers
//! only the host may set are refused, the credential is injected, and the
//! answer is read with a size cap.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::connection::Credentials;
use crate::destination::{HttpClient, refusal_in};
use crate::limits::Budget;
use crate::oauth::{self, OAuthError, TokenRefresher, TokenSet, unix_now};
use crate::providers::ProviderSpec;
use crate::secret::{Redactor, Secret};

mod tokens;

pub use tokens::*;

/// A request as the guest (or the proxy) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: Method,
    /// Relative to the connection's base URL; must start with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Safe to send twice; only such requests are retried after a server
    /// error or a lost connection (GET always is).
    pub idempotent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            "PUT" => Ok(Method::Put),
            "PATCH" => Ok(Method::Patch),
            "DELETE" => Ok(Method::Delete),
            _ => Err(format!("`{s}` is not an HTTP method this host sends; use GET, POST, PUT, PATCH or DELETE")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("request refused by the host: {0}")]
    Refused(String),
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("network error: {0}")]
    Transport(String),
    #[error("response too large: {0}")]
    TooLarge(String),
    #[error("{0}")]
    Reauthorize(String),
}

#[derive(Debug, Clone)]
pub struct EgressLimits {
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    /// Retries after a 429, a 5xx or a lost connection (so at most
    /// `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Longest wait for one retry; a provider asking for more gets a
    /// rate-limited error that says how long.
    pub max_retry_wait: Duration,
    /// First backoff after a server error; doubled each time, with jitter.
    pub backoff_base: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 32 << 20,
            max_retries: 4,
            max_retry_wait: Duration::from_secs(120),
            backoff_base: Duration::from_millis(250),
        }
    }
}

/// Headers a guest may not set: the host owns authentication, framing and routing.
const HOST_ONLY_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Where a connection's credential goes on each request.
#[derive(Clone, Default)]
pub enum Placement {
    /// `Authorization: <the authorizer's header>` (Gong, and any entry
    /// without `proxy.headers`/`proxy.query`).
    #[default]
    Authorization,
    /// The entry's `proxy.headers` and `proxy.query`, rendered per request:
    /// `${accessToken}` is the authorizer's current token, the others come
    /// from `values` (`apiKey`, `credentials.x`, `connectionConfig.x`).
    /// Headers and params that carry a placeholder are the host's: a caller
    /// may not set them. Without an `authorization` template, modes with a
    /// token (BASIC, OAUTH2, OAUTH2_CC) still send `Authorization`.
    Templates {
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        values: Arc<std::collections::BTreeMap<String, Secret>>,
        default_authorization: bool,
    },
}

/// What a request carries from the credential.
struct Injected {
    headers: Vec<(HeaderName, HeaderValue)>,
    query: Vec<(String, String)>,
}

impl Placement {
    /// Names a caller may not set (lower-case), headers and query params.
    fn reserved(&self) -> (Vec<String>, Vec<String>) {
        match self {
            Placement::Authorization => (Vec::new(), Vec::new()),
            Placement::Templates { headers, query, .. } => (
                headers.iter().filter(|(_, v)| v.contains("${")).map(|(n, _)| n.to_ascii_lowercase()).collect(),
                query.iter().filter(|(_, v)| v.contains("${")).map(|(n, _)| n.to_ascii_lowercase()).collect(),
            ),
        }
    }

    fn inject(&self, authorization: &HeaderValue) -> Result<Injected, EgressError> {
        let Placement::Templates { headers, query, values, default_authorization } = self else {
            return Ok(Injected {
                headers: vec![(reqwest::header::AUTHORIZATION, authorization.clone())],
                query: vec![],
            });
        };
        let token = authorization.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).map(str::to_string);
        let lookup = |name: &str| -> Option<String> {
            match name {
                "accessToken" | "access_token" => token.clone(),
                other => values.get(other).map(|v| v.expose().to_string()),
            }
        };
        let render = |field: &str, name: &str, template: &str| {
            crate::template::render_value(template, &lookup).map_err(|e| {
                EgressError::Refused(format!("providers.yaml `proxy.{field}.{name}` cannot be filled in: {e}"))
            })
        };
        let mut out = Injected { headers: Vec::new(), query: Vec::new() };
        for (name, template) in headers {
            let value = render("headers", name, template)?;
            let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| EgressError::Refused(format!("providers.yaml: `{name}` is not a header name")))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                EgressError::Refused(format!("providers.yaml: the value of header `{name}` is not valid"))
            })?;
            if template.contains("${") {
                value.set_sensitive(true);
            }
            out.headers.push((header, value));
        }
        if *default_authorization && !out.headers.iter().any(|(n, _)| n == reqwest::header::AUTHORIZATION) {
            out.headers.push((reqwest::header::AUTHORIZATION, authorization.clone()));
        }
        for (name, template) in query {
            out.query.push((name.clone(), render("query", name, template)?));
        }
        Ok(out)
    }
}

/// Sends requests for one connection.
#[derive(Clone)]
pub struct Egress {
    client: HttpClient,
    base: Url,
    auth: Authorizer,
    placement: Placement,
    limits: EgressLimits,
    budget: Arc<Budget>,
    /// Response headers holding seconds to wait after a 429 (providers.yaml
    /// `proxy.retry.after`).
    retry_after_headers: Vec<String>,
    /// Requests sent so far (every attempt), for per-run budgets.
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl Egress {
    pub fn tenant(&self) -> Option<&str> {
        self.budget.tenant()
    }
}

impl Egress {
    pub fn new(
        client: HttpClient,
        base: Url,
        auth: Authorizer,
        limits: EgressLimits,
        budget: Arc<Budget>,
        retry_after_headers: Vec<String>,
    ) -> Self {
        let retry_after_headers =
            if retry_after_headers.is_empty() { vec!["retry-after".into()] } else { retry_after_headers };
        Egress {
            client,
            base,
            auth,
            placement: Placement::Authorization,
            limits,
            budget,
            retry_after_headers,
            sent: Default::default(),
        }
    }

    /// Puts the credential where the provider's entry says (`proxy.headers`,
    /// `proxy.query`) instead of in `Authorization`.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    fn count(&self, result: &Result<InboundResponse, EgressError>) {
        let tenant =
            self.budget.tenant().map(str::to_string).unwrap_or_else(|| self.base.origin().ascii_serialization());
        let status = match result {
            Ok(response) => response.status.to_string(),
            Err(_) => "error".to_string(),
        };
        terapi_metrics::count(
            "terapi_provider_requests_total",
            "Requests sent to providers (every attempt), by tenant and HTTP status (`error`: no answer).",
            &[("tenant", &tenant), ("status", &status)],
            1,
        );
        if status == "429" {
            terapi_metrics::count(
                "terapi_provider_rate_limited_total",
                "429 Too Many Requests answers from providers, by tenant.",
                &[("tenant", &tenant)],
                1,
            );
        }
    }

    /// Gets the credential ready before the first request: for OAUTH2_CC,
    /// a token from the token endpoint (which checks the client id and
    /// secret). `true` when that was a check of the credential.
    pub async fn prepare_credential(&self) -> Result<bool, EgressError> {
        match &self.auth {
            Authorizer::ClientCredentials(tokens) => tokens.header().await.map(|_| true),
            _ => Ok(false),
        }
    }

    /// How many requests (retries included) this connection's egress sent.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The full URL for a guest's path and query, or why it is refused.
    pub fn url_for(&self, path: &str, query: &[(String, String)]) -> Result<Url, EgressError> {
        check_path(path).map_err(EgressError::Refused)?;
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{base_path}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        // Belt and braces: whatever `check_path` missed, the origin must not change.
        if url.origin() != self.base.origin() || !url.path().starts_with(base_path) {
            return Err(EgressError::Refused(format!("`{path}` would leave the connection's base URL")));
        }
        Ok(url)
    }

    /// Sends with the connection's budget, honouring 429 `Retry-After` and
    /// retrying server errors and lost connections of idempotent requests
    /// with exponential backoff and jitter, a bounded number of times.
    pub async fn send(&self, request: &OutboundRequest) -> Result<InboundResponse, EgressError> {
        let (reserved_headers, reserved_query) = self.placement.reserved();
        if let Some((name, _)) = request.query.iter().find(|(n, _)| reserved_query.contains(&n.to_ascii_lowercase())) {
            return Err(EgressError::Refused(format!("query parameter `{name}` is set by the host only")));
        }
        let url = self.url_for(&request.path, &request.query)?;
        // Before a budget slot is spent; names are checked again as they resolve.
        self.client.policy().check_url(&url).map_err(|refused| EgressError::Refused(refused.to_string()))?;
        if let Some((name, _)) =
            request.headers.iter().find(|(n, _)| reserved_headers.contains(&n.to_ascii_lowercase()))
        {
            return Err(EgressError::Refused(format!("header `{name}` is set by the host only")));
        }
        let headers = self.headers_for(&request.headers)?;
        let retryable = request.idempotent || request.method == Method::Get;
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            // The token first: a refresh can take a while, and the slot
            // reserved in the budget is for the moment the request leaves.
            let authorization = self.auth.header().await?;
            self.budget.acquire().await?;
            let result = self.send_once(request, &url, &headers, &authorization).await;
            self.count(&result);
            // A token that expired (or was revoked) early: renew once, retry
            // once. Not for a token that lacks a scope: a new one would lack
            // it too, and each refresh spends (and may rotate) the grant.
            if matches!(&result, Ok(r) if r.status == 401 && !lacks_scope(r)) && !renewed {
                renewed = true;
                if self.auth.renew_after_unauthorized(&authorization).await? {
                    continue;
                }
            }
            let wait = match &result {
                Ok(response) if response.status == 429 => {
                    let wait = self.retry_after(response).unwrap_or_else(|| self.backoff(attempt));
                    if attempt >= self.limits.max_retries || wait > self.limits.max_retry_wait {
                        return Err(EgressError::RateLimited(format!(
                            "the provider answered 429 Too Many Requests to {} {} and asks to wait {}s; try again later",
                            request.method.as_str(),
                            url.path(),
                            wait.as_secs()
                        )));
                    }
                    wait
                }
                Ok(response) if response.status >= 500 && retryable => self.backoff(attempt),
                // A provider that did not answer within the request timeout
                // is hung, not flaky: retrying would multiply the wait.
                Err(EgressError::Transport(_)) if retryable => self.backoff(attempt),
                _ => return result,
            };
            if attempt >= self.limits.max_retries {
                return result;
            }
            attempt += 1;
            tracing::info!(
                target: "terapi::egress",
                "{} {} failed ({}); retry {attempt} of {} in {} ms",
                request.method.as_str(),
                url.path(),
                match &result {
                    Ok(r) => format!("HTTP {}", r.status),
                    Err(e) => e.to_string(),
                },
                self.limits.max_retries,
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn retry_after(&self, response: &InboundResponse) -> Option<Duration> {
        self.retry_after_headers.iter().find_map(|name| {
            let (_, value) = response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
            retry_after_value(value, std::time::SystemTime::now())
        })
    }

    /// `base * 2^attempt`, scaled by a random factor in [0.5, 1.5) so that
    /// many clients retrying at once spread out.
    fn backoff(&self, attempt: u32) -> Duration {
        use std::hash::{BuildHasher, RandomState};
        let jitter = (RandomState::new().hash_one(attempt) % 1000) as f64 / 1000.0 + 0.5;
        self.limits.backoff_base.mul_f64(2f64.powi(attempt.min(10) as i32) * jitter)
    }

    async fn send_once(
        &self,
        request: &OutboundRequest,
        url: &Url,
        headers: &HeaderMap,
        authorization: &HeaderValue,
    ) -> Result<InboundResponse, EgressError> {
        let mut headers = headers.clone();
        let injected = self.placement.inject(authorization)?;
        for (name, value) in injected.headers {
            // A provider's fixed header (`accept`) yields to the caller's;
            // one carrying the credential was refused above if set.
            if value.is_sensitive() || !headers.contains_key(&name) {
                headers.insert(name, value);
            }
        }
        let mut url = url.clone();
        if !injected.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&injected.query);
        }
        let mut builder = self
            .client
            .request(request.method.to_reqwest(), url.clone())
            .map_err(|refused| EgressError::Refused(refused.to_string()))?
            .headers(headers)
            .timeout(self.limits.request_timeout);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let where_to = format!("{} {}", request.method.as_str(), url.path());
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = builder.send().await.map_err(|e| transport_error(&where_to, &e, self.limits.request_timeout))?;
        self.read(response, &where_to).await
    }

    fn headers_for(&self, requested: &[(String, String)]) -> Result<HeaderMap, EgressError> {
        let mut headers = HeaderMap::with_capacity(requested.len() + 1);
        for (name, value) in requested {
            let lower = name.to_ascii_lowercase();
            if HOST_ONLY_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(EgressError::Refused(format!("header `{name}` is set by the host only")));
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| EgressError::Refused(format!("`{name}` is not a valid header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| EgressError::Refused(format!("the value of header `{name}` is not valid")))?;
            headers.append(name, value);
        }
        Ok(headers)
    }

    async fn read(&self, mut response: reqwest::Response, where_to: &str) -> Result<InboundResponse, EgressError> {
        let max = self.limits.max_response_bytes;
        let too_large = || EgressError::TooLarge(format!("{where_to} answered more than {max} bytes"));
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
            .collect();
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) =
            response.chunk().await.map_err(|e| transport_error(where_to, &e, self.limits.request_timeout))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(InboundResponse { status, headers, body })
    }
}

/// `Retry-After` in either of its forms (RFC 9110): seconds, or an HTTP
/// date, which is read against `now` (a date already past means now). At
/// most a day.
fn retry_after_value(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    const MOST: Duration = Duration::from_secs(86_400);
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MOST))
}

fn authorization_header(credentials: &Credentials) -> HeaderValue {
    use base64::Engine as _;
    let text = match credentials {
        Credentials::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        }
        Credentials::OAuth2 { access_token, .. } => format!("Bearer {}", access_token.expose()),
        // Placed by the entry's templates, not in `Authorization`; a token
        // of the client credentials grant comes from `ClientCredentialTokens`.
        Credentials::ApiKey { .. } | Credentials::OAuth2ClientCredentials { .. } => String::new(),
    };
    // Base64 and token characters are always valid header bytes; a token with
    // control characters is refused by the provider rather than by a panic here.
    let mut value = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token"));
    value.set_sensitive(true);
    value
}

/// A 401 that says the token lacks a permission or scope (RFC 6750's
/// `insufficient_scope`, or a body about permission such as Gong's "You
/// don't have permission to use 'api:…'"), rather than that it is invalid.
fn lacks_scope(response: &InboundResponse) -> bool {
    let challenge = response
        .headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("www-authenticate") && value.contains("insufficient_scope"));
    let body = String::from_utf8_lossy(&response.body[..response.body.len().min(4096)]).to_ascii_lowercase();
    challenge || body.contains("insufficient_scope") || body.contains("permission")
}

fn transport_error(where_to: &str, error: &reqwest::Error, timeout: Duration) -> EgressError {
    if let Some(refused) = refusal_in(error) {
        return EgressError::Refused(refused.to_string());
    }
    // reqwest's own message is "error sending request"; the cause says why.
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() {
        EgressError::Timeout(format!(
            "no answer from the provider to {where_to} within {}s; it may be down or overloaded, try again later",
            timeout.as_secs_f64()
        ))
    } else {
        EgressError::Transport(format!("{where_to}: {cause}"))
    }
}

/// Refuses paths that could leave the base URL: absolute and scheme-relative
/// URLs, dot segments (also percent-encoded), backslashes, encoded slashes,
/// and query or fragment text (the query goes in the query list).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.contains("://") {
        return Err(format!(
            "absolute URL `{path}` refused: requests go to the connection's base URL only; give a path such as /v2/users"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!("path `{path}` must start with `/` (it is relative to the connection's base URL)"));
    }
    if path.starts_with("//") {
        return Err(format!("path `{path}` starts with `//`, which names another host"));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '?' | '#')) {
        return Err(format!("path `{}` contains {c:?}; put query parameters in the query list", path.escape_debug()));
    }
    for segment in path.split('/') {
        let decoded = percent_decode(segment);
        if decoded == "." || decoded == ".." {
            return Err(format!("path `{path}` has a `{decoded}` segment, which could leave the base URL"));
        }
        if decoded.contains(['/', '\\']) || decoded.chars().any(|c| c.is_control()) {
            return Err(format!("path `{path}` hides a slash or control character in a percent-escape"));
        }
    }
    Ok(())
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
