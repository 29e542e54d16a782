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
        ["terapi:provider/http@0.6.0", "terapi:provider/log@0.6.0", "terapi:provider/types@0.6.0"],
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
        // `verify` runs `check-config` first, which may not send either.
        let error = session.verify().await.unwrap_err();
        assert!(error.to_string().contains("auth.check-config may not make HTTP requests"), "{error}");
        assert!(gong.requests().is_empty(), "none reached Gong: {:?}", gong.requests());

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

/// The same component in a second host: transpiled by jco and run in Node
/// by `tests/node/jco-host`, whose imports follow HOST.md (not terapi's
/// Rust). It must page, verify, act and proxy as in terapi, keep the
/// conformance cases, and keep Gong's rate.
#[test]
fn the_component_runs_in_a_second_host_jco_in_node() {
    let node_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node");
    assert!(
        node_dir.join("node_modules/@bytecodealliance/jco-transpile").exists(),
        "tests/node has no node_modules: run ./scripts/test.sh (it runs `npm ci --prefix tests/node`)"
    );
    let rate =
        providers().get("gong").unwrap().proxy.as_ref().unwrap().rate_limit.expect("providers.yaml sets Gong's rate");
    let per_second = rate.per_second.expect("Gong has a rate per second");
    let users = 230;
    let config = FakeGongConfig {
        users: terapi_e2e::fake_gong::fixtures::users(users),
        rate_limit_per_second: Some(per_second as usize),
        ..FakeGongConfig::default()
    };
    let (gong, description) = block_on(async {
        let gong = start_gong(config).await;
        let description = host().describe(gong_component()).await.unwrap();
        (gong, description)
    });
    let names = |names: Vec<&str>| names.join(",");
    let dir = fresh_dir("jco-host");
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("provider_gong.wasm");
    std::fs::write(&wasm, terapi_artifacts::PROVIDER_GONG).unwrap();

    let output = std::process::Command::new("node")
        .current_dir(&node_dir)
        .args(["--test", "--test-reporter=spec", "jco-host.test.mjs"])
        .env("PROVIDER_WASM", &wasm)
        .env("GONG_BASE_URL", gong.base_url())
        .env("GONG_ACCESS_KEY", &gong.config().access_key)
        .env("GONG_ACCESS_KEY_SECRET", &gong.config().access_key_secret)
        .env("GONG_USER_COUNT", users.to_string())
        .env("GONG_RATE_PER_SECOND", per_second.to_string())
        .env("GONG_RATE_PER_DAY", rate.per_day.unwrap_or(0).to_string())
        .env("EXPECTED_SYNCS", names(description.syncs.iter().map(|s| s.name.as_str()).collect()))
        .env("EXPECTED_ACTIONS", names(description.actions.iter().map(|a| a.name.as_str()).collect()))
        .output()
        .expect("node runs (Node.js 20 or later)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    // What Gong saw of the second host: its rate kept, no 429, the
    // credential as Gong expects it.
    let requests = gong.requests();
    assert!(requests.len() > 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.status != 429), "no request was over Gong's rate");
    assert!(gong.busiest_second() <= per_second as usize, "{}", gong.busiest_second());
    assert!(requests.iter().filter(|r| r.status == 401).count() == 1, "only the wrong secret was refused");
}
