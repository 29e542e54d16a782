//! `GovernanceStore`: tool decisions, documents written compare-and-swap,
//! a version that rises with every write, and the audit log.

use terapi_e2e::terapi_store::{AuditEntry, Store};

pub(super) async fn check(store: &dyn Store) {
    assert!(store.tool_decisions("gong").await.unwrap().is_empty());
    store.set_tool_decision("gong", "get-user", true).await.unwrap();
    store.set_tool_decision("gong", "upload-call", false).await.unwrap();
    store.set_tool_decision("gong", "get-user", false).await.unwrap();
    store.set_tool_decision("other", "get-user", true).await.unwrap();
    let decisions = store.tool_decisions("gong").await.unwrap();
    assert_eq!(decisions.into_iter().collect::<Vec<_>>(), [("get-user".into(), false), ("upload-call".into(), false)]);

    let start = store.governance_version().await.unwrap();
    assert!(store.put_governance_doc("toolset", "people", 0, r#"["get-user"]"#).await.unwrap());
    assert!(!store.put_governance_doc("toolset", "people", 0, "[]").await.unwrap(), "it exists already");
    assert!(!store.put_governance_doc("toolset", "people", 7, "[]").await.unwrap(), "a stale version loses");
    assert!(store.put_governance_doc("toolset", "people", 1, r#"["get-user","list-users"]"#).await.unwrap());
    assert!(store.put_governance_doc("toolset", "calls", 0, "[]").await.unwrap());
    assert!(store.put_governance_doc("profile", "sales", 0, "{}").await.unwrap());
    let doc = store.governance_doc("toolset", "people").await.unwrap().unwrap();
    assert_eq!((doc.version, doc.body.as_str()), (2, r#"["get-user","list-users"]"#));
    assert_eq!(store.governance_doc("toolset", "nobody").await.unwrap(), None);
    let keys: Vec<_> = store.governance_docs("toolset").await.unwrap().into_iter().map(|d| d.key).collect();
    assert_eq!(keys, ["calls", "people"], "one kind, by key");
    // A deletion is a write of `null`: the version still rises.
    assert!(store.put_governance_doc("toolset", "calls", 1, "null").await.unwrap());
    assert_eq!(store.governance_version().await.unwrap(), start + 2 + 2 + 1);

    for n in 0..5u64 {
        let entry = AuditEntry {
            at: 1_700_000_000 + n,
            caller: "alice".into(),
            connection_id: "acme".into(),
            tool: format!("tool-{n}"),
            input_sha256: "0".repeat(64),
            status: if n == 3 { "refused".into() } else { "ok".into() },
            duration_ms: n * 10,
            detail: (n == 3).then(|| "not approved".into()),
        };
        store.record_audit(&entry).await.unwrap();
    }
    let newest: Vec<_> = store.audit_entries(3).await.unwrap().into_iter().map(|e| e.tool).collect();
    assert_eq!(newest, ["tool-2", "tool-3", "tool-4"], "the newest entries, oldest first");
    let refused = &store.audit_entries(10).await.unwrap()[3];
    assert_eq!(
        (refused.status.as_str(), refused.detail.as_deref(), refused.duration_ms),
        ("refused", Some("not approved"), 30)
    );
}
