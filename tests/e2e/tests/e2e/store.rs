//! The platform layer as an embedder uses it: connections saved only once
//! Gong accepted them, syncs stored page by page and resumed, rotation,
//! the master key. Real component, real host, SQLite store, fake Gong.

use terapi_e2e::fake_gong::{FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{Credentials, Secret};
use terapi_e2e::terapi_platform::{PlatformError, StoredSyncOptions};
use terapi_e2e::terapi_store::prelude::*;
use terapi_e2e::terapi_store::{MasterKey, SqliteStore, StoreError};
use terapi_e2e::*;

fn key(byte: u8) -> MasterKey {
    // base64 of 32 equal bytes: 32 bytes = 43 characters + one '='.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = [byte; 33];
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(n >> shift & 63) as usize] as char);
        }
    }
    MasterKey::from_base64(&format!("{}=", &out[..43])).unwrap()
}

fn no_progress() -> impl FnMut(&terapi_e2e::terapi_host::SyncPage) + Send {
    |_| {}
}

#[test]
fn a_sync_that_dies_after_page_k_resumes_and_ends_with_exactly_the_full_set() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(450), ..FakeGongConfig::default() }).await;
        let platform = platform_in(&fresh_dir("resume"));
        let connection = connection(&gong);
        let id = connection.id.as_str();
        platform.create_connection(&connection).await.unwrap();
        let options = StoredSyncOptions::default();

        // Gong dies after two more pages.
        gong.fail_after(2);
        let error = platform.run_sync(id, "users", &options, &mut no_progress()).await.unwrap_err();
        assert!(error.to_string().contains("500"), "{error}");
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 200, "both committed pages are kept");
        let state = &platform.store().sync_states(id).await.unwrap()[0];
        assert_eq!((state.status.as_str(), state.records), ("failed", 200));
        assert!(state.checkpoint.is_some() && state.last_error.as_deref().is_some_and(|e| e.contains("500")));

        // The rerun resumes from the checkpoint: no page is fetched twice.
        gong.recover();
        let before = gong.requests().len();
        let done = platform.run_sync(id, "users", &options, &mut no_progress()).await.unwrap();
        assert!(done.resumed);
        assert_eq!(done.run.records, 250);
        let resumed: Vec<_> = gong.requests()[before..].iter().map(|r| r.query.contains_key("cursor")).collect();
        assert_eq!(resumed, [true, true, true], "every resumed request carries a cursor");
        assert_eq!(stored_ids(&platform, id, "GongUser").await, (0..450).map(fixtures::user_id).collect::<Vec<_>>());

        // A full rerun of the same data stores nothing twice.
        let full = StoredSyncOptions { full: true, ..StoredSyncOptions::default() };
        let done = platform.run_sync(id, "users", &full, &mut no_progress()).await.unwrap();
        assert!(!done.resumed);
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 450);
        assert_eq!(platform.store().sync_states(id).await.unwrap()[0].status, "done");
    });
}

#[test]
fn a_credential_gong_rejects_is_not_saved_and_a_rotation_gong_rejects_keeps_the_old_one() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(150), ..FakeGongConfig::default() }).await;
        let dir = fresh_dir("rotate");
        let platform = platform_in(&dir);
        let wrong = connection_with_secret(&gong, "wrong-secret-at-create");
        let error = platform.create_connection(&wrong).await.unwrap_err();
        assert!(matches!(error, PlatformError::NotSaved { .. }), "{error}");
        assert!(error.to_string().starts_with("the credential was not saved: unauthorized"), "{error}");
        assert!(platform.store().connections().await.unwrap().is_empty());

        let good = connection(&gong);
        let id = good.id.as_str();
        platform.create_connection(&good).await.unwrap();
        platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        let before = platform.store().sync_states(id).await.unwrap();

        let rejected = Credentials::Basic {
            username: gong.config().access_key.clone(),
            password: Secret::new("new-secret-gong-does-not-know"),
        };
        let error = platform.rotate_credentials(id, rejected).await.unwrap_err();
        assert!(error.to_string().contains("the old one is kept"), "{error}");
        let kept = platform.store().connection(id).await.unwrap();
        let Credentials::Basic { password, .. } = &kept.credentials else { panic!() };
        assert_eq!(password.expose(), gong.config().access_key_secret);

        // A rotation Gong accepts replaces it in place; sync state and records stay.
        let accepted = Credentials::Basic {
            username: gong.config().access_key.clone(),
            password: Secret::new(gong.config().access_key_secret.clone()),
        };
        platform.rotate_credentials(id, accepted).await.unwrap();
        assert_eq!(platform.store().sync_states(id).await.unwrap(), before);
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 150);
        drop(platform);

        // No secret is in any file of the store in plain text.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for secret in ["wrong-secret-at-create", "new-secret-gong-does-not-know", "fake-access-key-secret"] {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {}", path.display());
            }
        }
    });
}

