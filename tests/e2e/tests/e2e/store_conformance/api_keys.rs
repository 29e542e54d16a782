//! `ApiKeyStore`: keys by SHA-256, listed by public id, revoked by id.

use terapi_e2e::terapi_store::Store;

pub(super) async fn check(store: &dyn Store) {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let first = store.create_api_key(&a, "ops").await.unwrap();
    assert_eq!((first.id.as_str(), first.label.as_str()), ("aaaaaaaaaaaa", "ops"), "the public id is 12 hex digits");
    store.create_api_key(&b, "app").await.unwrap();
    assert!(store.create_api_key(&a, "again").await.is_err(), "a key is stored once");

    assert!(store.api_key_exists(&a).await.unwrap());
    assert!(!store.api_key_exists(&"c".repeat(64)).await.unwrap());
    let listed: Vec<_> = store.api_keys().await.unwrap().into_iter().map(|k| (k.id, k.label)).collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&("bbbbbbbbbbbb".into(), "app".into())), "{listed:?}");
    assert_eq!(store.api_key_sha256("aaaaaaaaaaaa").await.unwrap(), Some(a.clone()));
    assert_eq!(store.api_key_sha256("nope").await.unwrap(), None);

    assert!(store.revoke_api_key("aaaaaaaaaaaa").await.unwrap());
    assert!(!store.revoke_api_key("aaaaaaaaaaaa").await.unwrap(), "revoking twice finds nothing");
    assert!(!store.api_key_exists(&a).await.unwrap(), "a revoked key no longer opens anything");
    assert_eq!(store.api_keys().await.unwrap().len(), 1);
}
