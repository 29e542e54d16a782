//! `RecordStore`: upserts store a record once, in change order; an older
//! version never replaces a newer one; listings page by cursor and filter
//! by time, id and last action; pruning empties payloads up to a cursor.

use terapi_e2e::terapi_host::SyncRecord;
use terapi_e2e::terapi_store::{LastAction, RecordQuery, Store};
use terapi_e2e::*;

use super::saved;

fn record(id: &str, modified_at: &str, title: &str) -> SyncRecord {
    SyncRecord {
        id: id.into(),
        modified_at: Some(modified_at.into()),
        json: serde_json::json!({ "id": id, "title": title }).to_string(),
    }
}

async fn titles(store: &dyn Store, query: &RecordQuery) -> Vec<String> {
    let page = store.records(query).await.unwrap();
    page.records
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.json).unwrap()["title"].to_string())
        .collect()
}

pub(super) async fn check(store: &dyn Store) {
    saved(store, "acme").await;
    saved(store, "globex").await;
    let query = all_records_query("acme", "Thing");

    // An older version (another offset, same order): nothing changes.
    store.upsert_records("acme", "Thing", &[record("a", "2026-12-01T10:00:00Z", "newer")]).await.unwrap();
    let before = store.records(&query).await.unwrap().records[0].cursor.clone();
    store.upsert_records("acme", "Thing", &[record("a", "2026-12-01T11:59:00+02:00", "older")]).await.unwrap();
    assert_eq!(titles(store, &query).await, ["\"newer\""]);
    assert_eq!(store.records(&query).await.unwrap().records[0].cursor, before, "a stale version is not a change");
    // The same version again is not a change either.
    store.upsert_records("acme", "Thing", &[record("a", "2026-12-01T10:00:00Z", "newer")]).await.unwrap();
    assert_eq!(store.records(&query).await.unwrap().records[0].cursor, before);
    // A newer one replaces it; one without a time replaces it too.
    store.upsert_records("acme", "Thing", &[record("a", "2026-12-01T10:00:01Z", "newest")]).await.unwrap();
    assert_eq!(titles(store, &query).await, ["\"newest\""]);
    let untimed = SyncRecord { modified_at: None, ..record("a", "", "untimed") };
    store.upsert_records("acme", "Thing", &[untimed]).await.unwrap();
    let stored = store.records(&query).await.unwrap().records;
    assert_eq!((stored.len(), stored[0].last_action), (1, LastAction::Updated), "stored once, updated");

    // Change order: b, c, d after a; a listing from a cursor holds what
    // changed after it, and a change moves a record to the end.
    let batch: Vec<_> = ["b", "c", "d"].iter().map(|id| record(id, "2026-12-01T10:00:00Z", id)).collect();
    store.upsert_records("acme", "Thing", &batch).await.unwrap();
    store.upsert_records("globex", "Thing", &[record("z", "2026-12-01T10:00:00Z", "other tenant")]).await.unwrap();
    store.upsert_records("acme", "Other", &[record("y", "2026-12-01T10:00:00Z", "other model")]).await.unwrap();
    assert_eq!(titles(store, &query).await, ["\"untimed\"", "\"b\"", "\"c\"", "\"d\""]);
    let first = store.records(&RecordQuery { limit: 2, ..query.clone() }).await.unwrap();
    assert_eq!(first.records.len(), 2);
    let cursor = first.next_cursor.clone().expect("more follow");
    let rest = RecordQuery { cursor: Some(cursor.clone()), ..query.clone() };
    assert_eq!(titles(store, &rest).await, ["\"c\"", "\"d\""]);
    store.upsert_records("acme", "Thing", &[record("b", "2026-12-01T10:05:00Z", "b2")]).await.unwrap();
    assert_eq!(titles(store, &rest).await, ["\"c\"", "\"d\"", "\"b2\""], "a changed record comes after");
    let last = store.records(&rest).await.unwrap();
    let end = RecordQuery { cursor: last.records.last().map(|r| r.cursor.clone()), ..query.clone() };
    assert!(store.records(&end).await.unwrap().records.is_empty(), "nothing changed after the last one");

    // Filters: ids, last action, the time of the change here.
    let by_id = RecordQuery { ids: vec!["c".into(), "a".into(), "nope".into()], ..query.clone() };
    assert_eq!(titles(store, &by_id).await, ["\"untimed\"", "\"c\""]);
    let added = RecordQuery { actions: vec![LastAction::Added], ..query.clone() };
    assert_eq!(titles(store, &added).await, ["\"c\"", "\"d\""]);
    let changed_at = store.records(&query).await.unwrap().records.iter().map(|r| r.changed_at_ms).max().unwrap();
    let recent = RecordQuery { modified_after_ms: Some(changed_at), ..query.clone() };
    assert!(titles(store, &recent).await.contains(&"\"b2\"".to_string()), "inclusive, to the millisecond");
    let future = RecordQuery { modified_after_ms: Some(changed_at + 60_000), ..query.clone() };
    assert!(store.records(&future).await.unwrap().records.is_empty());
    let bad = RecordQuery { cursor: Some("not a cursor".into()), ..query.clone() };
    assert!(store.records(&bad).await.is_err(), "a cursor that is not one is refused");

    // Pruning empties payloads up to a cursor, a few at a time; the
    // records stay listed, and a sync restores a payload as no change.
    let order = store.records(&query).await.unwrap().records;
    let until = order[2].cursor.clone();
    let (pruned, more) = store.prune_records("acme", "Thing", &until, 2).await.unwrap();
    assert_eq!((pruned, more), (2, true));
    let (pruned, more) = store.prune_records("acme", "Thing", &until, 2).await.unwrap();
    assert_eq!((pruned, more), (1, false));
    let after = store.records(&query).await.unwrap().records;
    assert_eq!(after.len(), 4);
    assert!(after[..3].iter().all(|r| r.json == "{}" && r.pruned_at.is_some()), "{after:?}");
    assert!(after[3].pruned_at.is_none(), "after the cursor: kept whole");
    let cursor_before = after[1].cursor.clone();
    let c_again = record("c", "2026-12-01T10:00:00Z", "c");
    store.upsert_records("acme", "Thing", &[c_again]).await.unwrap();
    let restored = store.records(&by_id).await.unwrap().records;
    let c = restored.iter().find(|r| r.id == "c").unwrap();
    assert!(c.json.contains("\"c\"") && c.pruned_at.is_none(), "the payload is back: {c:?}");
    assert_eq!(c.cursor, cursor_before, "restoring a pruned payload is not a change");
    let _ = cursor;
}