#[test]
fn bad_connection_ids_are_refused_before_any_request() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let platform = platform_in(&fresh_dir("ids"));
        for bad in ["", "../escape", "tab\tinside", &"x".repeat(300)] {
            let mut connection = connection(&gong);
            connection.id = bad.to_string();
            let error = platform.create_connection(&connection).await.unwrap_err().to_string();
            assert!(error.starts_with("that connection id is not usable"), "{error}");
        }
        assert!(gong.requests().is_empty());
    });
}

#[test]
fn a_second_run_of_the_same_sync_is_refused_while_the_first_holds_its_lease() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(300), ..FakeGongConfig::default() }).await;
        let dir = fresh_dir("single");
        let platform = platform_in(&dir);
        let connection = connection(&gong);
        platform.create_connection(&connection).await.unwrap();
        // The first run is slow (each page takes 300 ms); the second, from
        // another platform on the same store, starts meanwhile.
        gong.set_delay(std::time::Duration::from_millis(300));
        let other = platform_in(&dir);
        let (options, mut progress) = (StoredSyncOptions::default(), no_progress());
        let first = platform.run_sync(&connection.id, "users", &options, &mut progress);
        let second = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            other.run_sync(&connection.id, "users", &StoredSyncOptions::default(), &mut no_progress()).await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first.unwrap().run.records, 300);
        let error = second.unwrap_err().to_string();
        assert!(error.contains("`users` of `test-") && error.contains("is already running"), "{error}");
    });
}

#[test]
fn a_wrong_key_is_a_clear_error_and_overwrites_nothing() {
    block_on(async {
        let dir = fresh_dir("wrong-key");
        let store = SqliteStore::open(&dir, key(3)).unwrap();
        let gong_like = terapi_host::Connection {
            id: "acme".into(),
            provider: "gong".into(),
            credentials: Credentials::Basic { username: "key".into(), password: Secret::new("the-real-secret") },
            config: Default::default(),
        };
        store.create_connection(&gong_like, None).await.unwrap();
        drop(store);
        let db = dir.join("terapi.db");
        let before = std::fs::read(&db).unwrap();

        let error = SqliteStore::open(&dir, key(4)).err().expect("wrong key must fail");
        assert!(matches!(error, StoreError::WrongKey));
        let message = error.to_string();
        assert!(message.contains("TERAPI_MASTER_KEY") && message.contains("Nothing was changed"), "{message}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the file is untouched");

        let store = SqliteStore::open(&dir, key(3)).unwrap();
        let Credentials::Basic { password, .. } = store.connection("acme").await.unwrap().credentials else { panic!() };
        assert_eq!(password.expose(), "the-real-secret");
        assert!(matches!(store.create_connection(&gong_like, None).await, Err(StoreError::ConnectionExists(_))));
    });
}

#[test]
fn migrations_run_once_and_reopen_is_idempotent() {
    block_on(async {
        let dir = fresh_dir("reopen");
        for _ in 0..3 {
            let store = SqliteStore::open(&dir, key(5)).unwrap();
            assert!(store.connections().await.unwrap().is_empty());
        }
    });
}

#[test]
fn a_full_sync_marks_records_gone_upstream_as_deleted_and_a_resumed_pass_does_too() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
        let platform = platform_in(&fresh_dir("deletions"));
        let connection = connection(&gong);
        let id = connection.id.as_str();
        platform.create_connection(&connection).await.unwrap();
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        assert_eq!((done.run.records, done.deleted), (250, 0));

        // Two users leave Gong; the next pass dies after one page and is resumed.
        gong.remove_users(&[fixtures::user_id(3), fixtures::user_id(240)]);
        gong.fail_after(1);
        assert!(platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.is_err());
        gong.recover();
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        assert!(done.resumed);
        assert_eq!(done.deleted, 2, "the users seen by the first half of the pass were not taken for gone");

        let live = stored_ids(&platform, id, "GongUser").await;
        assert_eq!(live.len(), 248);
        assert!(!live.contains(&fixtures::user_id(3)) && !live.contains(&fixtures::user_id(240)));
        let query = all_records_query(id, "GongUser");
        let all = platform.store().records(&query).await.unwrap().records;
        let gone: Vec<&str> = all.iter().filter(|r| r.deleted_at.is_some()).map(|r| r.id.as_str()).collect();
        assert_eq!(gone, [fixtures::user_id(3), fixtures::user_id(240)]);

        // Incremental syncs never delete: they see only a window.
        let calls = platform.run_sync(id, "calls", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        assert_eq!(calls.deleted, 0);
    });
}

