//! `ScheduleStore`: due syncs claimed longest-due first, once each, with
//! tenants to skip; the queue's depth and lag; schedules that pause and
//! come back; a finished run due again one period later; the changes a
//! run made, counted as `records` lists them.

use std::time::Duration;

use terapi_e2e::terapi_host::SyncRecord;
use terapi_e2e::terapi_store::{RunOutcome, Store, SyncLease};

use super::{now_ms, saved};

pub(super) async fn check(store: &dyn Store) {
    saved(store, "acme").await;
    saved(store, "globex").await;
    let now = now_ms();
    assert_eq!(store.waiting_syncs().await.unwrap(), 0);
    store.schedule_sync("acme", "users", "User", now - 5_000, false).await.unwrap();
    store.schedule_sync("globex", "users", "User", now - 1_000, false).await.unwrap();
    store.schedule_sync("acme", "calls", "Call", now + 60_000, false).await.unwrap();
    store.set_sync_tenant("acme", "tenant-acme").await.unwrap();
    store.set_sync_tenant("globex", "tenant-globex").await.unwrap();
    assert_eq!((store.waiting_syncs().await.unwrap(), store.due_now().await.unwrap()), (2, 2));
    let queue = store.sync_queue().await.unwrap();
    assert_eq!((queue.waiting, queue.running), (2, 0));
    assert!(queue.lag_ms >= 5_000 && queue.lag_ms < 60_000, "{queue:?}");
    let load = store.tenant_load(1_000).await.unwrap();
    assert_eq!(load.waiting.get(&Some("tenant-acme".to_string())), Some(&1), "{load:?}");

    // Longest due first; a tenant to skip is skipped; each claimed once.
    let ttl = Duration::from_secs(60);
    let skip = ["tenant-acme".to_string()];
    assert_eq!(store.claim_due_sync("w1", ttl, &skip).await.unwrap(), Some(("globex".into(), "users".into())));
    assert_eq!(store.claim_due_sync("w1", ttl, &skip).await.unwrap(), None);
    assert_eq!(store.claim_due_sync("w2", ttl, &[]).await.unwrap(), Some(("acme".into(), "users".into())));
    assert_eq!(store.claim_due_sync("w3", ttl, &[]).await.unwrap(), None, "nothing else is due");
    let load = store.tenant_load(1_000).await.unwrap();
    assert_eq!(load.running.get("tenant-acme"), Some(&1));
    assert_eq!(store.sync_queue().await.unwrap().running, 2);
    assert_eq!(store.waiting_syncs().await.unwrap(), 0);

    // The claimant runs it; a finished run on a schedule is due a period on.
    let claimed =
        SyncLease { connection_id: "acme".into(), sync: "users".into(), owner: "w2".into(), ttl, claimed: true };
    let stolen = SyncLease { owner: "w9".into(), ..claimed.clone() };
    assert!(store.begin_sync(&stolen, "User", false).await.is_err(), "only the claimant begins a claimed sync");
    store.set_schedule("acme", "users", "User", 3_600, false, None).await.unwrap();
    store.begin_sync(&claimed, "User", false).await.unwrap();
    let records = [SyncRecord { id: "u1".into(), modified_at: None, json: "{}".into() }];
    store.upsert_records("acme", "User", &records).await.unwrap();
    store.finish_sync(&claimed, RunOutcome::Done, None).await.unwrap();
    let state = store.sync_states("acme").await.unwrap().into_iter().find(|s| s.sync == "users").unwrap();
    assert_eq!((state.frequency_secs, state.paused), (Some(3_600), false));
    let due = state.due_at_ms.expect("due again");
    assert!(due >= now + 3_590_000 && due <= now_ms() + 3_600_000, "a period after it finished: {due}");
    let changes = store.record_changes("acme", "User", now).await.unwrap();
    assert_eq!((changes.added, changes.updated, changes.deleted), (1, 0, 0));
    assert_eq!(store.record_changes("acme", "User", now_ms() + 60_000).await.unwrap().added, 0);

    // Paused: not due, and a finished run does not make it due.
    store.set_schedule("acme", "users", "User", 3_600, true, None).await.unwrap();
    let state = store.sync_states("acme").await.unwrap().into_iter().find(|s| s.sync == "users").unwrap();
    assert_eq!((state.paused, state.due_at_ms), (true, None));
    // Started again, due now: claimable.
    store.set_schedule("acme", "users", "User", 60, false, Some(now_ms() - 1)).await.unwrap();
    assert_eq!(store.claim_due_sync("w4", ttl, &[]).await.unwrap(), Some(("acme".into(), "users".into())));
    // A claim whose lease lapsed is claimed again.
    store.schedule_sync("acme", "calls", "Call", now_ms() - 1, true).await.unwrap();
    assert!(store.claim_due_sync("w5", Duration::from_millis(1), &[]).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.claim_due_sync("w6", ttl, &[]).await.unwrap(), Some(("acme".into(), "calls".into())));
}
