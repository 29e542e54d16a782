//! Payloads a provider pushes (Gong: an Automation Rule's `{callData,
//! isTest}`), checked, mapped to records by the component, and upserted.
//!
//! A signed delivery is accepted once, and only while it is fresh: its
//! token must carry `iat` no older than `max_age`, and the token itself is
//! remembered (as its SHA-256) for that long, so a captured delivery
//! replayed later is refused or ignored. The store never lets an older
//! version of a record (by the provider's own time) replace a newer one.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest as _;

use crate::events::hex;
use crate::{Platform, PlatformError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A test delivery: acknowledged, nothing stored.
    Test,
    Stored {
        model: String,
        records: usize,
    },
    /// This signed delivery was accepted before (a retry or a replay):
    /// acknowledged, nothing stored again.
    Duplicate,
}

/// How long a signed delivery stays acceptable after Gong signed it, by
/// default: long enough for a slow network, short enough that a captured
/// delivery cannot be replayed later.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Clocks of Gong and this host may differ by this much.
const CLOCK_SKEW_SECS: u64 = 60;

/// What a signed delivery is checked against.
pub struct WebhookVerifier {
    pub key: DecodingKey,
    /// The public URL this receiver is reached at. When set, a token's
    /// `webhook_url` claim must name it, so a delivery signed for another
    /// receiver is refused here.
    pub public_url: Option<String>,
    pub max_age: Duration,
}

/// A delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDelivery {
    /// SHA-256 of the token: the delivery's identity (Gong sends no id).
    pub id: String,
    /// Until when a replay of it must be recognised (Unix ms).
    pub remember_until_ms: u64,
}

/// The claims relied on. Gong signs with RS256; `body_sha256` binds the
/// token to this body, `webhook_url` to the receiver, `iat` to a time.
#[derive(Deserialize)]
struct Claims {
    body_sha256: Option<String>,
    iat: Option<u64>,
    webhook_url: Option<String>,
}

impl WebhookVerifier {
    /// Checks the signed token in an `Authorization` header value against
    /// the body, the receiver's URL and the clock (`now`, Unix seconds); the
    /// error says why it was refused.
    pub fn verify(&self, authorization: Option<&str>, body: &[u8], now: u64) -> Result<VerifiedDelivery, String> {
        let header = authorization.ok_or("no Authorization header with a signed token")?;
        let token = header
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map_or(header, |_| &header[7..])
            .trim();
        let mut validation = Validation::new(Algorithm::RS256);
        // `exp` is checked when present; `iat` is required below.
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.leeway = CLOCK_SKEW_SECS;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &validation)
            .map_err(|e| format!("bad signature or token: {e}"))?
            .claims;
        let expected: String = hex(&sha2::Sha256::digest(body));
        match &claims.body_sha256 {
            Some(hash) if hash.eq_ignore_ascii_case(&expected) => {}
            Some(_) => return Err("the token was signed for another body".into()),
            None => return Err("the token carries no body_sha256 claim".into()),
        }
        let issued = claims.iat.ok_or("the token carries no iat claim, so its age (and a replay) cannot be told")?;
        if issued > now + CLOCK_SKEW_SECS {
            return Err(format!("the token was issued {} s in the future; check this host's clock", issued - now));
        }
        let age = now.saturating_sub(issued);
        if age > self.max_age.as_secs() {
            return Err(format!(
                "the delivery was signed {age} s ago; deliveries older than {} s are refused as possible replays",
                self.max_age.as_secs()
            ));
        }
        if let Some(url) = &self.public_url {
            let trimmed = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
            match &claims.webhook_url {
                Some(claimed) if trimmed(claimed) == trimmed(url) => {}
                Some(_) => return Err("the token was signed for another receiver's URL".into()),
                None => return Err("the token carries no webhook_url claim to check against this receiver".into()),
            }
        }
        let remember_until = issued + self.max_age.as_secs() + CLOCK_SKEW_SECS;
        Ok(VerifiedDelivery {
            id: hex(&sha2::Sha256::digest(token.as_bytes())),
            remember_until_ms: remember_until * 1000,
        })
    }
}

impl Platform {
    /// Maps a pushed payload to records of `connection_id` and stores them.
    /// A signed delivery (`delivery`) is stored once: a second arrival of
    /// the same token is `Duplicate`. A payload the component cannot read
    /// is `ProviderFailure::InvalidInput`.
    pub async fn ingest_webhook(
        &self,
        connection_id: &str,
        payload: &[u8],
        delivery: Option<&VerifiedDelivery>,
    ) -> Result<WebhookOutcome, PlatformError> {
        let session = self.session(connection_id).await?;
        let mapped = session.handle_webhook(payload).await?;
        if mapped.is_test {
            return Ok(WebhookOutcome::Test);
        }
        if let Some(delivery) = delivery {
            let scope = format!("webhook:{connection_id}");
            if !self.store.claim_once(&scope, &delivery.id, delivery.remember_until_ms).await? {
                tracing::warn!("webhook for `{connection_id}`: a delivery seen before arrived again; ignored");
                return Ok(WebhookOutcome::Duplicate);
            }
        }
        self.store.upsert_records(connection_id, &mapped.model, &mapped.records).await?;
        Ok(WebhookOutcome::Stored { model: mapped.model, records: mapped.records.len() })
    }
}
