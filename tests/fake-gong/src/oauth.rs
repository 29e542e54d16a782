//! Gong's OAuth flow, as the fake plays it: `/oauth2/authorize` approves at
//! once and redirects with a code; `/oauth2/generate-customer-token` takes
//! the client id and secret as HTTP basic auth and the grant in the query or
//! a form body, and answers with `api_base_url_for_customer`. Access tokens
//! expire (or can be expired at will); refresh tokens are single-use, as
//! Gong's are: a refresh answers a new one and the one used is spent, so a
//! spent or revoked refresh token answers `invalid_grant`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde_json::json;

use crate::{Shared, lock};

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    /// What the token response tells clients to use as the API base URL;
    /// `None`: the fake's second port.
    pub api_base_url_for_customer: Option<String>,
    /// `expires_in` of new access tokens.
    pub access_token_ttl: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            client_id: "fake-client-id".into(),
            client_secret: "fake-client-secret".into(),
            api_base_url_for_customer: None,
            access_token_ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Default)]
pub(crate) struct OAuthState {
    codes: HashSet<String>,
    access_tokens: HashMap<String, Instant>,
    refresh_tokens: HashSet<String>,
    issued: u64,
    /// Token endpoint calls by grant type.
    pub(crate) grants: Vec<String>,
}

impl OAuthState {
    pub(crate) fn access_token_valid(&self, token: &str) -> bool {
        self.access_tokens.get(token).is_some_and(|expiry| Instant::now() < *expiry)
    }

    pub(crate) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        self.access_tokens.values_mut().for_each(|expiry| *expiry = now);
    }

    pub(crate) fn revoke_refresh_tokens(&mut self) {
        self.refresh_tokens.clear();
    }

    fn mint(&mut self, prefix: &str) -> String {
        self.issued += 1;
        format!("{prefix}-{}-{:x}", self.issued, Instant::now().elapsed().as_nanos() ^ 0x5eed)
    }
}

pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(config) = &shared.config.oauth else {
        return (StatusCode::NOT_FOUND, "OAuth is not configured on this fake").into_response();
    };
    if q.get("client_id") != Some(&config.client_id) || q.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "unknown client_id or response_type is not code").into_response();
    }
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let code = {
        let mut state = lock(&shared.oauth);
        let code = state.mint("code");
        state.codes.insert(code.clone());
        code
    };
    let mut target = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response(),
    };
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = q.get("state") {
        target.query_pairs_mut().append_pair("state", state);
    }
    Redirect::to(target.as_str()).into_response()
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(config) = &shared.config.oauth else {
        return (StatusCode::NOT_FOUND, "OAuth is not configured on this fake").into_response();
    };
    let invalid = |status: StatusCode, error: &str| (status, axum::Json(json!({ "error": error }))).into_response();
    let expected = format!("{}:{}", config.client_id, config.client_secret);
    let client_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
        .is_some_and(|decoded| decoded == expected.as_bytes());
    if !client_ok {
        return invalid(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut params: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    params.extend(query);
    let grant = params.get("grant_type").cloned().unwrap_or_default();
    let mut state = lock(&shared.oauth);
    state.grants.push(grant.clone());
    let refresh_token = match grant.as_str() {
        "authorization_code" => {
            let code = params.get("code").cloned().unwrap_or_default();
            if !state.codes.remove(&code) {
                return invalid(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let refresh = state.mint("refresh");
            state.refresh_tokens.insert(refresh.clone());
            refresh
        }
        "refresh_token" => {
            let used = params.get("refresh_token").cloned().unwrap_or_default();
            if !state.refresh_tokens.remove(&used) {
                return invalid(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let refresh = state.mint("refresh");
            state.refresh_tokens.insert(refresh.clone());
            refresh
        }
        _ => return invalid(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let access = state.mint("access");
    // A lifetime past what an `Instant` holds (a test of 2^64-1 s) is a century.
    let expiry = Instant::now()
        .checked_add(config.access_token_ttl)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    state.access_tokens.insert(access.clone(), expiry);
    let base =
        config.api_base_url_for_customer.clone().or_else(|| shared.second_base_url.get().cloned()).unwrap_or_default();
    axum::Json(json!({
        "access_token": access,
        "refresh_token": refresh_token,
        "scope": "api:users:read api:calls:read:basic",
        "token_type": "bearer",
        "expires_in": config.access_token_ttl.as_secs(),
        "api_base_url_for_customer": base,
    }))
    .into_response()
}
