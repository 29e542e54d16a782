//! What every store must do alike, run on SQLite and on PostgreSQL: the
//! same function over each, so a behaviour one store has and the other
//! lacks fails here.

use std::time::Duration;

use terapi_e2e::fake_gong::FakeGongConfig;
use terapi_e2e::terapi_host::SyncRecord;
use terapi_e2e::terapi_platform::Platform;
use terapi_e2e::terapi_store::{RecordQuery, Store};
use terapi_e2e::*;

fn record(id: &str, modified_at: &str, title: &str) -> SyncRecord {
    SyncRecord {
        id: id.into(),
        modified_at: Some(modified_at.into()),
        json: serde_json::json!({ "id": id, "title": title }).to_string(),
    }
}

async fn stored_json(store: &dyn Store, connection: &str, model: &str) -> Vec<serde_json::Value> {
    let query = all_records_query(connection, model);
    store.records(&query).await.unwrap().records.iter().map(|r| serde_json::from_str(&r.json).unwrap()).collect()
}

async fn an_older_version_never_replaces_a_newer_one(platform: &Platform, connection: &str) {
    let store = platform.store().as_ref();
    store.upsert_records(connection, "Thing", &[record("a", "2026-12-01T10:00:00Z", "newer")]).await.unwrap();
    let before = store.records(&query_of(connection)).await.unwrap().records[0].cursor.clone();
    // An older version (another offset, same order): nothing changes.
    store.upsert_records(connection, "Thing", &[record("a", "2026-12-01T11:59:00+02:00", "older")]).await.unwrap();
    assert_eq!(stored_json(store, connection, "Thing").await[0]["title"], "newer");
    let after = store.records(&query_of(connection)).await.unwrap().records[0].cursor.clone();
    assert_eq!(before, after, "a stale version is not a change");
    // A newer one replaces it; one without a time replaces it too.
    store.upsert_records(connection, "Thing", &[record("a", "2026-12-01T10:00:01Z", "newest")]).await.unwrap();
    assert_eq!(stored_json(store, connection, "Thing").await[0]["title"], "newest");
    let untimed = SyncRecord { modified_at: None, ..record("a", "", "untimed") };
    store.upsert_records(connection, "Thing", &[untimed]).await.unwrap();
    assert_eq!(stored_json(store, connection, "Thing").await[0]["title"], "untimed");
}

fn query_of(connection: &str) -> RecordQuery {
    all_records_query(connection, "Thing")
}

async fn an_id_is_claimed_once_while_it_is_kept(store: &dyn Store) {
    let later = terapi_e2e::terapi_host::limits::unix_ms() + 60_000;
    assert!(store.claim_once("webhook:acme", "d1", later).await.unwrap());
    assert!(!store.claim_once("webhook:acme", "d1", later).await.unwrap(), "a replay");
    assert!(store.claim_once("webhook:globex", "d1", later).await.unwrap(), "scopes are apart");
    // Once expired, an id is forgotten (pruned by the next claim).
    let past = terapi_e2e::terapi_host::limits::unix_ms() - 1;
    assert!(store.claim_once("webhook:acme", "d2", past).await.unwrap());
    assert!(store.claim_once("webhook:acme", "d3", later).await.unwrap());
    assert!(store.claim_once("webhook:acme", "d2", later).await.unwrap(), "expired, so new again");
}

async fn a_lock_has_one_holder_until_released_or_lapsed(store: &dyn Store) {
    let ttl = Duration::from_secs(30);
    assert!(store.try_lock("refresh:acme", "p1", ttl).await.unwrap());
    assert!(!store.try_lock("refresh:acme", "p2", ttl).await.unwrap());
    assert!(store.try_lock("refresh:acme", "p1", ttl).await.unwrap(), "its holder may take it again");
    store.unlock("refresh:acme", "p2").await.unwrap();
    assert!(!store.try_lock("refresh:acme", "p2", ttl).await.unwrap(), "only the holder releases");
    store.unlock("refresh:acme", "p1").await.unwrap();
    assert!(store.try_lock("refresh:acme", "p2", Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.try_lock("refresh:acme", "p3", ttl).await.unwrap(), "a lapsed lock is free");
}

async fn contract(platform: Platform) {
    let gong = start_gong(FakeGongConfig::default()).await;
    let connection = connection(&gong);
    platform.create_connection(&connection).await.unwrap();
    an_older_version_never_replaces_a_newer_one(&platform, &connection.id).await;
    an_id_is_claimed_once_while_it_is_kept(platform.store().as_ref()).await;
    a_lock_has_one_holder_until_released_or_lapsed(platform.store().as_ref()).await;
}

#[test]
fn the_sqlite_store_keeps_the_contract() {
    block_on(contract(platform_in(&fresh_dir("contract-sqlite"))));
}

#[test]
fn the_postgres_store_keeps_the_contract() {
    block_on(async { contract(fresh_postgres_platform("contract").await).await });
}
