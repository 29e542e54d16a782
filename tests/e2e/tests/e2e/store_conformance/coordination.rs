//! `CoordinationStore`: once-only claims per scope while kept, and named
//! locks with one holder until released or lapsed.

use std::time::Duration;

use terapi_e2e::terapi_store::Store;

use super::now_ms;

pub(super) async fn check(store: &dyn Store) {
    let later = now_ms() + 60_000;
    assert!(store.claim_once("webhook:acme", "d1", later).await.unwrap());
    assert!(!store.claim_once("webhook:acme", "d1", later).await.unwrap(), "a replay");
    assert!(store.claim_once("webhook:globex", "d1", later).await.unwrap(), "scopes are apart");
    // Once expired, an id is forgotten (pruned by the next claim).
    let past = now_ms() - 1;
    assert!(store.claim_once("webhook:acme", "d2", past).await.unwrap());
    assert!(store.claim_once("webhook:acme", "d3", later).await.unwrap());
    assert!(store.claim_once("webhook:acme", "d2", later).await.unwrap(), "expired, so new again");

    let ttl = Duration::from_secs(30);
    assert!(store.try_lock("refresh:acme", "p1", ttl).await.unwrap());
    assert!(!store.try_lock("refresh:acme", "p2", ttl).await.unwrap());
    assert!(store.try_lock("refresh:acme", "p1", ttl).await.unwrap(), "its holder may take it again");
    assert!(store.try_lock("worker:a", "a", ttl).await.unwrap());
    assert!(store.try_lock("worker:b", "b", ttl).await.unwrap());
    assert!(store.try_lock("worker_c", "c", ttl).await.unwrap());
    assert_eq!(store.live_locks("worker:").await.unwrap(), 2, "a prefix, not a pattern: `_` matches only itself");
    store.unlock("refresh:acme", "p2").await.unwrap();
    assert!(!store.try_lock("refresh:acme", "p2", ttl).await.unwrap(), "only the holder releases");
    store.unlock("refresh:acme", "p1").await.unwrap();
    assert!(store.try_lock("refresh:acme", "p2", Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.try_lock("refresh:acme", "p3", ttl).await.unwrap(), "a lapsed lock is free");
    store.unlock("worker:a", "a").await.unwrap();
    assert_eq!(store.live_locks("worker:").await.unwrap(), 1);
}
