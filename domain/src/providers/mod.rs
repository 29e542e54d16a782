//! `providers.yaml`: Nango's provider configuration format.
//!
//! Keys follow Nango's names (`auth_mode`, `authorization_url`, `token_url`,
//! `proxy.base_url` with `${connectionConfig.x} || fallback`, ...). Keys we do
//! not use (webhook scripts, categories of other tools) are accepted so a
//! Nango file loads unchanged. One extension: `proxy.rate_limit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::template::Template;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        /// The file, or "providers.yaml" for text given directly.
        origin: String,
        line: Option<usize>,
        /// Names the provider and field, e.g. `gong.proxy.base_url: ...`.
        message: String,
    },
    #[error("no provider `{key}` in {origin}; known providers: {known}")]
    UnknownProvider { key: String, origin: String, known: String },
}

/// Every `auth_mode` Nango defines. terapi serves `BASIC`, `API_KEY`,
/// `OAUTH2` and `OAUTH2_CC`; it reads the others (so Nango's file loads
/// whole) and says so where one is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthMode {
    Basic,
    OAuth2,
    ApiKey,
    /// OAuth2 client credentials: the host gets (and renews) the token.
    OAuth2Cc,
    /// A mode terapi reads but does not serve, as written (`TWO_STEP`, or a
    /// name Nango does not define either).
    Other(String),
}

/// Nango's modes terapi reads but does not serve.
const UNSERVED_MODES: &[&str] = &[
    "TWO_STEP",
    "MCP_OAUTH2",
    "MCP_OAUTH2_GENERIC",
    "JWT",
    "OAUTH1",
    "BILL",
    "NONE",
    "AWS_SIGV4",
    "INSTALL_PLUGIN",
    "SIGNATURE",
    "APP",
    "APP_STORE",
    "CUSTOM",
    "TBA",
];

impl AuthMode {
    pub fn parse(name: &str) -> AuthMode {
        match name {
            "BASIC" => AuthMode::Basic,
            "OAUTH2" => AuthMode::OAuth2,
            "API_KEY" => AuthMode::ApiKey,
            "OAUTH2_CC" => AuthMode::OAuth2Cc,
            other => AuthMode::Other(other.to_string()),
        }
    }

