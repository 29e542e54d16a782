//! OAuth2 for providers whose `auth_mode` is OAUTH2, done by the host from
//! providers.yaml (Nango's fields): the authorization URL, the code exchange
//! and refreshes. Gong's token response also names the customer's API base
//! URL (`token_response_metadata: [api_base_url_for_customer]`), which the
//! connection then uses for every call.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use url::Url;

use crate::providers::ProviderSpec;
use crate::secret::Secret;
use crate::template::Template;

/// The OAuth app registered with the provider (for Gong: in the Gong
/// developer settings).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
}

/// What a token endpoint answered.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// The fields named by `token_response_metadata`, for the connection config.
    pub metadata: BTreeMap<String, String>,
}

/// Called with every refreshed token set, so the embedder can save it. The
/// host awaits it under the refresh lock: the new tokens are saved before
/// any call uses them, and two saves never race each other.
pub type OnRefresh = Arc<dyn Fn(TokenSet) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Lets a session refresh its access token.
#[derive(Clone)]
pub struct TokenRefresher {
    pub client: OAuthClient,
    pub on_refresh: OnRefresh,
    /// Told when the provider refuses to refresh (a revoked or expired
    /// grant, a bad client), with the reason scrubbed of secrets: the
    /// connection needs its user to authorize again.
    pub on_refresh_failure: Option<OnRefreshFailure>,
    /// Shares the connection's refreshes with every other session and
    /// process on the same store. Without it, refreshes are single-flight
    /// within one session only.
    pub coordination: Option<Arc<dyn RefreshCoordination>>,
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a store gives a session so that a connection's tokens are refreshed
/// once at a time across processes. Single-use refresh tokens (Gong's) make
/// this matter: two processes refreshing with one token means one of them
/// gets `invalid_grant`, which is not a revocation.
pub trait RefreshCoordination: Send + Sync {
    /// Waits until this session holds the connection's refresh lock (at
    /// most one holder across processes; it lapses if its holder dies). An
    /// error means the lock could not be had (the store is away).
    fn acquire(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Gives the lock up.
    fn release(&self) -> BoxFuture<'_, ()>;
    /// The connection's tokens as stored now: another process may have
    /// saved newer ones. `None` if they cannot be read.
    fn stored(&self) -> BoxFuture<'_, Option<crate::Credentials>>;
}

pub type OnRefreshFailure = Arc<dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("providers.yaml: {0}")]
    Config(String),
    #[error("the grant was revoked or has expired ({0}); re-authorize this connection")]
    Revoked(String),
    #[error("the token endpoint rejected the client id or secret; check the OAuth app's credentials")]
    InvalidClient,
    #[error("the token endpoint answered HTTP {status}: {message}")]
    Endpoint { status: u16, message: String },
    #[error("could not reach the token endpoint: {0}")]
    Transport(String),
    #[error("the token response is not usable: {0}")]
    BadResponse(String),
}

fn render(spec_value: Option<&str>, field: &str, config: &BTreeMap<String, String>) -> Result<Url, OAuthError> {
    let text = spec_value.ok_or_else(|| OAuthError::Config(format!("`{field}` is required for OAuth")))?;
    let rendered = Template::parse(text)
        .and_then(|t| t.render(config))
        .map_err(|e| OAuthError::Config(format!("`{field}`: {e}")))?;
    let url = Url::parse(&rendered).map_err(|e| OAuthError::Config(format!("`{field}` `{rendered}`: {e}")))?;
    let loopback = url.host_str().and_then(|h| h.parse::<IpAddr>().ok()).is_some_and(|ip| ip.is_loopback());
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(OAuthError::Config(format!("`{field}` must be https (plain http only to loopback)")));
    }
    Ok(url)
}

/// The URL the user opens to grant access; `state` must come back unchanged.
pub fn authorization_url(
    spec: &ProviderSpec,
    config: &BTreeMap<String, String>,
    client: &OAuthClient,
    state: &str,
    scopes: &[String],
) -> Result<Url, OAuthError> {
    let mut url = render(spec.authorization_url.as_deref(), "authorization_url", config)?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in &spec.authorization_params {
            query.append_pair(k, v);
        }
        query.append_pair("client_id", &client.client_id).append_pair("redirect_uri", &client.redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(" "));
        }
        query.append_pair("state", state);
    }
    Ok(url)
}

pub async fn exchange_code(
    http: &crate::destination::HttpClient,
    spec: &ProviderSpec,
    config: &BTreeMap<String, String>,
    client: &OAuthClient,
    code: &str,
) -> Result<TokenSet, OAuthError> {
    let mut params: Vec<(String, String)> = spec.token_params.clone().into_iter().collect();
    set(&mut params, "grant_type", "authorization_code");
    set(&mut params, "code", code);
    set(&mut params, "redirect_uri", &client.redirect_uri);
    token_request(http, spec, config, client, params).await
}

