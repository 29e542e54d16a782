//! `SyncRunStore`: one live lease per sync; pages committed with their
//! checkpoint; a lapsed lease taken over and the old holder shut out; a
//! full pass marking what it did not see; runs and states as kept.

use std::time::Duration;

use terapi_e2e::terapi_host::{SyncPage, SyncRecord};
use terapi_e2e::terapi_store::{LastAction, NewEvent, RunOutcome, Store, StoreError, SyncLease};
use terapi_e2e::*;

use super::saved;

fn lease(owner: &str, ttl: Duration) -> SyncLease {
    SyncLease { connection_id: "acme".into(), sync: "users".into(), owner: owner.into(), ttl, claimed: false }
}

fn page(ids: &[&str], next: Option<&str>, done: bool) -> SyncPage {
    SyncPage {
        records: ids
            .iter()
            .map(|id| SyncRecord { id: id.to_string(), modified_at: None, json: format!(r#"{{"id":"{id}"}}"#) })
            .collect(),
        next_checkpoint: next.map(str::to_string),
        done,
        total_records: None,
    }
}

pub(super) async fn check(store: &dyn Store) {
    saved(store, "acme").await;
    let minute = Duration::from_secs(60);
    let (w1, w2) = (lease("w1", minute), lease("w2", minute));

    // A first run starts from nothing; a second holder is refused while it runs.
    assert_eq!(store.begin_sync(&w1, "User", false).await.unwrap(), None);
    assert!(
        matches!(store.begin_sync(&w2, "User", false).await, Err(StoreError::SyncRunning { owner, .. }) if owner == "w1")
    );
    assert_eq!(store.live_leases().await.unwrap(), [("acme".to_string(), "users".to_string(), "w1".to_string())]);
    store.commit_page(&w1, "User", &page(&["1", "2"], Some("page-2"), false)).await.unwrap();
    store.renew_lease(&w1).await.unwrap();
    assert!(matches!(
        store.commit_page(&w2, "User", &page(&["x"], None, true)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.finish_sync(&w1, RunOutcome::Interrupted("stopped"), None).await.unwrap();
    assert!(store.live_leases().await.unwrap().is_empty(), "an ended run gives its lease up");

    // The next run resumes from the committed checkpoint, and completes.
    assert_eq!(store.begin_sync(&w2, "User", false).await.unwrap().as_deref(), Some("page-2"));
    store.commit_page(&w2, "User", &page(&["3"], None, true)).await.unwrap();
    let event = NewEvent { id: "run-1".into(), kind: "sync".into(), connection_id: "acme".into(), facts: "{}".into() };
    store.finish_sync(&w2, RunOutcome::Done, Some(&event)).await.unwrap();
    let state = &store.sync_states("acme").await.unwrap()[0];
    assert_eq!((state.sync.as_str(), state.model.as_str(), state.status.as_str()), ("users", "User", "done"));
    assert_eq!((state.checkpoint.as_deref(), state.pages, state.records), (None, 2, 3), "{state:?}");
    let sent = store.events(10).await.unwrap().into_iter().find(|e| e.id == "run-1").expect("the change event");
    // An interrupted run taken up again is the same run: it keeps its start
    // (from scratch, not resumed), so its event counts all it added.
    assert!(!sent.run_resumed, "{sent:?}");
    assert_eq!(sent.changes.map(|c| c.added), Some(3), "what the run added: {sent:?}");

    // A full pass from scratch marks what it did not see, and says so.
    assert_eq!(store.begin_sync(&w1, "User", true).await.unwrap(), None);
    store.commit_page(&w1, "User", &page(&["1", "3"], None, true)).await.unwrap();
    let unseen = store.unseen_records(&w1, "User").await.unwrap();
    assert_eq!((unseen.unseen, unseen.live), (1, 3));
    assert_eq!(store.mark_unseen_deleted(&w1, "User").await.unwrap(), 1);
    store.finish_sync(&w1, RunOutcome::Warned("held back nothing"), None).await.unwrap();
    let records = store.records(&all_records_query("acme", "User")).await.unwrap().records;
    let two = records.iter().find(|r| r.id == "2").unwrap();
    assert_eq!((two.last_action, two.deleted_at.is_some()), (LastAction::Deleted, true));
    let state = &store.sync_states("acme").await.unwrap()[0];
    assert_eq!((state.status.as_str(), state.last_error.as_deref()), ("done", Some("held back nothing")));

    // A lapsed lease is taken over; its old holder can save nothing more,
    // and its run is recorded as lost at its last sign of life.
    let short = lease("w3", Duration::from_millis(1));
    store.begin_sync(&short, "User", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.begin_sync(&w2, "User", false).await.unwrap(), None, "the last run finished from scratch");
    assert!(matches!(
        store.commit_page(&short, "User", &page(&["9"], None, true)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(store.renew_lease(&short).await, Err(StoreError::LeaseLost { .. })));
    store.finish_sync(&short, RunOutcome::Done, None).await.unwrap();
    assert_eq!(store.live_leases().await.unwrap()[0].2, "w2", "the late finish did not touch the new holder");
    // A dead holder's lease ends at once when its owner is known gone.
    assert!(!store.expire_lease("acme", "users", "w1").await.unwrap(), "w1 holds nothing");
    assert!(store.expire_lease("acme", "users", "w2").await.unwrap());
    assert!(store.live_leases().await.unwrap().is_empty());
    let w4 = lease("w4", minute);
    store.begin_sync(&w4, "User", false).await.unwrap();
    store.finish_sync(&w4, RunOutcome::Failed("HTTP 500"), None).await.unwrap();

    let runs = store.sync_runs("acme").await.unwrap();
    let statuses: Vec<_> = runs.iter().map(|r| (r.owner.as_str(), r.status.as_str())).collect();
    assert_eq!(
        statuses,
        [("w1", "interrupted"), ("w2", "done"), ("w1", "done"), ("w3", "lost"), ("w2", "running"), ("w4", "failed")],
        "oldest first"
    );
    assert_eq!((runs[0].pages, runs[1].pages), (1, 1));
    assert_eq!(runs[3].finished_at_ms, Some(runs[3].last_beat_ms), "lost at its last sign of life");
    let state = &store.sync_states("acme").await.unwrap()[0];
    assert_eq!((state.status.as_str(), state.last_error.as_deref()), ("failed", Some("HTTP 500")));
}
