//! Stores written by an earlier terapi (before SQLite schema 10 and
//! PostgreSQL schema 8: `tests/fixtures/upgrade`) open with this build,
//! upgrade in place, and keep every connection, secret, record, sync state
//! and key; what the new schema adds works on them.

use std::time::Duration;

use terapi_e2e::terapi_host::{Credentials, SyncRecord};
use terapi_e2e::terapi_store::{MasterKey, RecordQuery, Store};
use terapi_e2e::*;

const FIXTURE_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/upgrade").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all(model: &str) -> RecordQuery {
    all_records_query("acme", model)
}

async fn nothing_was_lost(store: &dyn Store, api_key: &str) {
    let connection = store.connection("acme").await.expect("the connection opens with its sealed secret");
    let Credentials::Basic { username, password } = &connection.credentials else { panic!("{connection:?}") };
    assert_eq!((username.as_str(), password.expose()), ("demo-access-key", "demo-access-key-secret"));
    let users = store.records(&all("GongUser")).await.unwrap().records;
    let calls = store.records(&all("GongCallExtensive")).await.unwrap().records;
    assert_eq!((users.len(), calls.len()), (20, 5));
    let states = store.sync_states("acme").await.unwrap();
    assert_eq!(states.iter().filter(|s| s.status == "done").count(), 2, "{states:?}");
    assert!(store.api_key_exists(&terapi_e2e::terapi_serve::auth::sha256_hex(api_key)).await.unwrap());

    // What the new schema adds works on the old rows: a newer version of a
    // stored call replaces it, an older one then does not.
    let call = &calls[0];
    let mut json: serde_json::Value = serde_json::from_str(&call.json).unwrap();
    json["metaData"]["title"] = "newer".into();
    let newer =
        SyncRecord { id: call.id.clone(), modified_at: Some("2030-01-02T00:00:00Z".into()), json: json.to_string() };
    json["metaData"]["title"] = "older".into();
    let older =
        SyncRecord { modified_at: Some("2030-01-01T00:00:00Z".into()), json: json.to_string(), ..newer.clone() };
    store.upsert_records("acme", "GongCallExtensive", &[newer]).await.unwrap();
    store.upsert_records("acme", "GongCallExtensive", &[older]).await.unwrap();
    let stored = store.records(&all("GongCallExtensive")).await.unwrap().records;
    let stored = stored.iter().find(|r| r.id == call.id).unwrap();
    assert!(stored.json.contains("newer"), "{}", stored.json);
    assert!(store.claim_once("webhook:acme", "d", u64::MAX / 2).await.unwrap());
    assert!(store.try_lock("oauth-refresh:acme", "me", Duration::from_secs(5)).await.unwrap());
}

#[test]
fn a_sqlite_store_of_schema_9_upgrades_in_place_with_nothing_lost() {
    block_on(async {
        let dir = fresh_dir("upgrade-sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        let db = rusqlite::Connection::open(dir.join(terapi_e2e::terapi_store::DATABASE_FILE)).unwrap();
        db.execute_batch(&fixture("sqlite-schema-9.sql")).unwrap();
        drop(db);
        let key = MasterKey::from_base64(FIXTURE_KEY).unwrap();
        let store = terapi_e2e::terapi_store::SqliteStore::open(&dir, key).expect("the old store opens");
        nothing_was_lost(&store, "terapi_sk_25c54bea8dc9f8beaada02ac65274345e75d20ae78789dda8eddbb6395fcd479").await;
    });
}

#[test]
fn a_postgres_store_of_schema_7_upgrades_in_place_with_nothing_lost() {
    block_on(async {
        let url = fresh_database("upgrade").await;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&fixture("postgres-schema-7.sql")).await.unwrap();
        drop(client);
        let key = MasterKey::from_base64(FIXTURE_KEY).unwrap();
        let store =
            terapi_e2e::terapi_store_postgres::PostgresStore::open(&url, key, 2).await.expect("the old store opens");
        nothing_was_lost(&store, "terapi_sk_5a6537ab6185aa469265e4160e29df02b49419402f7098288a559d193cfe93b3").await;
    });
}
