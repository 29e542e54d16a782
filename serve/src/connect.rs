//! Connect: an app asks for a session (`POST /connect/sessions`, secret
//! key) and sends its end user to the link; the page, built from
//! providers.yaml, asks for what the provider needs (Gong: access key,
//! secret, optional regional base URL). Save checks the credential with the
//! provider first: a refused one shows its error and saves nothing. OAuth
//! providers start their flow from the same page.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use terapi_host::{AuthMode, Connection, Credentials, ProviderSpec};
use terapi_platform::ConnectionOwner;
use terapi_store::ConnectSession;

use crate::auth::{random_hex, sha256_hex};
use crate::{ApiError, ServeState};

const TOKEN_PREFIX: &str = "nango_connect_session_";

#[derive(Debug, Deserialize)]
pub struct SessionBody {
    end_user: Option<Value>,
    /// Nango's session organization: `{id, display_name}`.
    organization: Option<Value>,
    /// Nango's session tags, copied onto the connection it makes.
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    allowed_integrations: Vec<String>,
    /// terapi's extension: the origin of the app page that opens Connect
    /// (`https://app.example.com`). The page reports its result to that
    /// origin only, and that origin may frame it.
    allowed_origin: Option<String>,
}

pub async fn create_session(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<SessionBody>,
) -> Result<Json<Value>, ApiError> {
    for integration in &body.allowed_integrations {
        state.platform.integration(integration)?;
    }
    let owner = ConnectionOwner { end_user: body.end_user, organization: body.organization, tags: body.tags };
    issue_session(&state, owner, body.allowed_integrations, body.allowed_origin, None).await
}

/// Mints a Connect session (only its token's hash is stored) and its link.
async fn issue_session(
    state: &ServeState,
    owner: ConnectionOwner,
    allowed_integrations: Vec<String>,
    allowed_origin: Option<String>,
    reconnect_connection_id: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let allowed_origin = allowed_origin.as_deref().map(parse_origin).transpose()?;
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32).map_err(server_error)?);
    let expires_at_ms = terapi_host::limits::unix_ms() + state.config.connect_session_ttl.as_millis() as u64;
    state
        .platform
        .store()
        .create_connect_session(&ConnectSession {
            token_sha256: sha256_hex(&token),
            owner: owner.to_stored(),
            allowed_integrations,
            expires_at_ms,
            connection_id: None,
            allowed_origin,
            reconnect_connection_id,
        })
        .await?;
    let mut link = state.config.public_url.join("connect").map_err(server_error)?;
    link.query_pairs_mut().append_pair("session_token", &token);
    Ok(Json(json!({
        "data": { "token": token, "connect_link": link.as_str(), "expires_at": crate::api::rfc3339_ms(expires_at_ms) }
    })))
}

#[derive(Debug, Deserialize)]
pub struct ReconnectBody {
    connection_id: String,
    integration_id: String,
    end_user: Option<Value>,
    allowed_origin: Option<String>,
}

/// `POST /connect/sessions/reconnect` (`createReconnectSession`): a Connect
/// link whose save gives an existing connection a new credential (checked
/// with the provider first) instead of making a new one; its id, records
/// and schedules stay, and an `auth` webhook with `operation: override`
/// goes out.
pub async fn create_reconnect_session(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<ReconnectBody>,
) -> Result<Json<Value>, ApiError> {
    crate::api::connection(&state, &body.connection_id, &body.integration_id).await?;
    let integrations = vec![body.integration_id];
    let owner = ConnectionOwner { end_user: body.end_user, ..ConnectionOwner::default() };
    issue_session(&state, owner, integrations, body.allowed_origin, Some(body.connection_id)).await
}

/// `https://app.example.com` (scheme, host and port only), as a browser
/// names an origin.
fn parse_origin(text: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_body",
            "allowed_origin must be an origin such as https://app.example.com (scheme, host, optional port; no path)",
        )
    };
    let url = url::Url::parse(text).map_err(|_| bad())?;
    let origin = url.origin();
    if !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") || !matches!(url.path(), "" | "/") {
        return Err(bad());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad());
    }
    Ok(origin.ascii_serialization())
}

fn server_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
}

