//! `EventStore`: the outbox. Claims are exclusive and oldest first; only
//! the claimant moves an event on; released claims are free at once;
//! delivered, retried, skipped and given-up events end as they should.

use std::time::Duration;

use terapi_e2e::terapi_store::{DeliveryNext, DeliveryRecord, NewEvent, Store};

use super::{now_ms, saved};

fn event(id: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        kind: "sync".into(),
        connection_id: "acme".into(),
        facts: r#"{"syncName":"users"}"#.into(),
    }
}

fn attempt(id: &str, owner: &str, attempt: u32) -> DeliveryRecord {
    DeliveryRecord {
        event_id: id.into(),
        attempt,
        at_ms: now_ms(),
        owner: owner.into(),
        url: "https://app.example/hooks".into(),
        status_code: Some(200),
        error: None,
        duration_ms: 12,
    }
}

fn ids(events: &[terapi_e2e::terapi_store::EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

pub(super) async fn check(store: &dyn Store) {
    saved(store, "acme").await;
    for id in ["e1", "e2", "e3", "e4"] {
        store.record_event(&event(id)).await.unwrap();
    }
    let listed = store.events(10).await.unwrap();
    assert_eq!(ids(&listed), ["e4", "e3", "e2", "e1"], "newest first");
    assert!(listed.iter().all(|e| e.status == "pending" && e.attempts == 0 && e.facts == event("e1").facts));

    let ttl = Duration::from_secs(60);
    let first = store.claim_events("w1", ttl, 2).await.unwrap();
    assert_eq!(ids(&first), ["e1", "e2"], "oldest first, up to the limit");
    assert!(first.iter().all(|e| e.attempts == 1), "the attempt is counted");
    let second = store.claim_events("w2", ttl, 10).await.unwrap();
    assert_eq!(ids(&second), ["e3", "e4"], "claimed events are not claimed twice");
    assert!(store.claim_events("w3", ttl, 10).await.unwrap().is_empty());

    store.record_delivery(&attempt("e1", "w1", 1), DeliveryNext::Delivered).await.unwrap();
    store.record_delivery(&attempt("e2", "w2", 1), DeliveryNext::Delivered).await.unwrap();
    let status = |events: &[terapi_e2e::terapi_store::EventRecord], id: &str| {
        events.iter().find(|e| e.id == id).map(|e| (e.status.clone(), e.delivered_at_ms.is_some())).unwrap()
    };
    let now = store.events(10).await.unwrap();
    assert_eq!(status(&now, "e1"), ("delivered".into(), true));
    assert_eq!(status(&now, "e2"), ("pending".into(), false), "only the claimant moves an event on");
    assert_eq!(store.deliveries(Some("e1"), 10).await.unwrap().len(), 1);
    // The attempt happened, so the log keeps it, though it moved nothing.
    assert_eq!(store.deliveries(Some("e2"), 10).await.unwrap()[0].owner, "w2");

    // A retry comes due again; a skip logs no attempt; giving up fails it.
    let mut failed = attempt("e2", "w1", 1);
    (failed.status_code, failed.error) = (Some(503), Some("HTTP 503".into()));
    store.record_delivery(&failed, DeliveryNext::RetryIn(Duration::ZERO)).await.unwrap();
    let again = store.claim_events("w3", ttl, 10).await.unwrap();
    assert_eq!(ids(&again), ["e2"]);
    assert_eq!((again[0].attempts, again[0].last_error.as_deref()), (2, Some("HTTP 503")));
    store.record_delivery(&attempt("e2", "w3", 2), DeliveryNext::GiveUp).await.unwrap();
    store.record_delivery(&attempt("e3", "w2", 1), DeliveryNext::Skipped).await.unwrap();
    let now = store.events(10).await.unwrap();
    assert_eq!(status(&now, "e2").0, "failed");
    assert_eq!(status(&now, "e3").0, "skipped");
    assert!(store.deliveries(Some("e3"), 10).await.unwrap().is_empty(), "a skip sends nothing");
    let all = store.deliveries(None, 10).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!((all[0].event_id.as_str(), all[0].attempt), ("e2", 2), "newest first");
    assert_eq!(all[1].status_code, Some(503));

    // A stopping process gives its claims back: another delivers them now.
    store.release_events("w2").await.unwrap();
    assert_eq!(ids(&store.claim_events("w4", ttl, 10).await.unwrap()), ["e4"]);

    // Pruning takes events made before the cut, with their attempts.
    assert_eq!(store.prune_events(now_ms() - 60_000).await.unwrap(), 0);
    assert_eq!(store.prune_events(now_ms() + 1).await.unwrap(), 4);
    assert!(store.events(10).await.unwrap().is_empty());
    assert!(store.deliveries(None, 10).await.unwrap().is_empty());
}