    /// Nango's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            AuthMode::Basic => "BASIC",
            AuthMode::OAuth2 => "OAUTH2",
            AuthMode::ApiKey => "API_KEY",
            AuthMode::OAuth2Cc => "OAUTH2_CC",
            AuthMode::Other(name) => name,
        }
    }

    /// Why terapi cannot connect with this mode, if it cannot.
    pub fn not_served(&self) -> Option<String> {
        match self {
            AuthMode::Other(name) if UNSERVED_MODES.contains(&name.as_str()) => Some(format!(
                "auth_mode `{name}` is read but not served by terapi (it serves BASIC, API_KEY, OAUTH2, OAUTH2_CC)"
            )),
            AuthMode::Other(name) => {
                Some(format!("auth_mode `{name}` is not one Nango defines; use BASIC, API_KEY, OAUTH2 or OAUTH2_CC"))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuthMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(AuthMode::parse(&String::deserialize(deserializer)?))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSpec {
    #[serde(default)]
    pub display_name: String,
    #[serde(default, deserialize_with = "lenient::strings")]
    pub categories: Vec<String>,
    pub auth_mode: AuthMode,
    #[serde(default, deserialize_with = "lenient::string")]
    pub authorization_url: Option<String>,
    /// Nango writes one entry's as a map; that entry is read, not served.
    #[serde(default, deserialize_with = "lenient::string")]
    pub token_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub authorization_params: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub token_params: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub refresh_params: BTreeMap<String, String>,
    /// `basic`: client id and secret go in an HTTP basic header at the token URL.
    #[serde(default, deserialize_with = "lenient::string")]
    pub token_request_auth_method: Option<String>,
    /// `json` or `form` (the default): how a token request's body is sent.
    #[serde(default, deserialize_with = "lenient::string")]
    pub body_format: Option<String>,
    /// Fields of the token response copied into the connection config.
    #[serde(default, deserialize_with = "lenient::strings")]
    pub token_response_metadata: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    pub default_scopes: Vec<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub scope_separator: Option<String>,
    #[serde(default)]
    pub disable_pkce: bool,
    /// Absent in a few of Nango's entries (they cannot be proxied).
    pub proxy: Option<ProxySpec>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub docs: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub docs_connect: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub setup_guide_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::fields")]
    pub credentials: BTreeMap<String, FieldSpec>,
    #[serde(default, deserialize_with = "lenient::fields")]
    pub connection_config: BTreeMap<String, FieldSpec>,
    /// Why terapi cannot connect to this provider (set at load), if it cannot.
    #[serde(skip)]
    pub not_served: Option<String>,
    /// Keys neither terapi nor Nango's schema knows (a typo, likely), kept
    /// for `providers list` to show.
    #[serde(skip)]
    pub unknown_keys: Vec<String>,
}

impl ProviderSpec {
    /// The proxy section, or why there is none.
    pub fn proxy(&self) -> Result<&ProxySpec, String> {
        self.proxy.as_ref().ok_or_else(|| "the entry has no `proxy.base_url`, so it cannot be proxied".to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProxySpec {
    pub base_url: String,
    /// Headers every request carries (`authorization: Bearer ${apiKey}`):
    /// how `API_KEY` providers take their key. Values are templates.
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters every request carries (`api_key: ${apiKey}`).
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: RetrySpec,
    pub rate_limit: Option<RateLimitSpec>,
    /// The request that checks a credential before a connection is saved.
    pub verification: Option<VerificationSpec>,
}

/// Nango's `proxy.verification`.
#[derive(Debug, Clone, Deserialize)]
pub struct VerificationSpec {
    #[serde(default, deserialize_with = "lenient::string")]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    pub endpoints: Vec<String>,
    #[serde(default, deserialize_with = "lenient::scalars")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub base_url_override: Option<String>,
}

/// Nango's `proxy.retry`: which response headers say when to try again.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RetrySpec {
    /// Headers holding seconds to wait (e.g. `retry-after`).
    #[serde(default, deserialize_with = "lenient::strings")]
    pub after: Vec<String>,
    /// Headers holding the time at which to retry.
    #[serde(default, deserialize_with = "lenient::strings")]
    pub at: Vec<String>,
}

/// Extension: the provider's documented request budget per connection.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub per_second: Option<u32>,
    pub per_day: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FieldSpec {
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub example: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub pattern: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub format: Option<String>,
    /// Shown before the input (`https://`), as Nango's Connect UI does.
    #[serde(default, deserialize_with = "lenient::string")]
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub suffix: Option<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub hidden: bool,
    /// Filled in by the host (e.g. from the token response), not by the user.
    #[serde(default)]
    pub automated: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    pub default_value: Option<String>,
    #[serde(default)]
    pub order: Option<i64>,
}

/// Nango writes some values as numbers or booleans where most entries
/// write strings, and a few as maps: scalars are read as text, anything
/// else is left out, so one odd value never stops an entry loading.
mod lenient {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};
    use serde_yaml::Value;

    fn text(value: Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(text(Value::deserialize(d)?))
    }

    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Sequence(items) => items.into_iter().filter_map(text).collect(),
            other => text(other).into_iter().collect(),
        })
    }

    pub fn scalars<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Mapping(map) => map.into_iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
            _ => BTreeMap::new(),
        })
    }

    pub fn fields<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, super::FieldSpec>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Mapping(map) => {
                map.into_iter().filter_map(|(k, v)| Some((text(k)?, serde_yaml::from_value(v).ok()?))).collect()
            }
            _ => BTreeMap::new(),
        })
    }
}

/// Top-level keys of an entry in Nango's schema (and terapi's), so a key
/// that is neither is pointed out rather than silently dropped.
const KNOWN_KEYS: &[&str] = &[
    "display_name",
    "docs",
    "categories",
    "proxy",
    "auth_mode",
    "docs_connect",
    "credentials",
    "token_url",
    "connection_config",
    "token_params",
    "authorization_url",
    "authorization_params",
    "refresh_params",
    "setup_guide_url",
    "scope_separator",
    "body_format",
    "token_request_auth_method",
    "disable_pkce",
    "alias",
    "token_response",
    "webhook_routing_script",
    "token_headers",
    "default_scopes",
    "post_connection_script",
    "webhook_user_defined_secret",
    "client_registration",
    "registration_url",
    "token_response_metadata",
    "authorization_method",
    "refresh_url",
    "credentials_verification_script",
    "redirect_uri_metadata",
    "webhook_allowed_query_params",
    "token_expires_in_ms",
    "signature",
    "token",
    "registration_params",
    "token_request_method",
    "authorization_url_replacements",
    "assertion",
    "integration_config",
    "refresh_token_params",
    "additional_steps",
    "auth",
    "authorization_url_skip_empty",
    "request_url",
    "signature_method",
    "pre_connection_deletion_script",
    "authorization_code_param_in_callback",
    "assertion_option",
    "authorization_url_skip_encode",
    "authorization_url_fragment",
    "token_expiration_buffer",
    "connection_configuration",
    "alternate_access_token_response_path",
    "require_client_certificate",
    "refresh_token_response_metadata",
    "auth_type",
    "expires_in_unit",
    "refresh_token_headers",
    "token_response_headers",
    "installation",
    "authorization_code_param_in_webhook",
    "webhook_response_metadata",
    "decode_url",
    "request_params",
];

