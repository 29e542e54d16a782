//! `ConnectionStore`: credentials sealed and read back whole, rotated and
//! refreshed in place, who it is for and its metadata, and a deletion that
//! takes the connection's state with it.

use std::collections::BTreeMap;

use terapi_e2e::terapi_host::{Credentials, Secret, SyncRecord};
use terapi_e2e::terapi_store::{Store, StoreError};
use terapi_e2e::*;

use super::saved;

fn secret_of(credentials: &Credentials) -> String {
    match credentials {
        Credentials::Basic { username, password } => format!("{username}:{}", password.expose()),
        Credentials::OAuth2 { access_token, refresh_token, expires_at } => {
            format!(
                "{}|{:?}|{expires_at:?}",
                access_token.expose(),
                refresh_token.as_ref().map(|t| t.expose().to_string())
            )
        }
        other => panic!("{other:?}"),
    }
}

pub(super) async fn check(store: &dyn Store) {
    assert_eq!(store.derived_secret("dashboard"), store.derived_secret("dashboard"));
    assert_ne!(store.derived_secret("dashboard"), store.derived_secret("other"));

    let acme = saved(store, "acme").await;
    let read = store.connection("acme").await.unwrap();
    assert_eq!((read.provider.as_str(), &read.config), ("gong", &acme.config));
    assert_eq!(secret_of(&read.credentials), "key-acme:secret-acme");
    match store.create_connection(&acme, None).await {
        Err(StoreError::ConnectionExists(id)) => assert_eq!(id, "acme"),
        other => panic!("a second connection of one name: {other:?}"),
    }
    assert!(matches!(store.connection("nobody").await, Err(StoreError::NoConnection(_))));

    let summary = store.connection_summary("acme").await.unwrap();
    assert_eq!((summary.auth_mode.as_str(), summary.username.as_deref()), ("BASIC", Some("key-acme")));
    assert!(summary.created_at > 1_700_000_000);
    assert_eq!(summary.verified_at, Some(summary.created_at), "saved once verified");
    store.mark_verified("acme").await.unwrap();
    assert!(store.connection_summary("acme").await.unwrap().verified_at >= Some(summary.created_at));

    // A rotated credential replaces the old one; the config stays.
    let rotated = Credentials::Basic { username: "key-2".into(), password: Secret::new("secret-2") };
    store.rotate_credentials("acme", &rotated, None).await.unwrap();
    let read = store.connection("acme").await.unwrap();
    assert_eq!((secret_of(&read.credentials), read.config), ("key-2:secret-2".to_string(), acme.config.clone()));
    assert!(store.rotate_credentials("nobody", &rotated, None).await.is_err());

    // Refreshed tokens are saved in place, and config merged into the old.
    let tokens = Credentials::OAuth2 {
        access_token: Secret::new("at-1"),
        refresh_token: Some(Secret::new("rt-1")),
        expires_at: Some(2_000_000_000),
    };
    let merged = BTreeMap::from([("region".to_string(), "eu".to_string())]);
    store.save_tokens("acme", &tokens, &merged).await.unwrap();
    let read = store.connection("acme").await.unwrap();
    assert_eq!(secret_of(&read.credentials), "at-1|Some(\"rt-1\")|Some(2000000000)");
    assert_eq!(read.config.get("region").map(String::as_str), Some("eu"));
    assert_eq!(read.config.get("api_base_url_for_customer"), acme.config.get("api_base_url_for_customer"));
    assert_eq!(store.connection_summary("acme").await.unwrap().auth_mode, "OAUTH2");

    // Who it is for, its tags and metadata.
    store.set_end_user("acme", Some(r#"{"id":"u-1","email":"a@example.com"}"#), r#"{"team":"sales"}"#).await.unwrap();
    store.set_metadata("acme", Some(r#"{"plan":"pro"}"#)).await.unwrap();
    let summary = store.connection_summary("acme").await.unwrap();
    assert_eq!(summary.end_user.unwrap()["email"], "a@example.com");
    assert_eq!(summary.tags.get("team").map(String::as_str), Some("sales"));
    assert_eq!(summary.metadata.unwrap()["plan"], "pro");
    store.set_metadata("acme", None).await.unwrap();
    assert_eq!(store.connection_summary("acme").await.unwrap().metadata, None);

    saved(store, "globex").await;
    let ids: Vec<_> = store.connections().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["acme", "globex"]);

    // A deletion takes the records and sync state along; others stay.
    let record = SyncRecord { id: "1".into(), modified_at: None, json: "{}".into() };
    store.upsert_records("acme", "Thing", std::slice::from_ref(&record)).await.unwrap();
    store.upsert_records("globex", "Thing", &[record]).await.unwrap();
    store.schedule_sync("acme", "users", "Thing", 0, false).await.unwrap();
    store.delete_connection("acme").await.unwrap();
    assert!(matches!(store.delete_connection("acme").await, Err(StoreError::NoConnection(_))));
    assert!(matches!(store.connection_summary("acme").await, Err(StoreError::NoConnection(_))));
    assert!(store.records(&all_records_query("acme", "Thing")).await.unwrap().records.is_empty());
    assert!(store.sync_states("acme").await.unwrap().is_empty());
    assert_eq!(store.records(&all_records_query("globex", "Thing")).await.unwrap().records.len(), 1);
    assert_eq!(store.connections().await.unwrap().len(), 1);
}