#[test]
fn a_listing_that_ends_early_deletes_nothing_and_says_so() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(6), ..FakeGongConfig::default() }).await;
        let platform = platform_in(&fresh_dir("ends-early"));
        let connection = connection(&gong);
        let id = connection.id.as_str();
        platform.create_connection(&connection).await.unwrap();
        platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();

        // Gong says 6 users, sends 2 and no cursor.
        let cut_short = serde_json::json!({
            "requestId": "r",
            "records": { "totalRecords": 6, "currentPageSize": 2, "currentPageNumber": 0 },
            "users": fixtures::users(2),
        });
        gong.inject(1, terapi_e2e::fake_gong::Fault::Body(cut_short.to_string()));
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        assert_eq!((done.run.records, done.deleted), (2, 0));
        let warning = done.warning.expect("a warning");
        assert!(warning.contains("listing holds 6 records but the pass saw 2"), "{warning}");
        assert!(warning.contains("--allow-mass-deletion"), "{warning}");
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 6, "nothing deleted");
        let state = &platform.store().sync_states(id).await.unwrap()[0];
        assert_eq!(state.status, "done");
        assert_eq!(state.last_error.as_deref(), Some(warning.as_str()));

        // The same cut-short listing, forced by an operator, deletes.
        gong.inject(1, terapi_e2e::fake_gong::Fault::Body(cut_short.to_string()));
        let forced = StoredSyncOptions { allow_mass_deletion: true, ..StoredSyncOptions::default() };
        let done = platform.run_sync(id, "users", &forced, &mut no_progress()).await.unwrap();
        assert_eq!((done.deleted, done.warning), (4, None));
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 2);
    });
}

#[test]
fn a_pass_that_would_delete_a_large_share_holds_back() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
        let platform = platform_in(&fresh_dir("mass-deletion"));
        let connection = connection(&gong);
        let id = connection.id.as_str();
        platform.create_connection(&connection).await.unwrap();
        platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();

        // 100 of 250 leave at once (Gong's own total agrees: 150).
        let gone: Vec<String> = (0..100).map(fixtures::user_id).collect();
        gong.remove_users(&gone);
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
        assert_eq!(done.deleted, 0);
        let warning = done.warning.expect("a warning");
        assert!(warning.contains("100 of 250 stored records (40%)"), "{warning}");
        assert_eq!(stored_ids(&platform, id, "GongUser").await.len(), 250);

        let forced = StoredSyncOptions { allow_mass_deletion: true, ..StoredSyncOptions::default() };
        let done = platform.run_sync(id, "users", &forced, &mut no_progress()).await.unwrap();
        assert_eq!(done.deleted, 100);
        // Once done, the warning is gone from the sync's state.
        let state = &platform.store().sync_states(id).await.unwrap()[0];
        assert_eq!(state.last_error, None);
    });
}

/// Every record (with its last action) listed from `cursor` on.
async fn listed_from(
    platform: &terapi_e2e::terapi_platform::Platform,
    query: &terapi_e2e::terapi_store::RecordQuery,
) -> Vec<(String, terapi_e2e::terapi_store::LastAction)> {
    let mut query = query.clone();
    let mut out = Vec::new();
    loop {
        let page = platform.store().records(&query).await.unwrap();
        out.extend(page.records.into_iter().map(|r| (r.id, r.last_action)));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return out,
        }
    }
}

