//! Secret API keys: made once, shown once, stored as their SHA-256 only.
//! Every API route but the Connect page (which its session token opens)
//! takes `Authorization: Bearer <secret key>`, as Nango's API does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::state::ServeState;

const KEY_PREFIX: &str = "terapi_sk_";

/// A positive check is trusted this long, so listing records does not pay
/// a store round trip per request: a revoked key stops working on every
/// server within it (documented, and held by a test). The dashboard checks
/// the store on every page, so a revoked key's session ends at once.
pub const CHECK_TTL: Duration = Duration::from_secs(5);

/// The token of an `Authorization: Bearer …` value; the scheme's case does
/// not matter (RFC 7235).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A new secret key (256 random bits), to show the operator once.
pub fn new_secret_key() -> Result<String, getrandom::Error> {
    Ok(format!("{KEY_PREFIX}{}", random_hex(32)?))
}

pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)?;
    Ok(hex(&buf))
}

pub use terapi_domain::digest::{hex, sha256_hex};

#[derive(Default)]
pub struct KeyCache {
    checked: Mutex<HashMap<String, Instant>>,
}

impl KeyCache {
    fn fresh(&self, hash: &str) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked.get(hash).is_some_and(|at| at.elapsed() < CHECK_TTL)
    }

    fn remember(&self, hash: String) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.len() > 10_000 {
            checked.retain(|_, at| at.elapsed() < CHECK_TTL);
        }
        checked.insert(hash, Instant::now());
    }
}

pub async fn require_secret_key(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    let Some(header) = request.headers().get(axum::http::header::AUTHORIZATION) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_auth_header",
            "no Authorization header; send `Authorization: Bearer <secret key>` (`terapi key create` makes one)",
        )
        .into_response();
    };
    let Some(key) = header.to_str().ok().and_then(bearer_token) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "malformed_auth_header",
            "the Authorization header must be `Bearer <secret key>`",
        )
        .into_response();
    };
    let hash = sha256_hex(key);
    if !state.keys.fresh(&hash) {
        match state.platform.store().api_key_exists(&hash).await {
            Ok(true) => state.keys.remember(hash),
            // Never echo the key: it may be a real one sent to the wrong place.
            Ok(false) => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown_account",
                    "the secret key is not valid (revoked, or never made here); `terapi key list` shows the keys",
                )
                .into_response();
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
