//! What the platform layer adds around the host, and the contract's
//! optional parts: secrets kept out of what is stored, tools governed by the
//! component's read-only flag, components that lack optional exports, and a
//! compiled-code cache that must be private.

use terapi_e2e::fake_gong::{FakeGongConfig, Fault, fixtures};
use terapi_e2e::terapi_host::{Error, Method, OutboundRequest, ProviderFailure, Runtime, RuntimeConfig, SyncOptions};
use terapi_e2e::terapi_platform::{Caller, StoredSyncOptions, ToolCall, ToolDecision, ToolStatus};
use terapi_e2e::*;

#[test]
fn a_credential_the_remote_echoes_reaches_no_error_and_nothing_stored() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(150), ..FakeGongConfig::default() }).await;
        let dir = fresh_dir("echo");
        let platform = platform_in(&dir);
        let connection = connection(&gong);
        platform.create_connection(&connection).await.unwrap();
        let basic = {
            use base64::Engine as _;
            let config = gong.config();
            let pair = format!("{}:{}", config.access_key, config.access_key_secret);
            base64::engine::general_purpose::STANDARD.encode(pair)
        };

        gong.inject(1, Fault::EchoAuthorization(400));
        let error = platform
            .run_sync(&connection.id, "users", &StoredSyncOptions::default(), &mut |_: &_| {})
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("400") && message.contains("Authorization: Basic <redacted>"), "{message}");
        assert!(!message.contains(&basic), "{message}");
        let state = &platform.store().sync_states(&connection.id).await.unwrap()[0];
        let stored = state.last_error.as_deref().unwrap();
        assert!(stored.contains("<redacted>") && !stored.contains(&basic), "{stored}");

        // Through the proxy and an action too: the body is the caller's to
        // read, but an error the component builds from it is scrubbed.
        gong.inject(1, Fault::EchoAuthorization(403));
        let session = platform.session(&connection.id).await.unwrap();
        let error =
            session.run_action("get-user", &format!(r#"{{"id":"{}"}}"#, fixtures::user_id(1))).await.unwrap_err();
        assert!(!error.to_string().contains(&basic), "{error}");
        drop((platform, session));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(!bytes.windows(basic.len()).any(|w| w == basic.as_bytes()), "echoed credential in {path:?}");
        }
    });
}

#[test]
fn tools_follow_the_components_read_only_flag_and_every_call_is_audited() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(3), ..FakeGongConfig::default() }).await;
        let platform = platform_in(&fresh_dir("tools"));
        let connection = connection(&gong);
        platform.create_connection(&connection).await.unwrap();
        let tools = platform.tools(&connection.id).await.unwrap().tools;
        let status = |name: &str| tools.iter().find(|t| t.action.name == name).map(|t| t.status).unwrap();
        // Reads start approved, whatever their name; writes wait.
        assert_eq!(status("get-user"), ToolStatus::Approved);
        assert_eq!(status("get-call-transcripts"), ToolStatus::Approved, "a POST that only reads");
        assert_eq!(status("upload-call"), ToolStatus::Pending);
        assert_eq!(status("data-privacy-erase"), ToolStatus::Pending);
        assert!(tools.iter().filter(|t| !t.action.read_only).all(|t| t.status == ToolStatus::Pending));

        let session = platform.session(&connection.id).await.unwrap();
        let agent = Caller::Local("agent".into());
        let call = |tool: &'static str, input: &'static str| ToolCall {
            connection_id: &connection.id,
            caller: &agent,
            tool,
            input,
        };
        let refused =
            platform.call_tool(&session, call("upload-call", "{}"), std::future::pending()).await.unwrap_err();
        assert!(
            refused.to_string().contains(&format!("terapi tool approve --connection {} upload-call", connection.id)),
            "{refused}"
        );
        let error = platform
            .decide_tools(&connection.id, &["upload-call".into(), "no-such-tool".into()], ToolDecision::Approve)
            .await;
        assert!(error.unwrap_err().to_string().contains("no action named `no-such-tool`"));
        assert_eq!(
            platform
                .tools(&connection.id)
                .await
                .unwrap()
                .tools
                .iter()
                .find(|t| t.action.name == "upload-call")
                .unwrap()
                .status,
            ToolStatus::Pending,
            "nothing was changed by a list with an unknown name"
        );
        platform.decide_tools(&connection.id, &["get-user".into()], ToolDecision::Deny).await.unwrap();
        assert!(platform.call_tool(&session, call("get-user", "{}"), std::future::pending()).await.is_err());
        let audit = platform.store().audit_entries(10).await.unwrap();
        assert_eq!(audit.iter().map(|e| e.status.as_str()).collect::<Vec<_>>(), ["refused", "refused"]);
        assert_eq!(
            audit.iter().map(|e| e.detail.as_deref().unwrap()).collect::<Vec<_>>(),
            ["pending review on this connection", "denied on this connection"]
        );
        assert!(audit.iter().all(|e| e.caller == "local:agent"));
        assert!(gong.requests().len() == 1, "only the verify reached Gong");
    });
}

#[test]
fn a_component_without_optional_exports_loads_and_says_what_it_does_not_support() {
    block_on(async {
        // The boundary benchmark's component exports auth, sync and action
        // only (world `sync-provider`).
        let runtime = Runtime::new(loopback_runtime()).unwrap();
        let component = runtime.load_component(terapi_artifacts::GUEST_BOUNDARY).unwrap();
        assert_eq!(component.exports(), ["auth", "sync", "action"]);
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = runtime.connect(&component, providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let error = session.handle_webhook(b"{}").await.unwrap_err();
        assert!(matches!(error, Error::Provider(ProviderFailure::NotSupported(_))), "{error:?}");
        assert!(error.to_string().contains("does not export `webhook`"), "{error}");
        // No `proxy` export: the request goes out as given, under the egress rules.
        let request = OutboundRequest {
            method: Method::Get,
            path: "/v2/users".into(),
            query: vec![],
            headers: vec![],
            body: None,
            idempotent: true,
        };
        assert_eq!(session.proxy(request).await.unwrap().status, 200);
        let page = session.run_sync_page("any", Some("3"), &SyncOptions { modified_since: None, backfill_days: None });
        assert_eq!(page.await.unwrap().records.len(), 3);
    });
}

#[cfg(unix)]
#[test]
fn a_compiled_code_cache_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = fresh_dir("open-cache");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(dir.clone()), ..loopback_runtime() }).unwrap();
    let error = runtime.load_component(terapi_artifacts::PROVIDER_GONG).err().unwrap().to_string();
    assert!(error.contains("writable by other users") && error.contains("chmod go-w"), "{error}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing was loaded from or written to it");

    // A private cache works, and a cached file made writable by others is refused too.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    runtime.load_component(terapi_artifacts::PROVIDER_GONG).unwrap();
    let cached = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o666)).unwrap();
    let error = runtime.load_component(terapi_artifacts::PROVIDER_GONG).err().unwrap().to_string();
    assert!(error.contains("writable by other users"), "{error}");

    // A cache that belongs to someone else (only root can make one here).
    std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o600)).unwrap();
    if std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).is_ok() {
        let error = runtime.load_component(terapi_artifacts::PROVIDER_GONG).err().unwrap().to_string();
        assert!(error.contains("belongs to another user (uid 65534)"), "{error}");
    }
}
