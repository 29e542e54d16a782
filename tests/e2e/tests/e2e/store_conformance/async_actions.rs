//! `AsyncActionStore`: pending, then done or failed once, with its event.

use terapi_e2e::terapi_store::{AsyncAction, NewEvent, Store};

use super::{now_ms, saved};

pub(super) async fn check(store: &dyn Store) {
    saved(store, "acme").await;
    let pending = |id: &str| AsyncAction {
        id: id.into(),
        connection_id: "acme".into(),
        action: "get-user".into(),
        status: "pending".into(),
        output: None,
        error: None,
        created_at_ms: now_ms(),
        finished_at_ms: None,
    };
    let ok = pending("ok");
    store.create_async_action(&ok).await.unwrap();
    store.create_async_action(&pending("bad")).await.unwrap();
    assert_eq!(store.async_action("ok").await.unwrap(), Some(ok), "read back as written");
    assert_eq!(store.async_action("missing").await.unwrap(), None);

    let event =
        NewEvent { id: "ev-ok".into(), kind: "async_action".into(), connection_id: "acme".into(), facts: "{}".into() };
    store.finish_async_action("ok", Ok(r#"{"id":"1"}"#), Some(&event)).await.unwrap();
    store.finish_async_action("bad", Err("Gong said no"), None).await.unwrap();
    let ok = store.async_action("ok").await.unwrap().unwrap();
    assert_eq!((ok.status.as_str(), ok.output.as_deref(), ok.error.as_deref()), ("done", Some(r#"{"id":"1"}"#), None));
    assert!(ok.finished_at_ms.is_some());
    let bad = store.async_action("bad").await.unwrap().unwrap();
    assert_eq!(
        (bad.status.as_str(), bad.output.as_deref(), bad.error.as_deref()),
        ("failed", None, Some("Gong said no"))
    );
    assert!(store.events(10).await.unwrap().iter().any(|e| e.id == "ev-ok"), "the event is written with the result");

    // An action ends once: a second result changes nothing.
    store.finish_async_action("ok", Err("late"), None).await.unwrap();
    assert_eq!(store.async_action("ok").await.unwrap().unwrap().status, "done");
}
