//! Tool governance in the platform layer, on SQLite and on PostgreSQL: per
//! connection decisions and defaults, toolsets, access profiles and users,
//! concurrent operators, decisions from before decisions were per
//! connection, and watchers in another process. (What MCP clients see of
//! it is tested through `terapi serve` with the official SDK, in cli/tests.)

use std::sync::Arc;
use std::time::Duration;

use terapi_e2e::fake_gong::FakeGongConfig;
use terapi_e2e::terapi_platform::{
    Caller, DefaultClassification, Grant, Platform, PlatformError, ProfileEdit, Refusal, ToolDecision, ToolStatus,
};
use terapi_e2e::*;

fn names(tools: Vec<terapi_e2e::terapi_platform::ToolInfo>) -> Vec<String> {
    let mut names: Vec<String> = tools.into_iter().map(|t| t.action.name).collect();
    names.sort();
    names
}

/// `first` and `second` share one store, as two processes would.
async fn governance_holds(first: Arc<Platform>, second: Arc<Platform>) {
    let gong = start_gong(FakeGongConfig::default()).await;
    let (acme, globex) = (connection(&gong), connection(&gong));
    first.create_connection(&acme).await.unwrap();
    first.create_connection(&globex).await.unwrap();
    let (acme, globex) = (acme.id.as_str(), globex.id.as_str());

    // A decision from before decisions were per connection (per provider)
    // still holds on every connection that has none of its own.
    first.store().set_tool_decision("gong", "upload-call", true).await.unwrap();
    let status = |tools: &terapi_e2e::terapi_platform::ConnectionTools, name: &str| {
        tools.tools.iter().find(|t| t.action.name == name).unwrap().status
    };
    assert_eq!(status(&first.tools(acme).await.unwrap(), "upload-call"), ToolStatus::Approved);
    // Deciding on acme leaves globex as it was.
    first.decide_tools(acme, &["get-user".into()], ToolDecision::Deny).await.unwrap();
    let (on_acme, on_globex) = (first.tools(acme).await.unwrap(), first.tools(globex).await.unwrap());
    assert_eq!(status(&on_acme, "get-user"), ToolStatus::Denied);
    assert_eq!(status(&on_acme, "upload-call"), ToolStatus::Approved, "the older decision was carried over");
    assert_eq!(status(&on_globex, "get-user"), ToolStatus::Approved);
    // Pending for all: a read-only tool nobody decided on is pending.
    first.set_tool_default(globex, DefaultClassification::PendingForAll).await.unwrap();
    let on_globex = first.tools(globex).await.unwrap();
    assert_eq!(on_globex.default, DefaultClassification::PendingForAll);
    assert_eq!(status(&on_globex, "get-user"), ToolStatus::Pending);
    assert_eq!(status(&on_globex, "upload-call"), ToolStatus::Approved, "a decision outranks the default");
    first.decide_tools(acme, &["get-user".into()], ToolDecision::Reset).await.unwrap();
    assert_eq!(status(&first.tools(acme).await.unwrap(), "get-user"), ToolStatus::Approved);

    // Two operators editing one toolset at once lose nothing.
    first.create_toolset("people", "", &[]).await.unwrap();
    let tools = ["get-user", "list-users", "get-call", "get-call-transcripts", "upload-call", "list-calls"];
    let edits: Vec<_> = tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let platform = if i % 2 == 0 { first.clone() } else { second.clone() };
            let tool = tool.to_string();
            tokio::spawn(async move { platform.edit_toolset("people", &[tool], &[], None).await.map(|_| ()) })
        })
        .collect();
    for edit in edits {
        edit.await.unwrap().unwrap();
    }
    let people = first.toolsets().await.unwrap().into_iter().find(|s| s.name == "people").unwrap();
    assert_eq!(people.tools.len(), tools.len(), "{people:?}");
    let unknown = first.create_toolset("bad", "", &["no-such-tool".into()]).await.unwrap_err();
    assert!(unknown.to_string().contains("no loaded component offers a tool named `no-such-tool`"), "{unknown}");
    assert!(first.create_toolset("people", "", &[]).await.is_err(), "an existing toolset is not replaced");
    first.edit_toolset("people", &[], &["list-calls".into(), "get-call".into()], Some("who")).await.unwrap();

    // Users, profiles, and what each user sees.
    let token = first.create_mcp_user("alice", None).await.unwrap();
    let bad_name = first.create_mcp_user("al ice", None).await.unwrap_err();
    assert!(matches!(bad_name, PlatformError::Governance { .. }), "{bad_name}");
    first.create_access_profile("sales", "").await.unwrap();
    let grant_on_acme = Grant { toolset: "people".into(), connection: Some(acme.to_string()) };
    let edit =
        ProfileEdit { grant: vec![grant_on_acme.clone()], add_users: vec!["alice".into()], ..Default::default() };
    first.edit_access_profile("sales", &edit).await.unwrap();
    assert_eq!(second.mcp_user_for_token(&token).await.unwrap().as_deref(), Some("alice"));
    assert_eq!(second.mcp_user_for_token("terapi_mcp_0").await.unwrap(), None);
    let alice = Caller::User("alice".into());
    assert_eq!(
        names(second.visible_tools(acme, &alice).await.unwrap()),
        ["get-call-transcripts", "get-user", "list-users", "upload-call"]
    );
    assert!(second.visible_tools(globex, &alice).await.unwrap().is_empty(), "granted on acme only");
    assert_eq!(second.reachable_connections(&alice).await.unwrap(), [acme.to_string()]);
    assert_eq!(second.check_tool_call(acme, &alice, "list-calls").await.unwrap(), Err(Refusal::NotGranted));
    assert_eq!(second.check_tool_call(acme, &alice, "nope").await.unwrap(), Err(Refusal::Unknown));
    assert_eq!(second.check_tool_call(acme, &alice, "get-user").await.unwrap(), Ok(()));
    let local = Caller::Local("ops".into());
    assert_eq!(second.check_tool_call(acme, &local, "list-calls").await.unwrap(), Ok(()), "local sees all approved");

    // A watcher in one process hears a decision made in the other.
    let mut watched = first.watch_visible_tools(acme, &alice, Duration::from_millis(200)).await.unwrap();
    assert!(watched.borrow().contains("upload-call"));
    second.decide_tools(acme, &["upload-call".into()], ToolDecision::Deny).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), watched.wait_for(|tools| !tools.contains("upload-call")))
        .await
        .expect("the other process's decision is seen within a poll")
        .unwrap();
    assert_eq!(
        second.check_tool_call(acme, &alice, "upload-call").await.unwrap(),
        Err(Refusal::NotApproved(ToolStatus::Denied))
    );

    // A new token replaces the old one; a removed user is forgotten by
    // the profiles, so a new user of that name starts with nothing.
    let rotated = second.rotate_mcp_user_token("alice", None).await.unwrap();
    assert_eq!(first.mcp_user_for_token(&token).await.unwrap(), None);
    assert_eq!(first.mcp_user_for_token(&rotated).await.unwrap().as_deref(), Some("alice"));
    assert!(first.delete_toolset("people").await.unwrap_err().to_string().contains("sales"));
    first.delete_mcp_user("alice").await.unwrap();
    assert_eq!(first.mcp_user_for_token(&rotated).await.unwrap(), None);
    first.create_mcp_user("alice", None).await.unwrap();
    assert!(first.visible_tools(acme, &alice).await.unwrap().is_empty());

    // A token given an expiry stops working then, on every platform.
    let brief = first.create_mcp_user("bob", Some(std::time::Duration::from_secs(1))).await.unwrap();
    assert_eq!(second.mcp_user_for_token(&brief).await.unwrap().as_deref(), Some("bob"));
    let listed = second.mcp_users().await.unwrap();
    assert!(listed.iter().any(|u| u.name == "bob" && u.token_expires_at.is_some()));
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(second.mcp_user_for_token(&brief).await.unwrap(), None, "expired");
    let renewed = second.rotate_mcp_user_token("bob", None).await.unwrap();
    assert_eq!(first.mcp_user_for_token(&renewed).await.unwrap().as_deref(), Some("bob"));
    let revoke = ProfileEdit { revoke: vec![grant_on_acme], ..Default::default() };
    first.edit_access_profile("sales", &revoke).await.unwrap();
    first.delete_toolset("people").await.unwrap();
    assert!(first.toolsets().await.unwrap().is_empty());
}

#[test]
fn governance_holds_on_sqlite() {
    block_on(async {
        let dir = fresh_dir("governance-sqlite");
        governance_holds(Arc::new(platform_in(&dir)), Arc::new(platform_in(&dir))).await;
    });
}

#[test]
fn governance_holds_on_postgres() {
    block_on(async {
        let url = fresh_database("governance").await;
        let dir = fresh_dir("governance-postgres");
        let first = postgres_platform(&url, &dir, providers().clone(), loopback_runtime()).await;
        let second = postgres_platform(&url, &dir, providers().clone(), loopback_runtime()).await;
        governance_holds(Arc::new(first), Arc::new(second)).await;
    });
}
