//! A string that never shows itself in `Debug`, `Display` or logs.

use std::fmt;
use std::sync::{Arc, RwLock};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The only way to the value: greppable, so every use can be audited.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// The secrets of one connection, to scrub from text that might echo them
/// (guest messages, remote error bodies). Shared by a session and its token
/// refresher, so a token minted mid-session is scrubbed too.
#[derive(Clone, Default)]
pub struct Redactor(Arc<RwLock<Vec<Secret>>>);

impl Redactor {
    /// Shorter values would match ordinary text and redact nothing secret.
    const MIN_LEN: usize = 4;

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let redactor = Redactor::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    pub fn add(&self, secret: &Secret) {
        if secret.expose().len() < Self::MIN_LEN {
            return;
        }
        // A panic elsewhere while holding the lock leaves the list intact.
        let mut secrets = self.0.write().unwrap_or_else(|e| e.into_inner());
        if !secrets.contains(secret) {
            secrets.push(secret.clone());
        }
    }

    /// `text` with every known secret replaced by `<redacted>`, and the
    /// value of anything shaped like an `Authorization` header (`Basic …`,
    /// `Bearer …`) too, whoever's credential it is.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for secret in secrets.iter() {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "<redacted>");
            }
        }
        scrub_authorization_values(&out)
    }
}

/// Replaces the credential after `Basic ` / `Bearer ` (any case) with
/// `<redacted>`.
pub fn scrub_authorization_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some((at, scheme_len)) = ["basic ", "bearer "]
        .iter()
        .filter_map(|scheme| lower[search..].find(scheme).map(|i| (search + i, scheme.len())))
        .min()
    {
        let start = at + scheme_len;
        let token_len =
            text[start..].bytes().take_while(|b| b.is_ascii_alphanumeric() || b"+/=-._~".contains(b)).count();
        // A word such as "basic auth" is not a credential: tokens are longer.
        if token_len >= 8 && !text[start..start + token_len].bytes().all(|b| b.is_ascii_lowercase()) {
            out.push_str(&text[copied..start]);
            out.push_str("<redacted>");
            copied = start + token_len;
        }
        // Past the scheme at least, so the loop always moves on.
        search = start + token_len;
    }
    out.push_str(&text[copied..]);
    out
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.read().map(|s| s.len()).unwrap_or(0);
        write!(f, "Redactor({count} secrets)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redactor_scrubs_secrets_added_later_and_ignores_tiny_ones() {
        let redactor = Redactor::new([&Secret::new("first-secret"), &Secret::new("ab")]);
        let clone = redactor.clone();
        clone.add(&Secret::new("minted-later"));
        assert_eq!(redactor.scrub("first-secret then minted-later; ab stays"), "<redacted> then <redacted>; ab stays");
    }

    #[test]
    fn authorization_values_are_scrubbed_whoever_they_belong_to() {
        let text = "echo: Authorization: Basic a2V5OnMzY3JldA== and bearer eyJhbGciOi.x-y_z; basic auth is fine";
        assert_eq!(
            scrub_authorization_values(text),
            "echo: Authorization: Basic <redacted> and bearer <redacted>; basic auth is fine"
        );
        assert_eq!(scrub_authorization_values("Bearer"), "Bearer");
        assert_eq!(scrub_authorization_values("ünïcode bearer ünï"), "ünïcode bearer ünï");
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s} {s:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
