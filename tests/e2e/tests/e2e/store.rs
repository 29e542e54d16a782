//! Connections and syncs that survive: the store with the real component,
//! real host and fake Gong.

use std::path::PathBuf;

use terapi_e2e::fake_gong::{FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{Credentials, Secret, SyncOptions};
use terapi_e2e::terapi_store::{MasterKey, Store, StoreError};
use terapi_e2e::*;

fn key(byte: u8) -> MasterKey {
    // base64 of 32 equal bytes
    let b64 = {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = [byte; 33]; // 33 bytes encode without padding; take 32 of them below
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
            for shift in [18, 12, 6, 0] {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            }
        }
        // 32 bytes = 43 characters + one '='
        format!("{}=", &out[..43])
    };
    MasterKey::from_base64(&b64).unwrap()
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("terapi-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ids(store: &Store, connection: &str) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .for_each_record(connection, "GongUser", None, |json| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            ids.push(value["id"].as_str().unwrap().to_string());
            Ok(())
        })
        .unwrap();
    ids
}

const NO_OPTIONS: SyncOptions = SyncOptions { modified_since: None, backfill_days: None };

#[test]
fn a_sync_that_dies_after_page_k_resumes_and_ends_with_exactly_the_full_set() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(450), ..FakeGongConfig::default() }).await;
        let store = Store::open(&data_dir("resume"), key(1)).unwrap();
        let connection = connection(&gong);
        let id = connection.id.as_str();
        store.create_connection(&connection).unwrap();
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection).unwrap();

        // Gong dies after two pages.
        gong.fail_after(2);
        let start = store.begin_sync(id, "users", "GongUser", false).unwrap();
        assert_eq!(start, None);
        let mut sink = store.page_sink(id, "users", "GongUser");
        let error = terapi_host::run_sync(&session, "users", start, &NO_OPTIONS, &mut sink).await.unwrap_err();
        store.finish_sync(id, "users", Err(&error.to_string())).unwrap();
        assert!(error.to_string().contains("500"), "{error}");
        assert_eq!(ids(&store, id).len(), 200, "both committed pages are kept");
        let state = &store.sync_states(id).unwrap()[0];
        assert_eq!((state.status.as_str(), state.records), ("failed", 200));
        assert!(state.checkpoint.is_some() && state.last_error.as_deref().is_some_and(|e| e.contains("500")));

        // The rerun resumes from the checkpoint: no page is fetched twice.
        gong.recover();
        let before = gong.requests().len();
        let start = store.begin_sync(id, "users", "GongUser", false).unwrap();
        assert_eq!(start, state.checkpoint);
        let mut sink = store.page_sink(id, "users", "GongUser");
        let run = terapi_host::run_sync(&session, "users", start, &NO_OPTIONS, &mut sink).await.unwrap();
        store.finish_sync(id, "users", Ok(&run)).unwrap();
        assert_eq!(run.records, 250);
        let resumed: Vec<_> = gong.requests()[before..].iter().map(|r| r.query.contains_key("cursor")).collect();
        assert_eq!(resumed, [true, true, true], "every resumed request carries a cursor");
        assert_eq!(ids(&store, id), (0..450).map(fixtures::user_id).collect::<Vec<_>>());

        // A full rerun of the same data stores nothing twice.
        let start = store.begin_sync(id, "users", "GongUser", true).unwrap();
        assert_eq!(start, None);
        let mut sink = store.page_sink(id, "users", "GongUser");
        terapi_host::run_sync(&session, "users", start, &NO_OPTIONS, &mut sink).await.unwrap();
        assert_eq!(ids(&store, id).len(), 450);
    });
}

#[test]
fn rotation_replaces_the_credential_and_keeps_checkpoints_and_records() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(150), ..FakeGongConfig::default() }).await;
        let dir = data_dir("rotate");
        let store = Store::open(&dir, key(2)).unwrap();
        let old = connection_with_secret(&gong, "old-secret-before-rotation");
        let id = old.id.as_str();
        store.create_connection(&old).unwrap();
        // One page synced with the old credential's session (the fake accepts
        // only its configured secret, so use the real one for the sync).
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        store.begin_sync(id, "users", "GongUser", false).unwrap();
        let page = session.run_sync_page("users", None, &NO_OPTIONS).await.unwrap();
        use terapi_e2e::terapi_host::PageSink;
        store.page_sink(id, "users", "GongUser").accept(&page).await.unwrap();
        let before = store.sync_states(id).unwrap();

        let new = Credentials::Basic {
            username: gong.config().access_key.clone(),
            password: Secret::new("new-secret-after-rotation"),
        };
        store.rotate_credentials(id, &new).unwrap();

        let rotated = store.connection(id).unwrap();
        let Credentials::Basic { password, .. } = &rotated.credentials else { panic!() };
        assert_eq!(password.expose(), "new-secret-after-rotation");
        assert_eq!(rotated.config, old.config);
        let after = store.sync_states(id).unwrap();
        assert_eq!(after[0].checkpoint, before[0].checkpoint);
        assert_eq!(after[0].records, 100);
        assert_eq!(ids(&store, id).len(), 100);
        drop(store);

        // Neither secret is in any file of the store in plain text.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for secret in ["old-secret-before-rotation", "new-secret-after-rotation"] {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {}", path.display());
            }
        }
    });
}

#[test]
fn a_wrong_key_is_a_clear_error_and_overwrites_nothing() {
    let dir = data_dir("wrong-key");
    let store = Store::open(&dir, key(3)).unwrap();
    let gong_like = terapi_host::Connection {
        id: "acme".into(),
        provider: "gong".into(),
        credentials: Credentials::Basic { username: "key".into(), password: Secret::new("the-real-secret") },
        config: Default::default(),
    };
    store.create_connection(&gong_like).unwrap();
    drop(store);
    let db = dir.join("terapi.db");
    let before = std::fs::read(&db).unwrap();

    let error = Store::open(&dir, key(4)).err().expect("wrong key must fail");
    assert!(matches!(error, StoreError::WrongKey));
    let message = error.to_string();
    assert!(message.contains("TERAPI_MASTER_KEY") && message.contains("Nothing was changed"), "{message}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is untouched");

    let store = Store::open(&dir, key(3)).unwrap();
    let Credentials::Basic { password, .. } = store.connection("acme").unwrap().credentials else { panic!() };
    assert_eq!(password.expose(), "the-real-secret");
    assert!(matches!(store.create_connection(&gong_like), Err(StoreError::ConnectionExists(_))));
}

#[test]
fn migrations_run_once_and_reopen_is_idempotent() {
    let dir = data_dir("reopen");
    for _ in 0..3 {
        let store = Store::open(&dir, key(5)).unwrap();
        assert!(store.connections().unwrap().is_empty());
    }
}
