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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthMode {
    Basic,
    #[serde(rename = "OAUTH2")]
    OAuth2,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSpec {
    pub display_name: String,
    #[serde(default)]
    pub categories: Vec<String>,
    pub auth_mode: AuthMode,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    #[serde(default)]
    pub authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    #[serde(default)]
    pub refresh_params: BTreeMap<String, String>,
    /// `basic`: client id and secret go in an HTTP basic header at the token URL.
    pub token_request_auth_method: Option<String>,
    /// Fields of the token response copied into the connection config.
    #[serde(default)]
    pub token_response_metadata: Vec<String>,
    #[serde(default)]
    pub disable_pkce: bool,
    pub proxy: ProxySpec,
    pub docs: Option<String>,
    pub docs_connect: Option<String>,
    pub setup_guide_url: Option<String>,
    #[serde(default)]
    pub credentials: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub connection_config: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProxySpec {
    pub base_url: String,
    #[serde(default)]
    pub retry: RetrySpec,
    pub rate_limit: Option<RateLimitSpec>,
}

/// Nango's `proxy.retry`: which response headers say when to try again.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RetrySpec {
    /// Headers holding seconds to wait (e.g. `retry-after`).
    #[serde(default)]
    pub after: Vec<String>,
    /// Headers holding the time at which to retry.
    #[serde(default)]
    pub at: Vec<String>,
}

/// Extension: the provider's documented request budget per connection.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub per_second: Option<u32>,
    pub per_day: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldSpec {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub example: Option<String>,
    pub pattern: Option<String>,
    pub format: Option<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub secret: bool,
    /// Filled in by the host (e.g. from the token response), not by the user.
    #[serde(default)]
    pub automated: bool,
    pub default_value: Option<String>,
}

/// Every provider of one `providers.yaml`, validated.
#[derive(Debug, Clone)]
pub struct Providers {
    origin: String,
    entries: BTreeMap<String, ProviderSpec>,
}

impl Providers {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `origin` names it in errors (usually the file path).
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
        let entries: BTreeMap<String, ProviderSpec> = serde_yaml::from_str(text).map_err(invalid)?;
        if entries.is_empty() {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                line: None,
                message: "no providers defined; expected entries like `gong:` with an `auth_mode`".into(),
            });
        }
        for (key, spec) in &entries {
            validate(key, spec).map_err(|(field, message)| ConfigError::Invalid {
                origin: origin.to_string(),
                line: locate(text, key, field),
                message: format!("{key}.{field}: {message}"),
            })?;
        }
        Ok(Providers { origin: origin.to_string(), entries })
    }

    pub fn get(&self, key: &str) -> Result<&ProviderSpec, ConfigError> {
        self.entries.get(key).ok_or_else(|| ConfigError::UnknownProvider {
            key: key.to_string(),
            origin: self.origin.clone(),
            known: self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ProviderSpec)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
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

/// Checks what serde cannot: templates, URLs, and fields an auth mode needs.
fn validate(key: &str, spec: &ProviderSpec) -> Result<(), (&'static str, String)> {
    let _ = key;
    Template::parse(&spec.proxy.base_url).map_err(|e| ("proxy.base_url", e.to_string()))?;
    if spec.auth_mode == AuthMode::OAuth2 {
        for (field, value) in [("authorization_url", &spec.authorization_url), ("token_url", &spec.token_url)] {
            let value = value.as_deref().ok_or((field, "required when auth_mode is OAUTH2".to_string()))?;
            Template::parse(value).map_err(|e| (field, e.to_string()))?;
        }
        if let Some(method) = &spec.token_request_auth_method
            && method != "basic"
            && method != "custom"
        {
            return Err(("token_request_auth_method", format!("`{method}` is not supported; use `basic`")));
        }
    }
    if let Some(limit) = spec.proxy.rate_limit
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
mod tests {
    use super::*;

    const GOOD: &str = "gong:\n    display_name: Gong\n    auth_mode: BASIC\n    proxy:\n        base_url: ${connectionConfig.api_base_url_for_customer} || https://api.gong.io\n";

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let twice = format!("{GOOD}{GOOD}");
        let err = Providers::parse(&twice, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("p.yaml, line 6") && err.contains("`gong` is defined twice"), "{err}");
        let field_twice = GOOD.replace("    auth_mode: BASIC\n", "    auth_mode: BASIC\n    auth_mode: OAUTH2\n");
        let err = Providers::parse(&field_twice, "p.yaml").unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("`auth_mode` is defined twice"), "{err}");
    }

    #[test]
    fn parses_a_minimal_entry() {
        let p = Providers::parse(GOOD, "p.yaml").unwrap();
        assert_eq!(p.get("gong").unwrap().auth_mode, AuthMode::Basic);
        let err = p.get("gon").unwrap_err().to_string();
        assert!(err.contains("known providers: gong"), "{err}");
    }

    #[test]
    fn a_bad_enum_names_line_and_field() {
        let err = Providers::parse(&GOOD.replace("BASIC", "BASICC"), "p.yaml").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("auth_mode") && err.contains("BASICC"), "{err}");
    }

    #[test]
    fn a_bad_template_names_line_and_field() {
        let err = Providers::parse(
            &GOOD.replace("${connectionConfig.api_base_url_for_customer}", "${connectionConfig.x"),
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("p.yaml, line 5: gong.proxy.base_url"), "{err}");
    }

    #[test]
    fn oauth2_needs_its_urls() {
        let err = Providers::parse(&GOOD.replace("BASIC", "OAUTH2"), "p.yaml").unwrap_err().to_string();
        assert!(err.contains("gong.authorization_url: required"), "{err}");
    }
}