/// The live, unused session of `token`.
async fn live_session(state: &ServeState, token: &str) -> Result<ConnectSession, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown_connect_session_token",
            "this Connect link is not valid or has expired; ask the app for a new one",
        )
    };
    let session = state.platform.store().connect_session(&sha256_hex(token)).await?.ok_or_else(gone)?;
    if session.expires_at_ms < terapi_host::limits::unix_ms() {
        return Err(gone());
    }
    if session.connection_id.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connect_session_used",
            "this Connect link was already used (or is being used) to make a connection; ask the app for a new one",
        ));
    }
    Ok(session)
}

fn offered<'a>(state: &'a ServeState, session: &ConnectSession) -> Vec<(&'a str, &'a ProviderSpec)> {
    state
        .platform
        .providers()
        .iter()
        .filter(|(name, _)| state.platform.is_integration(name))
        .filter(|(name, _)| {
            session.allowed_integrations.is_empty() || session.allowed_integrations.iter().any(|a| a == name)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    session_token: Option<String>,
}

pub async fn page(State(state): State<Arc<ServeState>>, Query(query): Query<PageQuery>) -> Response {
    let token = query.session_token.unwrap_or_default();
    let session = match live_session(&state, &token).await {
        Ok(session) => session,
        Err(e) => return error_page(&state, e),
    };
    let offered = offered(&state, &session);
    let app = state.config.connect_page.app_name.as_deref().map(str::trim).filter(|a| !a.is_empty());
    let mut sections = String::new();
    for (name, spec) in &offered {
        let reads = match state.platform.describe(name).await {
            Ok(description) if !description.syncs.is_empty() => {
                let names: Vec<String> = description.syncs.iter().map(|s| s.name.replace('-', " ")).collect();
                Some(names.join(", "))
            }
            _ => None,
        };
        sections.push_str(&provider_form(name, spec, &token, &intro(&state, name, spec, app, reads.as_deref())));
    }
    // Who asks, and for what, in the end user's words.
    let heading = match (app, offered.as_slice()) {
        (Some(app), [(_, spec)]) => {
            format!("{} wants to connect to your {} account", escape(app), escape(provider_name(spec)))
        }
        (None, [(_, spec)]) => format!("Connect your {} account", escape(provider_name(spec))),
        (Some(app), _) => format!("{} wants to connect to one of your accounts", escape(app)),
        (None, _) => "Connect an account".to_string(),
    };
    let title = match app {
        Some(app) => format!("Connect · {}", escape(app)),
        None => "Connect".to_string(),
    };
    // The page reports to the app that opened it, named at session
    // creation; with none named it reports to nobody.
    let origin = session.allowed_origin.as_deref().map(escape).unwrap_or_default();
    let body = format!(
        "<h1 id=\"heading\">{heading}</h1>{sections}<p id=\"status\" role=\"status\"></p>\
         <div id=\"opener\" data-origin=\"{origin}\" hidden></div>{SCRIPT}"
    );
    page_response(StatusCode::OK, page_shell(&title, &body), &state, session.allowed_origin.as_deref())
}

/// "Gong" for "Gong (Basic Auth)": the end user thinks of the product, not
/// the auth mode.
fn provider_name(spec: &ProviderSpec) -> &str {
    spec.display_name.split(" (").next().unwrap_or(&spec.display_name).trim()
}

/// The provider's logo, what the app will read, and where the end user
/// finds what the form asks for.
fn intro(state: &ServeState, name: &str, spec: &ProviderSpec, app: Option<&str>, reads: Option<&str>) -> String {
    let product = escape(provider_name(spec));
    let initial = provider_name(spec).chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_default();
    // A hue of the key's own, so providers' badges differ.
    let hue = name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360;
    let image = state
        .config
        .connect_page
        .logo_url
        .as_deref()
        .map(|template| {
            template.replace("{provider}", &url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>())
        })
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        // Empty alt: a logo that fails to load leaves the monogram, no broken-image icon.
        .map(|u| format!("<img src=\"{}\" alt=\"\" width=\"40\" height=\"40\">", escape(&u)))
        .unwrap_or_default();
    let who = app.map(escape).unwrap_or_else(|| "The app".to_string());
    let reads = match reads {
        Some(reads) => format!("<p class=\"access\">{who} will read your {product} data: {}.</p>", escape(reads)),
        None => format!("<p class=\"access\">{who} will reach {product}'s API on your behalf.</p>"),
    };
    let docs = spec
        .docs_connect
        .as_deref()
        .filter(|d| d.starts_with("https://"))
        .map(|d| {
            let what = match spec.auth_mode {
                AuthMode::OAuth2 => "What happens when I connect?",
                AuthMode::Basic if name.starts_with("gong") => "Where do I find my access key?",
                AuthMode::ApiKey => "Where do I find my API key?",
                _ => "Where do I find these?",
            };
            format!(
                "<p><a id=\"docs-{p}\" href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer\">{what}</a></p>",
                escape(d),
                p = escape(name)
            )
        })
        .unwrap_or_default();
    format!(
        "<div class=\"provider\"><span class=\"logo\" style=\"background:hsl({hue} 55% 42%)\" aria-hidden=\"true\">{initial}{image}</span>\
         <h2>{}</h2></div>{reads}{docs}",
        escape(&spec.display_name)
    )
}

/// The credential fields the Connect form asks for: the entry's own
/// `credentials`, and those its auth mode needs that it does not describe
/// (most OAUTH2_CC entries describe none, as Nango's form adds them).
fn credential_fields(spec: &ProviderSpec) -> BTreeMap<String, terapi_host::providers::FieldSpec> {
    use terapi_host::providers::FieldSpec;
    let mut fields = spec.credentials.clone();
    let needed: &[(&str, &str, bool)] = match spec.auth_mode {
        AuthMode::Basic => &[("username", "Username", false), ("password", "Password", true)],
        AuthMode::ApiKey => &[("apiKey", "API key", true)],
        AuthMode::OAuth2Cc => &[("client_id", "Client ID", false), ("client_secret", "Client secret", true)],
        _ => &[],
    };
    for (key, title, secret) in needed {
        fields.entry(key.to_string()).or_insert_with(|| FieldSpec {
            title: Some(title.to_string()),
            secret: *secret,
            ..FieldSpec::default()
        });
    }
    // Nango's API_KEY fields are secrets whether or not the entry says so.
    if let Some(key) = fields.get_mut("apiKey") {
        key.secret = true;
    }
    fields
}

fn provider_form(name: &str, spec: &ProviderSpec, token: &str, intro: &str) -> String {
    let title = escape(provider_name(spec));
    if spec.auth_mode == AuthMode::OAuth2 {
        let href = format!(
            "/connect/oauth/start?session_token={}&amp;provider={}",
            url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>(),
            escape(name)
        );
        return format!(
            "<section>{intro}<a class=\"button\" id=\"oauth-{p}\" href=\"{href}\">Continue to {title}</a></section>",
            p = escape(name)
        );
    }
    let mut fields = String::new();
    let field = |group: &str, key: &str, f: &terapi_host::providers::FieldSpec| {
        let input_type = if f.secret {
            "password"
        } else if f.format.as_deref() == Some("uri") {
            "url"
        } else {
            "text"
        };
        format!(
            "<label>{label}{optional}<span class=\"affix\">{prefix}<input name=\"{group}.{key}\" id=\"{p}-{key}\" type=\"{input_type}\"{required}{pattern}{placeholder} autocomplete=\"off\">{suffix}</span><small>{description}</small></label>",
            prefix = f.prefix.as_deref().map(|t| format!("<span>{}</span>", escape(t))).unwrap_or_default(),
            suffix = f.suffix.as_deref().map(|t| format!("<span>{}</span>", escape(t))).unwrap_or_default(),
            label = escape(f.title.as_deref().unwrap_or(key)),
            optional = if f.optional { " <small class=\"optional\">(optional)</small>" } else { "" },
            p = escape(name),
            key = escape(key),
            required = if f.optional { "" } else { " required" },
            pattern = f.pattern.as_deref().map(|p| format!(" pattern=\"{}\"", escape(p))).unwrap_or_default(),
            placeholder = f.example.as_deref().map(|e| format!(" placeholder=\"{}\"", escape(e))).unwrap_or_default(),
            description = escape(f.description.as_deref().unwrap_or("")),
        )
    };
    // What identifies the account first, its secret after (providers.yaml
    // is a map, read back in key order).
    let credentials = credential_fields(spec);
    let mut credentials: Vec<_> = credentials.iter().filter(|(_, f)| !f.hidden && !f.automated).collect();
    credentials.sort_by_key(|(_, f)| f.secret);
    for (key, f) in credentials {
        fields.push_str(&field("credentials", key, f));
    }
    let mut config: Vec<_> = spec.connection_config.iter().filter(|(_, f)| !f.automated && !f.hidden).collect();
    config.sort_by_key(|(_, f)| f.order.unwrap_or(i64::MAX));
    for (key, f) in config {
        fields.push_str(&field("connection_config", key, f));
    }
    format!(
        "<section>{intro}<form data-provider=\"{p}\" id=\"form-{p}\">{fields}<button type=\"submit\">Connect</button></form></section>",
        p = escape(name)
    )
}

#[derive(Debug, Deserialize)]
pub struct SaveBody {
    session_token: String,
    provider: String,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    #[serde(default)]
    connection_config: BTreeMap<String, String>,
}

/// Checks the fields against providers.yaml (required, `pattern`), claims
/// the session, then checks the credential with the provider, then saves
/// and starts the syncs. A refused credential gives the session back.
pub async fn save_connection(
    State(state): State<Arc<ServeState>>,
    Json(body): Json<SaveBody>,
) -> Result<Json<Value>, ApiError> {
    let session = live_session(&state, &body.session_token).await?;
    let Some((provider, spec)) = offered(&state, &session).into_iter().find(|(name, _)| *name == body.provider) else {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`{}` cannot be connected with this link", body.provider),
        ));
    };
    if spec.auth_mode == AuthMode::OAuth2 {
        return Err(ApiError::bad_request(
            "invalid_auth_mode",
            format!("{} connects through OAuth: use its Connect button", spec.display_name),
        ));
    }
    let credentials = checked_fields(&credential_fields(spec), &body.credentials)?;
    let mut config = checked_fields(&spec.connection_config, &body.connection_config)?;
    config.retain(|_, v| !v.is_empty());
    let credentials = Credentials::from_fields(&spec.auth_mode, &|name| credentials.get(name).cloned())
        .map_err(|e| ApiError::bad_request("invalid_body", e))?;
    // A reconnect link gives its connection the new credential (checked
    // first; a refused one changes nothing).
    if let Some(id) = session.reconnect_connection_id.clone() {
        let verification =
            claimed(&state, &session, &id, spec, state.platform.rotate_credentials(&id, credentials)).await?;
        return Ok(Json(
            json!({ "connection_id": id, "provider_config_key": provider, "summary": verification.summary }),
        ));
    }
    let id = format!("conn_{}", random_hex(12).map_err(server_error)?);
    let connection = Connection { id: id.clone(), provider: provider.to_string(), credentials, config };
    let owner = ConnectionOwner::from_stored(&session.owner);
    let verification =
        claimed(&state, &session, &id, spec, state.platform.create_connection_for(&connection, Some(&owner))).await?;
    start_syncs(&state, &id, provider).await?;
    Ok(Json(json!({ "connection_id": id, "provider_config_key": provider, "summary": verification.summary })))
}