pub async fn refresh(
    http: &crate::destination::HttpClient,
    spec: &ProviderSpec,
    config: &BTreeMap<String, String>,
    client: &OAuthClient,
    refresh_token: &Secret,
) -> Result<TokenSet, OAuthError> {
    let mut params: Vec<(String, String)> = spec.refresh_params.clone().into_iter().collect();
    set(&mut params, "grant_type", "refresh_token");
    set(&mut params, "refresh_token", refresh_token.expose());
    let mut tokens = token_request(http, spec, config, client, params).await?;
    // Providers that keep the refresh token do not send it again.
    tokens.refresh_token.get_or_insert_with(|| refresh_token.clone());
    Ok(tokens)
}

/// `OAUTH2_CC`: a token for the client itself (`grant_type=client_credentials`),
/// with the entry's `token_params` (placeholders filled from the connection
/// config; a param whose value is missing is left out, as Nango does for
/// optional fields such as Auth0's `organization`).
pub async fn client_credentials(
    http: &crate::destination::HttpClient,
    spec: &ProviderSpec,
    config: &BTreeMap<String, String>,
    client_id: &str,
    client_secret: &Secret,
) -> Result<TokenSet, OAuthError> {
    let lookup = |name: &str| {
        let key = name.strip_prefix("connectionConfig.").unwrap_or(name);
        config.get(key).filter(|v| !v.trim().is_empty()).cloned()
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in &spec.token_params {
        match crate::template::render_value(value, &lookup) {
            Ok(rendered) => params.push((key.clone(), rendered)),
            Err(crate::template::TemplateError::Missing(_)) => {}
            Err(e) => return Err(OAuthError::Config(format!("`token_params.{key}`: {e}"))),
        }
    }
    set(&mut params, "grant_type", "client_credentials");
    let client = OAuthClient {
        client_id: client_id.to_string(),
        client_secret: client_secret.clone(),
        redirect_uri: String::new(),
    };
    token_request(http, spec, config, &client, params).await
}

fn set(params: &mut Vec<(String, String)>, key: &str, value: &str) {
    params.retain(|(k, _)| k != key);
    params.push((key.to_string(), value.to_string()));
}

async fn token_request(
    http: &crate::destination::HttpClient,
    spec: &ProviderSpec,
    config: &BTreeMap<String, String>,
    client: &OAuthClient,
    mut params: Vec<(String, String)>,
) -> Result<TokenSet, OAuthError> {
    let url = render(spec.token_url.as_deref(), "token_url", config)?;
    let mut request = http
        .request(reqwest::Method::POST, url)
        .map_err(|refused| OAuthError::Config(format!("`token_url`: {refused}")))?
        .header("accept", "application/json")
        .timeout(Duration::from_secs(30));
    if spec.token_request_auth_method.as_deref() == Some("basic") {
        let pair = format!("{}:{}", client.client_id, client.client_secret.expose());
        let mut value = reqwest::header::HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
        .map_err(|_| OAuthError::Config("the client id or secret has characters a header cannot carry".into()))?;
        value.set_sensitive(true);
        request = request.header("authorization", value);
    } else {
        set(&mut params, "client_id", &client.client_id);
        set(&mut params, "client_secret", client.client_secret.expose());
    }
    // `body_format: json` (Auth0 and others); a form otherwise, as OAuth2 says.
    let (content_type, body) = if spec.body_format.as_deref() == Some("json") {
        let object: serde_json::Map<String, Value> =
            params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        ("application/json", Value::Object(object).to_string())
    } else {
        (
            "application/x-www-form-urlencoded",
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish(),
        )
    };
    let response = request
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| OAuthError::Transport(root_cause(&e)))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| OAuthError::Transport(root_cause(&e)))?;
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let error = json["error"].as_str().unwrap_or_default().to_string();
        return Err(match (status, error.as_str()) {
            (_, "invalid_grant") => OAuthError::Revoked(error),
            (401, _) | (_, "invalid_client") => OAuthError::InvalidClient,
            _ => OAuthError::Endpoint {
                status,
                message: json["error_description"].as_str().unwrap_or(&error).to_string(),
            },
        });
    }
    let access_token = json["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::BadResponse("no access_token".into()))?;
    let expires_at =
        // An absurd lifetime (2^64-1 s) saturates to "never" rather than
        // wrapping to "already expired".
        json["expires_in"].as_u64().or_else(|| json["expires_in"].as_str()?.parse().ok()).map(|s| unix_now().saturating_add(s));
    let metadata = spec
        .token_response_metadata
        .iter()
        .filter_map(|field| json.get(field).and_then(Value::as_str).map(|v| (field.clone(), v.to_string())))
        .collect();
    Ok(TokenSet {
        access_token: Secret::new(access_token),
        refresh_token: json["refresh_token"].as_str().filter(|t| !t.is_empty()).map(Secret::new),
        expires_at,
        metadata,
    })
}

fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

pub use terapi_domain::clock::unix_now;

/// A random `state` for the authorization request (CSRF protection).
pub fn random_state() -> String {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS's randomness per instance.
    let (a, b) = (RandomState::new().hash_one(unix_now()), RandomState::new().hash_one(std::process::id()));
    format!("{a:016x}{b:016x}")
}
