//! `ConnectSessionStore`: a session read back whole; one claim per link,
//! given back only by its claimant; an expired link cannot be claimed.

use terapi_e2e::terapi_store::{ConnectSession, Store};

use super::now_ms;

pub(super) async fn check(store: &dyn Store) {
    let session = ConnectSession {
        token_sha256: "1".repeat(64),
        owner: r#"{"end_user":{"id":"u-1"},"tags":{"team":"sales"}}"#.into(),
        allowed_integrations: vec!["gong".into(), "gong-oauth".into()],
        expires_at_ms: now_ms() + 600_000,
        connection_id: None,
        allowed_origin: Some("https://app.example".into()),
        reconnect_connection_id: Some("acme".into()),
    };
    store.create_connect_session(&session).await.unwrap();
    assert_eq!(store.connect_session(&session.token_sha256).await.unwrap(), Some(session.clone()));
    assert_eq!(store.connect_session(&"2".repeat(64)).await.unwrap(), None);

    let token = session.token_sha256.as_str();
    assert!(store.claim_connect_session(token, "c-1", now_ms()).await.unwrap());
    assert!(!store.claim_connect_session(token, "c-2", now_ms()).await.unwrap(), "one connection per link");
    assert_eq!(store.connect_session(token).await.unwrap().unwrap().connection_id.as_deref(), Some("c-1"));
    store.release_connect_session(token, "c-2").await.unwrap();
    assert!(!store.claim_connect_session(token, "c-2", now_ms()).await.unwrap(), "only the claimant gives it back");
    store.release_connect_session(token, "c-1").await.unwrap();
    assert!(store.claim_connect_session(token, "c-2", now_ms()).await.unwrap(), "given back, it can be claimed again");

    let expired = ConnectSession { token_sha256: "3".repeat(64), expires_at_ms: now_ms() - 1, ..session };
    store.create_connect_session(&expired).await.unwrap();
    assert!(!store.claim_connect_session(&expired.token_sha256, "c-3", now_ms()).await.unwrap(), "expired");
    assert!(store.connect_session(&expired.token_sha256).await.unwrap().is_some(), "kept for the caller to tell why");
}
