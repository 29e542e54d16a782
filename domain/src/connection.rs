//! A connection: one account at one provider (credential + connection config),
//! and the base URL it resolves to.

use std::collections::BTreeMap;
use std::net::IpAddr;

use url::Url;

use crate::providers::{AuthMode, ProviderSpec};
use crate::secret::Secret;
use crate::template::{Template, TemplateError};

/// The connection config key Gong's per-tenant API base URL is stored under,
/// for both `gong` (typed in by the user) and `gong-oauth` (taken from the
/// token response), as in Nango's providers.yaml.
pub const BASE_URL_CONFIG_KEY: &str = "api_base_url_for_customer";

/// The connection config key under which the host keeps the provider-side
/// account the component named when it verified the credential (WIT
/// `verification.account`): limits the provider keeps per account are
/// counted by it.
pub const ACCOUNT_CONFIG_KEY: &str = "terapi_provider_account";

#[derive(Debug, Clone)]
pub struct Connection {
    /// The caller's name for this connection (shown in logs and errors).
    pub id: String,
    /// The key of the provider in providers.yaml (`gong`, `gong-oauth`).
    pub provider: String,
    pub credentials: Credentials,
    /// Nango's `connectionConfig`, e.g. `api_base_url_for_customer`.
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum Credentials {
    /// Gong: access key = username, access key secret = password.
    Basic { username: String, password: Secret },
    OAuth2 {
        access_token: Secret,
        refresh_token: Option<Secret>,
        /// Unix seconds.
        expires_at: Option<u64>,
    },
    /// `API_KEY`: where it goes is the entry's `proxy.headers`/`proxy.query`.
    ApiKey { api_key: Secret },
    /// `OAUTH2_CC`: the client's id and secret; the host gets (and renews)
    /// access tokens with them at the entry's `token_url`.
    OAuth2ClientCredentials { client_id: String, client_secret: Secret },
}

impl Credentials {
    pub fn auth_mode(&self) -> AuthMode {
        match self {
            Credentials::Basic { .. } => AuthMode::Basic,
            Credentials::OAuth2 { .. } => AuthMode::OAuth2,
            Credentials::ApiKey { .. } => AuthMode::ApiKey,
            Credentials::OAuth2ClientCredentials { .. } => AuthMode::OAuth2Cc,
        }
    }

    /// A credential of `mode` from fields named as Nango's API names them
    /// (`username`/`password`; `apiKey`; `client_id`/`client_secret`;
    /// `access_token`, `refresh_token`, `expires_at`), or what is missing.
    pub fn from_fields(mode: &AuthMode, field: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
        let need = |name: &str, what: &str| {
            field(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("{mode} credentials need `{name}` ({what})"))
        };
        Ok(match mode {
            AuthMode::Basic => Credentials::Basic {
                username: need("username", "the user name or access key")?,
                password: Secret::new(need("password", "the password or secret")?),
            },
            AuthMode::ApiKey => Credentials::ApiKey {
                api_key: Secret::new(
                    field("apiKey")
                        .or_else(|| field("api_key"))
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| format!("{mode} credentials need `apiKey` (the key the provider gave you)"))?,
                ),
            },
            AuthMode::OAuth2Cc => Credentials::OAuth2ClientCredentials {
                client_id: need("client_id", "the OAuth client id")?,
                client_secret: Secret::new(need("client_secret", "the OAuth client secret")?),
            },
            AuthMode::OAuth2 => Credentials::OAuth2 {
                access_token: Secret::new(need("access_token", "an OAuth access token")?),
                refresh_token: field("refresh_token").filter(|v| !v.is_empty()).map(Secret::new),
                expires_at: field("expires_at").and_then(|t| t.parse().ok()),
            },
            AuthMode::Other(name) => return Err(format!("terapi does not connect with auth_mode `{name}`")),
        })
    }

    /// The value of `${name}` in an entry's header and query templates:
    /// `apiKey`, `username`, `password`, `credentials.<name>`, `clientId`.
    pub fn template_value(&self, name: &str) -> Option<String> {
        let name = name.strip_prefix("credentials.").unwrap_or(name);
        match (self, name) {
            (Credentials::ApiKey { api_key }, "apiKey" | "api_key") => Some(api_key.expose().to_string()),
            (Credentials::Basic { username, .. }, "username") => Some(username.clone()),
            (Credentials::Basic { password, .. }, "password") => Some(password.expose().to_string()),
            (Credentials::OAuth2ClientCredentials { client_id, .. }, "client_id" | "clientId") => {
                Some(client_id.clone())
            }
            (Credentials::OAuth2ClientCredentials { client_secret, .. }, "client_secret" | "clientSecret") => {
                Some(client_secret.expose().to_string())
            }
            _ => None,
        }
    }

