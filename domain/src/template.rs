//! Nango's URL templates: `${connectionConfig.name}` placeholders, and `||`
//! between alternatives (the first whose placeholders all have values wins),
//! e.g. `${connectionConfig.api_base_url_for_customer} || https://api.gong.io`.
//!
//! Every form Nango's own providers.yaml uses in a URL is read: dotted names
//! (`${connectionConfig.installation.apiEndPoint}`, a key of that name) and
//! a bare `${apiSubdomain}` (Nango reads it from the connection config too).
//!
//! `value` renders the other templates of an entry (proxy headers and query,
//! token request params), where credentials may appear.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `${{` at byte {0}; placeholders look like ${{connectionConfig.name}}")]
    Unclosed(usize),
    #[error("`${{{0}}}` is not supported; placeholders look like ${{connectionConfig.name}}")]
    UnknownPlaceholder(String),
    #[error("empty alternative around `||`")]
    EmptyAlternative,
    #[error("connection config {} is required (and has no fallback)", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Missing(Vec<String>),
    #[error("connection config `{name}` cannot be used inside a URL: it contains `{bad}`")]
    UnsafeValue { name: String, bad: char },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    alternatives: Vec<Vec<Part>>,
}

const NAMESPACE: &str = "connectionConfig.";

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut alternatives = Vec::new();
        let mut offset = 0;
        for alternative in text.split("||") {
            let trimmed = alternative.trim();
            if trimmed.is_empty() {
                return Err(TemplateError::EmptyAlternative);
            }
            let lead = alternative.len() - alternative.trim_start().len();
            alternatives.push(parse_parts(trimmed, offset + lead)?);
            offset += alternative.len() + 2;
        }
        Ok(Template { alternatives })
    }

    /// Names of every placeholder, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.alternatives.iter().flatten().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    pub fn render(&self, config: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        let value = |name: &str| config.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        for alternative in &self.alternatives {
            let complete = alternative.iter().all(|p| match p {
                Part::Var(name) => value(name).is_some(),
                Part::Text(_) => true,
            });
            if !complete {
                continue;
            }
            let whole = alternative.len() == 1;
            let mut out = String::new();
            for (index, part) in alternative.iter().enumerate() {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Var(name) => {
                        let v = value(name).unwrap_or_default();
                        // A value that is the whole alternative may be a full URL
                        // (Gong's `api_base_url_for_customer`); one spliced into a
                        // URL must not move it to another host or path. One that
                        // is the whole authority (`https://${hostname}/api`) may
                        // carry a port.
                        let authority = out.ends_with("://")
                            && alternative
                                .get(index + 1)
                                .is_none_or(|next| matches!(next, Part::Text(t) if t.starts_with('/')));
                        let allowed = |c: char| authority && c == ':' && is_host_and_port(v);
                        if !whole
                            && let Some(bad) =
                                v.chars().find(|c| ("/@?#:\\".contains(*c) && !allowed(*c)) || c.is_whitespace())
                        {
                            return Err(TemplateError::UnsafeValue { name: name.clone(), bad });
                        }
                        out.push_str(v);
                    }
                }
            }
            return Ok(out);
        }
        let missing = self.alternatives.first().into_iter().flatten().filter_map(|p| match p {
            Part::Var(n) if value(n).is_none() => Some(n.clone()),
            _ => None,
        });
        Err(TemplateError::Missing(missing.collect()))
    }
}

/// Renders one of an entry's value templates (a proxy header or query
/// value, a token request param): `${apiKey}`, `${accessToken}`,
/// `${credentials.name}`, `${connectionConfig.name}`, and
/// `${base64(…)}` around any of them and text. `lookup` gets the name as
/// written (`credentials.username`); a name it does not know is an error,
/// so nothing half-rendered is ever sent.
pub fn render_value(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    use base64::Engine as _;
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(inner) = after.strip_prefix("base64(") {
            // The argument runs to the `)}` that closes it; placeholders
            // inside have their own braces.
            let mut depth = 0usize;
            let mut close = None;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth > 0 => depth -= 1,
                    ')' if depth == 0 && inner[i + 1..].starts_with('}') => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let close = close.ok_or(TemplateError::Unclosed(text.len() - rest.len() + start))?;
            let argument = render_value(&inner[..close], lookup)?;
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(argument));
            rest = &inner[close + 2..];
            continue;
        }
        let end = after.find('}').ok_or(TemplateError::Unclosed(text.len() - rest.len() + start))?;
        let name = after[..end].trim();
        if name.contains('(') {
            return Err(TemplateError::UnknownPlaceholder(name.to_string()));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => return Err(TemplateError::Missing(vec![name.to_string()])),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `host:port`, nothing else (`127.0.0.1:8443`, `acme.example.com:443`).
fn is_host_and_port(value: &str) -> bool {
    value.split_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
    })
}