/// One entry that could not be read at all (not a mapping, an alias that
/// goes nowhere or in a circle, a field of the wrong shape).
#[derive(Debug, Clone)]
pub struct BrokenEntry {
    pub line: Option<usize>,
    pub message: String,
}

/// Every provider of one `providers.yaml`: each entry read on its own, so
/// one entry terapi cannot serve (or read) never stops the others.
#[derive(Debug, Clone)]
pub struct Providers {
    origin: String,
    entries: BTreeMap<String, ProviderSpec>,
    /// Where each served entry's problem was found, for errors.
    problem_lines: BTreeMap<String, Option<usize>>,
    broken: BTreeMap<String, BrokenEntry>,
}

impl Providers {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `origin` names it in errors (usually the file path).
    /// Fails only when the text is not YAML, repeats a key, or has no
    /// entries; an entry that cannot be served is kept with the reason.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |e: serde_yaml::Error| ConfigError::Invalid {
            origin: origin.to_string(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        };
        // YAML loaders keep the last of two equal keys without a word; a
        // provider or field written twice is a mistake to point at.
        serde_yaml::from_str::<NoDuplicateKeys>(text).map_err(|e| {
            let mut error = invalid(e);
            if let ConfigError::Invalid { line, message, .. } = &mut error
                && let Some(key) = message.split('`').nth(1)
            {
                *line = second_definition(text, key, line.unwrap_or(1)).or(*line);
            }
            error
        })?;
        let raw: BTreeMap<String, serde_yaml::Value> = match serde_yaml::from_str(text).map_err(invalid)? {
            serde_yaml::Value::Null => BTreeMap::new(),
            other => serde_yaml::from_value(other).map_err(invalid)?,
        };
        if raw.is_empty() {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                line: None,
                message: "no providers defined; expected entries like `gong:` with an `auth_mode`".into(),
            });
        }
        let mut providers = Providers {
            origin: origin.to_string(),
            entries: BTreeMap::new(),
            problem_lines: BTreeMap::new(),
            broken: BTreeMap::new(),
        };
        for key in raw.keys() {
            let resolved = match resolve_alias(&raw, key) {
                Ok(resolved) => resolved,
                Err((field, message)) => {
                    providers.broken.insert(key.clone(), BrokenEntry { line: locate(text, key, field), message });
                    continue;
                }
            };
            let unknown_keys: Vec<String> =
                resolved.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())).cloned().collect();
            let value = serde_yaml::to_value(&resolved).unwrap_or(serde_yaml::Value::Null);
            match serde_path_to_error::deserialize::<_, ProviderSpec>(value) {
                Ok(mut spec) => {
                    if spec.display_name.is_empty() {
                        spec.display_name = key.clone();
                    }
                    spec.unknown_keys = unknown_keys;
                    if let Err((field, message)) = validate(&spec) {
                        providers.problem_lines.insert(key.clone(), locate(text, key, field));
                        spec.not_served = Some(format!("{key}.{field}: {message}"));
                    }
                    providers.entries.insert(key.clone(), spec);
                }
                Err(e) => {
                    // The path of the bad value (`proxy.rate_limit.per_second`)
                    // names the field and finds its line.
                    let path = e.path().to_string();
                    let message = e.into_inner().to_string();
                    let field = if path == "." || path.is_empty() { "auth_mode".to_string() } else { path };
                    let line = locate(text, key, &field);
                    providers
                        .broken
                        .insert(key.clone(), BrokenEntry { line, message: format!("{key}.{field}: {message}") });
                }
            }
        }
        Ok(providers)
    }

    /// These providers, with `lower`'s entries added where this file has
    /// none of that name (`--providers` given twice: the first wins).
    pub fn merged_over(mut self, lower: Providers) -> Providers {
        for (key, spec) in lower.entries {
            if !self.entries.contains_key(&key) && !self.broken.contains_key(&key) {
                if let Some(line) = lower.problem_lines.get(&key) {
                    self.problem_lines.insert(key.clone(), *line);
                }
                self.entries.insert(key, spec);
            }
        }
        for (key, broken) in lower.broken {
            if !self.entries.contains_key(&key) {
                self.broken.entry(key).or_insert(broken);
            }
        }
        self.origin = format!("{} + {}", self.origin, lower.origin);
        self
    }

    /// A provider terapi can connect to; an entry it cannot serve is an
    /// error that says why (and where).
    pub fn get(&self, key: &str) -> Result<&ProviderSpec, ConfigError> {
        let spec = self.entry(key)?;
        match &spec.not_served {
            None => Ok(spec),
            Some(reason) => Err(ConfigError::Invalid {
                origin: self.origin.clone(),
                line: self.problem_lines.get(key).copied().flatten(),
                message: reason.clone(),
            }),
        }
    }

    /// Any entry that was read, served or not.
    pub fn entry(&self, key: &str) -> Result<&ProviderSpec, ConfigError> {
        if let Some(spec) = self.entries.get(key) {
            return Ok(spec);
        }
        if let Some(broken) = self.broken.get(key) {
            return Err(ConfigError::Invalid {
                origin: self.origin.clone(),
                line: broken.line,
                message: broken.message.clone(),
            });
        }
        Err(ConfigError::UnknownProvider {
            key: key.to_string(),
            origin: self.origin.clone(),
            known: self.entries.keys().take(50).cloned().collect::<Vec<_>>().join(", ")
                + if self.entries.len() > 50 { ", … (`terapi providers list` shows all)" } else { "" },
        })
    }

    /// Every entry that was read (served or not), by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ProviderSpec)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entries that could not be read, by key.
    pub fn broken(&self) -> impl Iterator<Item = (&str, &BrokenEntry)> {
        self.broken.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// An entry with its `alias` followed: the aliased entry's keys, then the
/// entry's own over them (as Nango reads it).
fn resolve_alias(
    raw: &BTreeMap<String, serde_yaml::Value>,
    key: &str,
) -> Result<BTreeMap<String, serde_yaml::Value>, (&'static str, String)> {
    let mut chain = vec![key.to_string()];
    let mut layers = Vec::new();
    let mut current = key.to_string();
    loop {
        let value = raw
            .get(&current)
            .ok_or_else(|| ("alias", format!("{key}.alias: `{current}` is not an entry of this file")))?;
        let map: BTreeMap<String, serde_yaml::Value> = match value {
            serde_yaml::Value::Mapping(_) => {
                serde_yaml::from_value(value.clone()).map_err(|e| ("auth_mode", format!("{key}: {e}")))?
            }
            _ => return Err(("auth_mode", format!("{current}: an entry must be a mapping of fields"))),
        };
        let next = map.get("alias").and_then(|a| a.as_str()).map(str::to_string);
        layers.push(map);
        match next {
            None => break,
            Some(next) if chain.contains(&next) => {
                chain.push(next);
                return Err(("alias", format!("{key}.alias: the aliases go in a circle ({})", chain.join(" → "))));
            }
            Some(next) => {
                chain.push(next.clone());
                current = next;
            }
        }
    }
    let mut merged = BTreeMap::new();
    for layer in layers.into_iter().rev() {
        merged.extend(layer);
    }
    merged.remove("alias");
    Ok(merged)
}

/// The line where `key:` appears for the second time at one indentation
/// from line `from` on (the loader reports only the mapping's start).
fn second_definition(text: &str, key: &str, from: usize) -> Option<usize> {
    let mut first_at_indent = std::collections::HashSet::new();
    text.lines().enumerate().skip(from.saturating_sub(1)).find_map(|(number, line)| {
        let trimmed = line.trim_start();
        let defines = trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'));
        (defines && !first_at_indent.insert(line.len() - trimmed.len())).then_some(number + 1)
    })
}

/// Any YAML document, refused if a mapping in it has a key twice.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            map.next_value::<NoDuplicateKeys>()?;
            let name = match &key {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
            };
            if !seen.insert(name.clone()) {
                return Err(serde::de::Error::custom(format!("`{name}` is defined twice; keep one of them")));
            }
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        NoDuplicateKeys::deserialize(d)
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use serde::de::VariantAccess as _;
        let (_, variant) = data.variant::<serde_yaml::Value>()?;
        variant.newtype_variant::<NoDuplicateKeys>()
    }
}