/// An app walked every record and kept the last cursor; then Gong changed
/// one user's title, removed two users and added one, and a full sync ran.
/// From the kept cursor it gets exactly those four, and the run's change
/// webhook counts exactly what `modified_after` = its `modifiedAfter` lists.
async fn a_saved_cursor_returns_exactly_what_changed_after_it(platform: terapi_e2e::terapi_platform::Platform) {
    use terapi_e2e::terapi_store::LastAction::{Added, Deleted, Updated};
    let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
    let connection = connection(&gong);
    let id = connection.id.clone();
    platform.create_connection(&connection).await.unwrap();
    platform.run_sync(&id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
    let query = terapi_e2e::terapi_store::RecordQuery { limit: 100, ..all_records_query(&id, "GongUser") };
    let mut walk = query.clone();
    let saved = loop {
        let page = platform.store().records(&walk).await.unwrap();
        match page.next_cursor {
            Some(cursor) => walk.cursor = Some(cursor),
            None => break page.records.last().unwrap().cursor.clone(),
        }
    };

    let mut users = fixtures::users(251);
    users[5]["title"] = "Head of Sales".into();
    users.remove(9);
    users.remove(7);
    gong.set_users(&users);
    let second = platform.run_sync(&id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
    assert_eq!(second.deleted, 2);

    let resumed =
        listed_from(&platform, &terapi_e2e::terapi_store::RecordQuery { cursor: Some(saved), ..query.clone() }).await;
    let mut expected = vec![
        (fixtures::user_id(5), Updated),
        (fixtures::user_id(250), Added),
        (fixtures::user_id(7), Deleted),
        (fixtures::user_id(9), Deleted),
    ];
    let mut got = resumed.clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected, "in change order: {resumed:?}");

    // The run's event counts what modified_after = its start lists.
    let event = platform.store().events(10).await.unwrap().into_iter().find(|e| e.kind == "sync").unwrap();
    let changes = event.changes.unwrap();
    assert_eq!((changes.added, changes.updated, changes.deleted), (1, 1, 2), "{event:?}");
    let since = event.run_started_at_ms.unwrap();
    let modified = listed_from(
        &platform,
        &terapi_e2e::terapi_store::RecordQuery { modified_after_ms: Some(since), ..query.clone() },
    )
    .await;
    assert_eq!(modified.len(), 4, "{modified:?}");
    // Filters apply before the limit: the first page of one holds a deletion.
    let deleted_first = platform
        .store()
        .records(&terapi_e2e::terapi_store::RecordQuery { actions: vec![Deleted], limit: 1, ..query.clone() })
        .await
        .unwrap();
    assert_eq!(deleted_first.records.len(), 1);
    assert_eq!(deleted_first.records[0].last_action, Deleted);
    let by_id = listed_from(
        &platform,
        &terapi_e2e::terapi_store::RecordQuery {
            ids: vec![fixtures::user_id(5), fixtures::user_id(250), "no-such-user".into()],
            ..query.clone()
        },
    )
    .await;
    assert_eq!(by_id.len(), 2);

    // Pruned payloads come back with the next sync, and that is no change.
    let last = listed_from(&platform, &query).await.len();
    let everything = terapi_e2e::terapi_store::RecordQuery { limit: 10_000, ..query.clone() };
    let until = platform.store().records(&everything).await.unwrap().records.last().unwrap().cursor.clone();
    let (pruned, more) = platform.store().prune_records(&id, "GongUser", &until, 10_000).await.unwrap();
    assert_eq!((pruned as usize, more), (last, false));
    let resynced = platform.run_sync(&id, "users", &StoredSyncOptions::default(), &mut no_progress()).await.unwrap();
    assert_eq!(resynced.deleted, 0);
    let event = platform.store().events(10).await.unwrap().into_iter().find(|e| e.kind == "sync").unwrap();
    let changes = event.changes.unwrap();
    assert_eq!((changes.added, changes.updated, changes.deleted), (0, 0, 0), "restoring a payload is no change");
    let back = platform.store().records(&query).await.unwrap().records;
    assert!(back.iter().all(|r| r.json != "{}" || r.deleted_at.is_some()), "payloads restored");
    assert!(back.iter().all(|r| r.pruned_at.is_none() || r.deleted_at.is_some()));
}

#[test]
fn a_saved_cursor_returns_exactly_what_changed_after_it_on_sqlite() {
    block_on(a_saved_cursor_returns_exactly_what_changed_after_it(platform_in(&fresh_dir("changes-sqlite"))));
}

#[test]
fn a_saved_cursor_returns_exactly_what_changed_after_it_on_postgres() {
    block_on(async {
        a_saved_cursor_returns_exactly_what_changed_after_it(fresh_postgres_platform("changes").await).await
    });
}
