//! Nango's URL templates: `${connectionConfig.name}` placeholders, and `||`
//! between alternatives (the first whose placeholders all have values wins),
//! e.g. `${connectionConfig.api_base_url_for_customer} || https://api.gong.io`.

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
            for part in alternative {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Var(name) => {
                        let v = value(name).unwrap_or_default();
                        // A value that is the whole alternative may be a full URL
                        // (Gong's `api_base_url_for_customer`); one spliced into a
                        // URL must not move it to another host or path.
                        if !whole && let Some(bad) = v.chars().find(|c| "/@?#:\\".contains(*c) || c.is_whitespace()) {
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
        let name = inner
            .strip_prefix(NAMESPACE)
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
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
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert_eq!(Template::parse("https://${connectionConfig.x"), Err(TemplateError::Unclosed(8)));
        assert!(matches!(Template::parse("${credentials.secret}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert!(matches!(Template::parse("${connectionConfig.}"), Err(TemplateError::UnknownPlaceholder(_))));
        assert_eq!(Template::parse("a || "), Err(TemplateError::EmptyAlternative));
        assert_eq!(Template::parse("a || ${connectionConfig.x").unwrap_err(), TemplateError::Unclosed(5));
    }
}