fn parse_parts(text: &str, base: usize) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(TemplateError::Unclosed(base + consumed + start))?;
        let inner = after[..end].trim();
        // A bare name is a connection config key in Nango's own file
        // (`https://cognito-${apiSubdomain}.amazonaws.com`).
        let name = inner
            .strip_prefix(NAMESPACE)
            .or_else(|| (!inner.contains('.') && !inner.contains('(')).then_some(inner))
            .filter(|n| {
                !n.is_empty()
                    && !n.starts_with('.')
                    && !n.ends_with('.')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            })
            .ok_or_else(|| TemplateError::UnknownPlaceholder(inner.to_string()))?;
        parts.push(Part::Var(name.to_string()));
        consumed += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alternative) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" || ")?;
            }
            for part in alternative {
                match part {
                    Part::Text(t) => f.write_str(t)?,
                    Part::Var(n) => write!(f, "${{{NAMESPACE}{n}}}")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const GONG: &str = "${connectionConfig.api_base_url_for_customer} || https://api.gong.io";

    #[test]
    fn first_complete_alternative_wins() {
        let t = Template::parse(GONG).unwrap();
        assert_eq!(t.render(&config(&[])).unwrap(), "https://api.gong.io");
        assert_eq!(t.render(&config(&[("api_base_url_for_customer", "  ")])).unwrap(), "https://api.gong.io");
        assert_eq!(
            t.render(&config(&[("api_base_url_for_customer", "https://us-44392.api.gong.io")])).unwrap(),
            "https://us-44392.api.gong.io"
        );
        assert_eq!(t.variables().collect::<Vec<_>>(), ["api_base_url_for_customer"]);
        assert_eq!(t.to_string(), GONG);
    }

    #[test]
    fn spliced_values_cannot_change_the_host() {
        let t = Template::parse("https://${connectionConfig.subdomain}.example.com").unwrap();
        assert_eq!(t.render(&config(&[("subdomain", "acme")])).unwrap(), "https://acme.example.com");
        for evil in ["evil.com/", "user@evil.com", "evil.com:1", "a b", "x?y", "x#y"] {
            assert!(
                matches!(t.render(&config(&[("subdomain", evil)])), Err(TemplateError::UnsafeValue { .. })),
                "{evil}"
            );
        }
        assert_eq!(t.render(&config(&[])), Err(TemplateError::Missing(vec!["subdomain".into()])));
        // A value that is the whole authority may carry a port, nothing more.
        let t = Template::parse("https://${connectionConfig.hostname}/oauth/token").unwrap();
        assert_eq!(t.render(&config(&[("hostname", "127.0.0.1:8443")])).unwrap(), "https://127.0.0.1:8443/oauth/token");
        for evil in ["evil.com:1/x", "user@evil.com:1", "evil.com:x", "evil.com:123456", ":1"] {
            assert!(
                matches!(t.render(&config(&[("hostname", evil)])), Err(TemplateError::UnsafeValue { .. })),
                "{evil}"
            );
        }
    }

    #[test]
    fn value_templates_render_credentials_and_base64() {
        let lookup = |name: &str| match name {
            "apiKey" => Some("k-1".to_string()),
            "credentials.username" => Some("user".into()),
            "credentials.password" => Some("pa:ss".into()),
            _ => None,
        };
        assert_eq!(render_value("Bearer ${apiKey}", &lookup).unwrap(), "Bearer k-1");
        assert_eq!(
            render_value("Basic ${base64(${credentials.username}:${credentials.password})}", &lookup).unwrap(),
            "Basic dXNlcjpwYTpzcw=="
        );
        assert_eq!(render_value("${nope}", &lookup), Err(TemplateError::Missing(vec!["nope".into()])));
        assert!(matches!(render_value("${sha256(${apiKey})}", &lookup), Err(TemplateError::UnknownPlaceholder(_))));
        assert!(matches!(render_value("${base64(${apiKey}", &lookup), Err(TemplateError::Unclosed(_))));
    }

    #[test]
    fn nangos_other_placeholder_forms_are_read() {
        let dotted = Template::parse("${connectionConfig.installation.apiEndPoint}").unwrap();
        assert_eq!(dotted.variables().collect::<Vec<_>>(), ["installation.apiEndPoint"]);
        assert_eq!(
            dotted.render(&config(&[("installation.apiEndPoint", "https://api.example.com")])).unwrap(),
            "https://api.example.com"
        );
        let bare = Template::parse("https://cognito-${apiSubdomain}.amazonaws.com").unwrap();
        assert_eq!(
            bare.render(&config(&[("apiSubdomain", "idp.eu-west-1")])).unwrap(),
            "https://cognito-idp.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert_eq!(Template::parse("https://${connectionConfig.x"), Err(TemplateError::Unclosed(8)));
        assert!(matches!(Template::parse("${credentials.secret}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert!(matches!(Template::parse("${base64(x)}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert!(matches!(Template::parse("${connectionConfig.a.}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert!(matches!(Template::parse("${connectionConfig.}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert_eq!(Template::parse("a || "), Err(TemplateError::EmptyAlternative));
        assert_eq!(Template::parse("a || ${connectionConfig.x").unwrap_err(), TemplateError::Unclosed(5));
    }
}
