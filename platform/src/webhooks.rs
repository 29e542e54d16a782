//! Payloads a provider pushes (Gong: an Automation Rule's `{callData,
//! isTest}`), checked, mapped to records by the component, and upserted (a
//! delivery that arrives twice is stored once).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest as _;

use crate::{Platform, PlatformError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A test delivery: acknowledged, nothing stored.
    Test,
    Stored {
        model: String,
        records: usize,
    },
}

/// The claims relied on. Gong signs with RS256; `body_sha256` binds the
/// token to this body, so a captured token cannot carry another payload.
#[derive(Deserialize)]
struct Claims {
    body_sha256: Option<String>,
}

/// Checks the signed token in an `Authorization` header value against the
/// body; the error says why it was refused.
pub fn verify_signature(authorization: Option<&str>, body: &[u8], key: &DecodingKey) -> Result<(), String> {
    let header = authorization.ok_or("no Authorization header with a signed token")?;
    let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
    let mut validation = Validation::new(Algorithm::RS256);
    // Gong's tokens may carry no `exp`; when they do, it is checked.
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| format!("bad signature or token: {e}"))?;
    let expected: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    match claims.claims.body_sha256 {
        Some(hash) if hash.eq_ignore_ascii_case(&expected) => Ok(()),
        Some(_) => Err("the token was signed for another body".into()),
        None => Err("the token carries no body_sha256 claim".into()),
    }
}

impl Platform {
    /// Maps a pushed payload to records of `connection_id` and stores them.
    /// A payload the component cannot read is `ProviderFailure::InvalidInput`.
    pub async fn ingest_webhook(&self, connection_id: &str, payload: &[u8]) -> Result<WebhookOutcome, PlatformError> {
        let session = self.session(connection_id).await?;
        let mapped = session.handle_webhook(payload).await?;
        if mapped.is_test {
            return Ok(WebhookOutcome::Test);
        }
        self.store.upsert_records(connection_id, &mapped.model, &mapped.records).await?;
        Ok(WebhookOutcome::Stored { model: mapped.model, records: mapped.records.len() })
    }
}