/// Runs `make` (which checks a credential and saves a connection `id`)
/// under the session's claim: one link makes one connection however many
/// saves race, and a refused credential gives the link back for another
/// try. What the end user reads says what failed and what to do, never the
/// provider's own text (the operator log has it).
async fn claimed<T>(
    state: &ServeState,
    session: &ConnectSession,
    id: &str,
    spec: &ProviderSpec,
    make: impl Future<Output = Result<T, terapi_platform::PlatformError>>,
) -> Result<T, ApiError> {
    let store = state.platform.store();
    if !store.claim_connect_session(&session.token_sha256, id, terapi_host::limits::unix_ms()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connect_session_used",
            "this Connect link was already used (or is being used) to make a connection; ask the app for a new one",
        ));
    }
    match make.await {
        Ok(made) => Ok(made),
        Err(e) => {
            if let Err(release) = store.release_connect_session(&session.token_sha256, id).await {
                tracing::error!("Connect: the session could not be given back after a failed save: {release}");
            }
            Err(end_user_error(spec, e))
        }
    }
}

const UNUSABLE_BASE_URL: &str =
    "that API base URL is not usable; use your Gong API host, such as https://us-44392.api.gong.io";

/// The end user's view of a failed save. The details (scrubbed of secrets)
/// go to the operator's log.
fn end_user_error(spec: &ProviderSpec, e: terapi_platform::PlatformError) -> ApiError {
    use terapi_host::{EgressError, Error as HostError, ProviderFailure};
    use terapi_platform::PlatformError;
    tracing::warn!(target: "terapi::connect", "a Connect save for {} failed: {e}", spec.display_name);
    let name = &spec.display_name;
    let gong = name.starts_with("Gong");
    let bad_url = || {
        if gong {
            UNUSABLE_BASE_URL.to_string()
        } else {
            format!("that address is not one this server connects to {name} at; check the {name} URL or host name")
        }
    };
    let refused = || match spec.auth_mode {
        AuthMode::OAuth2 => format!("{name} did not accept the authorization; connect again and grant access"),
        AuthMode::ApiKey => format!("{name} refused this API key; check it and try again"),
        AuthMode::OAuth2Cc => format!("{name} refused this client id and secret; check both and try again"),
        _ if gong => format!("{name} refused this access key and secret; check both and try again"),
        _ => format!("{name} refused these credentials; check them and try again"),
    };
    let host_error = match &e {
        PlatformError::NotSaved { source, .. } | PlatformError::Host(source) => Some(source),
        _ => None,
    };
    let http = |h: &EgressError| match h {
        EgressError::Refused(_) if gong => Some((
            "invalid_connection_config",
            "that API base URL is not one this server connects to; use your Gong API host, such as \
             https://api.gong.io or https://us-44392.api.gong.io (Gong: Company settings > Ecosystem > API)"
                .to_string(),
        )),
        EgressError::Refused(_) => Some(("invalid_connection_config", bad_url())),
        // The token endpoint refused the client (OAUTH2_CC).
        EgressError::Reauthorize(_) => Some(("connection_test_failed", refused())),
        EgressError::Timeout(_) | EgressError::Transport(_) => Some((
            "provider_unreachable",
            format!("{name} could not be reached at that API base URL; check it and try again"),
        )),
        EgressError::RateLimited(_) => {
            Some(("rate_limit_exceeded", format!("{name} is busy right now; try again in a minute")))
        }
        _ => None,
    };
    let known = match host_error {
        Some(HostError::Provider(ProviderFailure::Unauthorized(_))) => Some(("connection_test_failed", refused())),
        Some(HostError::Provider(ProviderFailure::Http(h))) | Some(HostError::Http(h)) => http(h),
        // The component's own check of the config (a base URL that is not
        // the provider's API host).
        Some(HostError::Provider(ProviderFailure::InvalidInput(_))) => Some(("invalid_connection_config", bad_url())),
        Some(HostError::Connection { .. }) => Some(("invalid_connection_config", bad_url())),
        _ => match &e {
            PlatformError::Connection(_) => Some(("invalid_connection_config", bad_url())),
            PlatformError::OAuth(_) => {
                Some(("connection_test_failed", format!("{name} did not complete the authorization; connect again")))
            }
            _ => None,
        },
    };
    match known {
        Some((code, message)) => ApiError::bad_request(code, message),
        None => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "connection_test_failed",
            format!("the connection could not be checked with {name}; try again later"),
        ),
    }
}