    /// The secrets this credential holds, for scrubbing text that might echo
    /// them: for basic auth also the `base64(user:password)` a server may
    /// echo from the `Authorization` header.
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            Credentials::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.expose());
                vec![password.clone(), Secret::new(base64::engine::general_purpose::STANDARD.encode(pair))]
            }
            Credentials::OAuth2 { access_token, refresh_token, .. } => {
                std::iter::once(access_token).chain(refresh_token.as_ref()).cloned().collect()
            }
            Credentials::ApiKey { api_key } => vec![api_key.clone()],
            Credentials::OAuth2ClientCredentials { client_id, client_secret } => {
                use base64::Engine as _;
                let pair = format!("{client_id}:{}", client_secret.expose());
                vec![client_secret.clone(), Secret::new(base64::engine::general_purpose::STANDARD.encode(pair))]
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("provider `{provider}` uses {expected} auth but the connection has {got} credentials; {hint}")]
    WrongAuthMode { provider: String, expected: Box<str>, got: Box<str>, hint: &'static str },
    #[error("the {0} is empty; give the value from the provider's settings")]
    EmptyCredential(&'static str),
    #[error("provider `{provider}` cannot be connected to: {reason}")]
    NotServed { provider: String, reason: String },
    #[error("base URL of provider `{provider}`: {source}")]
    BaseUrlTemplate {
        provider: String,
        #[source]
        source: TemplateError,
    },
    #[error("base URL `{url}` is not usable: {reason}")]
    BadBaseUrl { url: String, reason: String },
    #[error(
        "connection config `{key}` ({title}) is not in the form providers.yaml asks for{hint}; the value is not shown"
    )]
    ConfigPattern { key: String, title: String, hint: String },
    #[error("providers.yaml: the `pattern` of connection config `{key}` is not a regular expression: {reason}")]
    BadPattern { key: String, reason: String },
    #[error("that connection id is not usable: {reason}; use letters, digits and `-`, `_`, `.`, `@`, e.g. `acme-gong`")]
    BadId { reason: String },
}

impl Connection {
    /// Checks the credential against the provider's auth mode and resolves the
    /// base URL every request of this connection goes to.
    pub fn resolve(&self, spec: &ProviderSpec) -> Result<Url, ConnectionError> {
        let got = self.credentials.auth_mode();
        if got != spec.auth_mode {
            return Err(ConnectionError::WrongAuthMode {
                provider: self.provider.clone(),
                expected: spec.auth_mode.as_str().into(),
                got: got.as_str().into(),
                hint: match spec.auth_mode {
                    AuthMode::Basic => "give a username and password (Gong: access key and secret)",
                    AuthMode::OAuth2 => "authorize the connection to get an access token",
                    AuthMode::ApiKey => "give the API key",
                    AuthMode::OAuth2Cc => "give the client id and client secret",
                    AuthMode::Other(_) => "terapi does not serve this auth mode",
                },
            });
        }
        match &self.credentials {
            Credentials::Basic { username, password } => {
                if username.trim().is_empty() {
                    return Err(ConnectionError::EmptyCredential("access key (username)"));
                }
                if password.is_empty() {
                    return Err(ConnectionError::EmptyCredential("access key secret (password)"));
                }
            }
            Credentials::OAuth2 { access_token, .. } => {
                if access_token.is_empty() {
                    return Err(ConnectionError::EmptyCredential("access token"));
                }
            }
            Credentials::ApiKey { api_key } => {
                if api_key.is_empty() {
                    return Err(ConnectionError::EmptyCredential("API key"));
                }
            }
            Credentials::OAuth2ClientCredentials { client_id, client_secret } => {
                if client_id.trim().is_empty() {
                    return Err(ConnectionError::EmptyCredential("client id"));
                }
                if client_secret.is_empty() {
                    return Err(ConnectionError::EmptyCredential("client secret"));
                }
            }
        }
        self.check_config_patterns(spec)?;
        let proxy =
            spec.proxy().map_err(|reason| ConnectionError::NotServed { provider: self.provider.clone(), reason })?;
        let template = Template::parse(&proxy.base_url)
            .map_err(|source| ConnectionError::BaseUrlTemplate { provider: self.provider.clone(), source })?;
        let rendered = template
            .render(&self.config)
            .map_err(|source| ConnectionError::BaseUrlTemplate { provider: self.provider.clone(), source })?;
        parse_base_url(&rendered)
    }
}

