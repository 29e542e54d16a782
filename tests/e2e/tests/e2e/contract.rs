//! The contract other hosts rely on (HOST.md): what a component imports,
//! which exports may make HTTP requests, and how a guest without std
//! reports a crash.

use terapi_e2e::fake_gong::FakeGongConfig;
use terapi_e2e::terapi_host::{Error, GuestFailure, Method, OutboundRequest, ProviderFailure};
use terapi_e2e::*;

#[test]
fn the_gong_component_imports_only_what_the_world_declares() {
    let mut imports = gong_component().imports();
    imports.sort();
    assert_eq!(
        imports,
        ["terapi:provider/http@0.4.0", "terapi:provider/log@0.4.0", "terapi:provider/types@0.4.0"],
        "a host of the world needs nothing else: no WASI"
    );
    // The check tells the two apart: a component built with std imports WASI.
    let hostile = hostile_component().imports();
    assert!(hostile.iter().any(|i| i.starts_with("wasi:cli/stderr")), "{hostile:?}");
}

#[test]
fn exports_that_the_contract_keeps_off_the_network_cannot_send() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session =
            host().connect(hostile_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();

        let error = session.handle_webhook(b"{}").await.unwrap_err();
        assert!(
            matches!(&error, Error::Provider(ProviderFailure::Http(_)))
                && error.to_string().contains("webhook.handle may not make HTTP requests"),
            "{error:?}"
        );

        let request = OutboundRequest {
            method: Method::Get,
            path: "/hostile/send-from-prepare".into(),
            query: vec![],
            headers: vec![],
            body: None,
            idempotent: true,
        };
        let error = session.proxy(request).await.unwrap_err();
        assert!(error.to_string().contains("proxy.prepare may not make HTTP requests"), "{error}");
        assert!(gong.requests().is_empty(), "neither reached Gong: {:?}", gong.requests());

        // The exports that may send still do.
        session.run_action("fetch", "/v2/users").await.unwrap();
        assert_eq!(gong.requests().len(), 1);
    });
}

#[test]
fn a_guest_without_std_reports_its_crash_through_log_without_secrets() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let secret = gong.config().access_key_secret.clone();
        let session =
            host().connect(hostile_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let error = session.run_action("log-then-trap", &format!("secret {secret}")).await.unwrap_err();
        let Error::Guest(GuestFailure::Crashed(message)) = &error else { panic!("{error:?}") };
        assert!(message.contains("traps on purpose"), "the last words are in the report: {message}");
        assert!(!message.contains(&secret), "and scrubbed: {message}");
    });
}