/// Starts every sync of the new connection on its default schedule, as
/// Nango's auto-start does.
async fn start_syncs(state: &ServeState, id: &str, provider: &str) -> Result<(), ApiError> {
    for sync in &state.platform.describe(provider).await?.syncs {
        state.platform.start_schedule(id, &sync.name).await?;
    }
    Ok(())
}

fn checked_fields(
    spec: &BTreeMap<String, terapi_host::providers::FieldSpec>,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if let Some(unknown) = given.keys().find(|k| !spec.contains_key(*k)) {
        return Err(ApiError::bad_request("invalid_body", format!("`{unknown}` is not a field of this provider")));
    }
    let mut out = BTreeMap::new();
    for (key, field) in spec.iter().filter(|(_, f)| !f.automated) {
        let title = field.title.as_deref().unwrap_or(key);
        let value = given
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| field.default_value.clone())
            .unwrap_or_default();
        if value.is_empty() {
            if !field.optional && !field.hidden {
                return Err(ApiError::bad_request("invalid_body", format!("{title} is required")));
            }
            continue;
        }
        if let Some(pattern) = &field.pattern {
            let re = regex::Regex::new(pattern)
                .map_err(|e| server_error(format!("providers.yaml: the pattern of `{key}` is not a regex: {e}")))?;
            if !re.is_match(&value) {
                // Never echo the value: it may be a secret pasted in the wrong box.
                return Err(ApiError::bad_request("invalid_body", format!("{title} is not in the expected form")));
            }
        }
        out.insert(key.clone(), value);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct OAuthStartQuery {
    session_token: String,
    provider: String,
}

pub async fn oauth_start(State(state): State<Arc<ServeState>>, Query(query): Query<OAuthStartQuery>) -> Response {
    let result = async {
        let session = live_session(&state, &query.session_token).await?;
        if !offered(&state, &session).iter().any(|(name, _)| *name == query.provider) {
            return Err(ApiError::bad_request("invalid_body", "this provider cannot be connected with this link"));
        }
        let state_param = format!("{}.{}", session.token_sha256, query.provider);
        let choice = terapi_platform::ScopeChoice::For { syncs: Vec::new(), actions: Vec::new() };
        let scopes = state.platform.oauth_scopes(&query.provider, &choice).await?;
        let url =
            state.platform.authorization_url(&query.provider, &redirect_uri(&state), &state_param, &scopes).await?;
        Ok::<_, ApiError>(url)
    }
    .await;
    match result {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(&state, e),
    }
}

fn redirect_uri(state: &ServeState) -> String {
    state.config.public_url.join("oauth/callback").map(|u| u.to_string()).unwrap_or_default()
}

fn error_page(state: &ServeState, e: ApiError) -> Response {
    let body = shell("Connect", &format!("<p id=\"status\" class=\"error\">{}</p>", escape(&e.message)));
    page_response(e.status, body, state, None)
}

/// An HTML page with the headers that keep it from being framed by a
/// stranger, sniffed into something else, or leaking its URL (which holds
/// the session token) in a Referer: `Content-Security-Policy` allows only
/// this page's own inline script and style, and frames only by this origin,
/// the operator's `frame_ancestors` and the session's `allowed_origin`.
fn page_response(status: StatusCode, html: String, state: &ServeState, session_origin: Option<&str>) -> Response {
    use axum::http::{HeaderValue, header};
    let mut ancestors = vec!["'self'".to_string()];
    ancestors.extend(state.config.frame_ancestors.iter().cloned());
    ancestors.extend(session_origin.map(str::to_string));
    let csp = format!(
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' https: data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {}",
        ancestors.join(" ")
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn oauth_callback(State(state): State<Arc<ServeState>>, Query(query): Query<CallbackQuery>) -> Response {
    let result = async {
        if let Some(error) = query.error {
            return Err(ApiError::bad_request(
                "oauth_denied",
                format!("the provider did not grant access ({})", error.chars().take(80).collect::<String>()),
            ));
        }
        let (code, param) = query
            .code
            .zip(query.state)
            .ok_or_else(|| ApiError::bad_request("invalid_query_params", "the redirect carried no code or state"))?;
        let (hash, provider) = param
            .split_once('.')
            .ok_or_else(|| ApiError::bad_request("invalid_query_params", "the state is not one this server made"))?;
        let session = state
            .platform
            .store()
            .connect_session(hash)
            .await?
            .filter(|s| s.expires_at_ms >= terapi_host::limits::unix_ms() && s.connection_id.is_none())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown_connect_session_token",
                    "this Connect link is not valid or has expired; ask the app for a new one",
                )
            })?;
        // The provider comes back in the state, which the end user can edit:
        // it must be one the session offers.
        let Some((provider, spec)) = offered(&state, &session).into_iter().find(|(name, _)| *name == provider) else {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "this provider cannot be connected with this link; ask the app for a link that offers it",
            ));
        };
        // A reconnect link saves the new tokens into its connection.
        let id = match &session.reconnect_connection_id {
            Some(id) => id.clone(),
            None => format!("conn_{}", random_hex(12).map_err(server_error)?),
        };
        let redirect = redirect_uri(&state);
        let owner = ConnectionOwner::from_stored(&session.owner);
        let make = state.platform.complete_authorization(&id, provider, &code, &redirect, Some(&owner));
        let authorization = claimed(&state, &session, &id, spec, make).await?;
        start_syncs(&state, &id, provider).await?;
        Ok::<_, ApiError>((id, authorization.base_url, session.allowed_origin))
    }
    .await;
    match result {
        Ok((id, base, origin)) => {
            let body = shell(
                "Connected",
                &format!(
                    "<p id=\"status\" class=\"ok\">Connected</p><p>Connection <code>{}</code>{}</p>",
                    escape(&id),
                    base.map(|b| format!(", API base URL <code>{}</code>", escape(&b))).unwrap_or_default()
                ),
            );
            page_response(StatusCode::OK, body, &state, origin.as_deref())
        }
        Err(e) => error_page(&state, e),
    }
}

fn shell(title: &str, body: &str) -> String {
    page_shell(title, &format!("<h1>{title}</h1>{body}"))
}

fn page_shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )
}

pub use crate::html::escape;

const STYLE: &str = include_str!("../assets/connect.css");

const SCRIPT: &str = concat!("<script>", include_str!("../assets/connect.js"), "</script>");