/// What an entry needs for terapi to serve it: a served auth mode, a proxy
/// base URL that parses, and the fields its mode needs. The first problem
/// found is the entry's reason, by field.
fn validate(spec: &ProviderSpec) -> Result<(), (&'static str, String)> {
    if let Some(reason) = spec.auth_mode.not_served() {
        return Err(("auth_mode", reason));
    }
    let proxy = spec.proxy().map_err(|reason| ("proxy", reason))?;
    Template::parse(&proxy.base_url).map_err(|e| ("proxy.base_url", e.to_string()))?;
    let urls: &[(&'static str, &Option<String>)] = match spec.auth_mode {
        AuthMode::OAuth2 => &[("authorization_url", &spec.authorization_url), ("token_url", &spec.token_url)],
        AuthMode::OAuth2Cc => &[("token_url", &spec.token_url)],
        _ => &[],
    };
    for (field, value) in urls {
        let value = value.as_deref().ok_or((*field, format!("required when auth_mode is {}", spec.auth_mode)))?;
        Template::parse(value).map_err(|e| (*field, e.to_string()))?;
    }
    if matches!(spec.auth_mode, AuthMode::OAuth2 | AuthMode::OAuth2Cc)
        && let Some(method) = &spec.token_request_auth_method
        && method != "basic"
        && method != "custom"
    {
        return Err(("token_request_auth_method", format!("`{method}` is not supported; use `basic`")));
    }
    if spec.auth_mode == AuthMode::ApiKey
        && !proxy.headers.values().chain(proxy.query.values()).any(|v| v.contains("${apiKey}") || v.contains("apiKey"))
    {
        return Err((
            "proxy.headers",
            "an API_KEY entry must say where the key goes (`${apiKey}` in proxy.headers or proxy.query)".into(),
        ));
    }
    // Every placeholder of the headers and query must be one the host
    // fills in, or the first request would fail: checked now, with names only.
    let fillable = |name: &str| {
        let known = match name.strip_prefix("credentials.") {
            Some(field) => matches!(
                (&spec.auth_mode, field),
                (AuthMode::ApiKey, "apiKey" | "api_key")
                    | (AuthMode::Basic, "username" | "password")
                    | (AuthMode::OAuth2Cc, "client_id" | "client_secret")
            ),
            None => {
                name.starts_with("connectionConfig.")
                    || matches!(
                        (&spec.auth_mode, name),
                        (AuthMode::ApiKey, "apiKey")
                            | (AuthMode::Basic, "username" | "password")
                            | (AuthMode::OAuth2 | AuthMode::OAuth2Cc, "accessToken" | "access_token")
                    )
            }
        };
        known.then(|| "x".to_string())
    };
    for (field, map) in [("proxy.headers", &proxy.headers), ("proxy.query", &proxy.query)] {
        for (name, template) in map {
            crate::template::render_value(template, &fillable).map_err(|e| {
                let problem = match e {
                    crate::template::TemplateError::Missing(names) => {
                        format!("`${{{}}}` is not a value terapi fills in", names.join("}`, `${"))
                    }
                    other => other.to_string(),
                };
                (
                    field,
                    format!(
                        "`{name}`: {problem} (it fills in the {} credential and connection config)",
                        spec.auth_mode
                    ),
                )
            })?;
        }
    }
    if let Some(limit) = proxy.rate_limit
        && (limit.per_second == Some(0) || limit.per_day == Some(0))
    {
        return Err(("proxy.rate_limit", "limits must be at least 1 (leave a limit out for none)".into()));
    }
    Ok(())
}

/// The line of `field` (a dotted path) inside the block of provider `key`;
/// for a field that is missing, the line of the provider itself.
fn locate(text: &str, key: &str, field: &str) -> Option<usize> {
    let mut lines = text.lines().enumerate();
    let header = format!("{key}:");
    let (header_index, _) = lines.find(|(_, l)| l.trim_end() == header)?;
    let mut wanted = field.split('.').peekable();
    let mut best = Some(header_index + 1);
    for (n, line) in lines {
        let trimmed = line.trim_start();
        if !line.starts_with(' ') && !line.starts_with('\t') && !trimmed.is_empty() && !trimmed.starts_with('#') {
            break; // next provider
        }
        if let Some(part) = wanted.peek()
            && trimmed.starts_with(&format!("{part}:"))
        {
            best = Some(n + 1);
            wanted.next();
            if wanted.peek().is_none() {
                return best;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
