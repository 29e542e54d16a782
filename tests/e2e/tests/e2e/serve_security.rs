//! `terapi serve`'s operator and app credentials against someone holding a
//! copy of the database, another site's forms, and revoked keys.

use hmac::{Hmac, Mac as _};
use terapi_domain::digest::hex;
use terapi_e2e::*;

use crate::serve::Served;

/// A session cookie as someone would make it from `secret` (HMAC key) and
/// the message layout of the given scheme.
fn mint(secret: &[u8], message: &str, id: &str, expires: u64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!("terapi_operator={id}.{expires}.{}", hex(&mac.finalize().into_bytes()))
}

async fn dashboard_with(served: &Served, cookie: &str) -> u16 {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    client.get(format!("{}/dashboard", served.base)).header("cookie", cookie).send().await.unwrap().status().as_u16()
}

#[test]
fn a_dashboard_session_cannot_be_minted_from_a_copy_of_the_database() {
    block_on(async {
        let served = Served::start("serve-session-mint").await;
        let sha256 = terapi_e2e::terapi_serve::auth::sha256_hex(&served.key);
        let id = terapi_e2e::terapi_store::api_key_id(&sha256);
        let now = terapi_e2e::terapi_store::unix_now();
        let decade = now + 10 * 365 * 86_400;

        // What the database holds (the key's SHA-256) was the signing key.
        let old = mint(sha256.as_bytes(), &format!("terapi-dashboard-session\n{id}\n{decade}"), &id, decade);
        assert_eq!(dashboard_with(&served, &old).await, 303, "a session minted from the database copy");

        // Only the master key's holder can sign; even so, no longer than 12 h.
        let secret = served.platform.store().derived_secret("terapi-dashboard-session");
        let message = |expires: u64| format!("terapi-dashboard-session\n{id}\n{expires}\n{sha256}");
        let hour = now + 3_600;
        assert_eq!(dashboard_with(&served, &mint(&secret, &message(hour), &id, hour)).await, 200);
        assert_eq!(dashboard_with(&served, &mint(&secret, &message(decade), &id, decade)).await, 303, "10 years");

        // The sign-in form answers only its own origin.
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let post = |origin: &'static str| {
            client
                .post(format!("{}/dashboard/login", served.base))
                .header("origin", origin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("secret_key={}", served.key))
                .send()
        };
        let refused = post("https://evil.example").await.unwrap();
        assert_eq!(refused.status(), 403);
        assert!(refused.headers().get("set-cookie").is_none());
        let own = served.base.clone();
        let accepted = client
            .post(format!("{}/dashboard/login", served.base))
            .header("origin", own)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("secret_key={}", served.key))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 303);
        assert!(accepted.headers().get("set-cookie").is_some());
    });
}

/// A revoked secret key stops working on every server within
/// `CHECK_TTL` (the bound README states), its dashboard sessions at once;
/// the `Bearer` scheme is read in any case.
#[test]
fn a_revoked_key_stops_within_the_stated_bound_and_its_sessions_at_once() {
    block_on(async {
        let served = Served::start("serve-key-revocation").await;
        let get = |scheme: &'static str| {
            served
                .http
                .get(format!("{}/connections", served.base))
                .header("authorization", format!("{scheme} {}", served.key))
                .send()
        };
        assert_eq!(get("bearer").await.unwrap().status(), 200, "RFC 7235: schemes are case-insensitive");
        assert_eq!(get("BEARER").await.unwrap().status(), 200);

        let sha256 = terapi_e2e::terapi_serve::auth::sha256_hex(&served.key);
        let id = terapi_e2e::terapi_store::api_key_id(&sha256);
        let secret = served.platform.store().derived_secret("terapi-dashboard-session");
        let hour = terapi_e2e::terapi_store::unix_now() + 3_600;
        let session = mint(&secret, &format!("terapi-dashboard-session\n{id}\n{hour}\n{sha256}"), &id, hour);
        assert_eq!(dashboard_with(&served, &session).await, 200);

        assert!(served.platform.store().revoke_api_key(&id).await.unwrap());
        let revoked = std::time::Instant::now();
        assert_eq!(dashboard_with(&served, &session).await, 303, "the session ended with its key");
        let bound = terapi_e2e::terapi_serve::auth::CHECK_TTL + std::time::Duration::from_millis(500);
        tokio::time::sleep(bound.saturating_sub(revoked.elapsed())).await;
        assert_eq!(get("Bearer").await.unwrap().status(), 401, "still accepted {bound:?} after revocation");
    });
}