impl Connection {
    /// Every config value whose field has a `pattern` in providers.yaml
    /// must match it, wherever the value came from (a Connect form, the
    /// CLI, a token response): for Gong, the base URL must be a Gong API
    /// host, so an end user cannot point the credential anywhere else.
    fn check_config_patterns(&self, spec: &ProviderSpec) -> Result<(), ConnectionError> {
        for (key, value) in &self.config {
            let Some(field) = spec.connection_config.get(key) else { continue };
            let Some(pattern) = &field.pattern else { continue };
            let re = regex::Regex::new(pattern)
                .map_err(|e| ConnectionError::BadPattern { key: key.clone(), reason: e.to_string() })?;
            if !value.is_empty() && !re.is_match(value) {
                return Err(ConnectionError::ConfigPattern {
                    key: key.clone(),
                    title: field.title.clone().unwrap_or_else(|| key.clone()),
                    hint: field.example.as_ref().map(|e| format!(" (for example {e})")).unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// The provider-side account whose limits this connection's requests
    /// count against. Gong's limits are per company, and a company on a
    /// regional cluster has its own base URL (`https://us-44392.api.gong.io`),
    /// so that URL names the tenant, whatever the connection or auth mode.
    /// On the provider's default base URL, which many companies share, the
    /// account the component named on verify does, or else the access key
    /// (basic) or the connection (OAuth).
    pub fn tenant(&self, spec: &ProviderSpec, base: &Url) -> String {
        let default = spec
            .proxy
            .as_ref()
            .and_then(|proxy| Template::parse(&proxy.base_url).ok())
            .and_then(|t| t.render(&BTreeMap::new()).ok())
            .and_then(|text| parse_base_url(&text).ok());
        let base_text = base.as_str().trim_end_matches('/');
        if default.as_ref() != Some(base) {
            return base_text.to_string();
        }
        // The account the provider named (Gong: the company) is shared by
        // all its keys; failing that, the key or the connection.
        if let Some(account) = self.config.get(ACCOUNT_CONFIG_KEY).filter(|a| !a.is_empty()) {
            return format!("{base_text} (account {account})");
        }
        match &self.credentials {
            Credentials::Basic { username, .. } => format!("{base_text} (access key {username})"),
            Credentials::OAuth2ClientCredentials { client_id, .. } => format!("{base_text} (client {client_id})"),
            Credentials::OAuth2 { .. } | Credentials::ApiKey { .. } => {
                format!("{base_text} (connection {})", self.id)
            }
        }
    }
}

/// Longest connection id accepted.
pub const MAX_CONNECTION_ID_LEN: usize = 255;

/// A connection id names a row, a log line and a URL segment (Nango's
/// `connectionId`): any printable text but `/` and `\`, without surrounding
/// space, up to 255 bytes.
pub fn check_connection_id(id: &str) -> Result<(), ConnectionError> {
    let bad = |reason: &str| ConnectionError::BadId { reason: reason.to_string() };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > MAX_CONNECTION_ID_LEN {
        return Err(bad(&format!("it is {} bytes long; the most is {MAX_CONNECTION_ID_LEN}", id.len())));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    if id.contains(['/', '\\']) {
        return Err(bad("it contains `/` or `\\`"));
    }
    if id.trim() != id {
        return Err(bad("it starts or ends with white space"));
    }
    if id == "." || id == ".." {
        return Err(bad("it is only dots"));
    }
    Ok(())
}

/// `us-44392.api.gong.io` and `https://us-44392.api.gong.io/` both become
/// `https://us-44392.api.gong.io`. Plain http is only allowed to loopback:
/// anything else would send the credential in clear text.
pub fn parse_base_url(text: &str) -> Result<Url, ConnectionError> {
    let bad = |reason: &str| ConnectionError::BadBaseUrl { url: text.to_string(), reason: reason.to_string() };
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("https://{text}") };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(bad("it has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad("plain http would send the credential unencrypted; use https"));
        }
        other => return Err(bad(&format!("scheme `{other}` is not http(s)"))),
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_checked() {
        for good in ["acme", "acme-gong_1.prod", "user@example.com", "7f0c0c4e-1b2a-4c3d-9e8f-001122334455"] {
            assert!(check_connection_id(good).is_ok(), "{good}");
        }
        let long = "x".repeat(256);
        for bad in ["", " acme", "a/b", "a\\b", "..", "a\nb", "a\u{7f}b", long.as_str()] {
            let error = check_connection_id(bad).unwrap_err().to_string();
            assert!(error.starts_with("that connection id is not usable"), "{error}");
            assert!(!error.contains(bad) || bad.is_empty(), "the id is not echoed: {error}");
        }
    }

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(parse_base_url("us-44392.api.gong.io").unwrap().as_str(), "https://us-44392.api.gong.io/");
        assert_eq!(parse_base_url("https://api.gong.io/").unwrap().as_str(), "https://api.gong.io/");
        assert_eq!(parse_base_url("http://127.0.0.1:8080/api/").unwrap().as_str(), "http://127.0.0.1:8080/api");
        for bad in [
            "http://api.gong.io",
            "https://u:p@api.gong.io",
            "https://api.gong.io?x=1",
            "ftp://api.gong.io",
            "https://",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }
}
