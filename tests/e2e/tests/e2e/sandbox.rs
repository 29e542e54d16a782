//! The sandbox against a hostile component: runaway CPU and memory, panics,
//! looping pagination, oversized answers, slow remotes, redirects and WASI
//! access are all stopped with a clear error while the host carries on.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use terapi_e2e::fake_gong::{FakeGongConfig, Fault, fixtures};
use terapi_e2e::terapi_host::{
    EgressError, EgressLimits, Error, GuestFailure, ProviderComponent, ProviderFailure, Runtime, RuntimeConfig,
    Session, SyncFailure, SyncOptions,
};
use terapi_e2e::*;

/// A runtime with tight limits, so each attack is stopped quickly.
fn strict() -> &'static Runtime {
    static STRICT: OnceLock<Runtime> = OnceLock::new();
    STRICT.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            max_memory_bytes: 64 << 20,
            cpu_budget: Duration::from_millis(300),
            call_timeout: Duration::from_secs(2),
            egress: EgressLimits { max_response_bytes: 64 << 10, ..EgressLimits::default() },
            ..loopback_runtime()
        })
        .unwrap()
    })
}

fn hostile(gong: &terapi_e2e::fake_gong::FakeGong) -> Session {
    static COMPONENT: OnceLock<ProviderComponent> = OnceLock::new();
    let component = COMPONENT.get_or_init(|| strict().load_component(terapi_artifacts::GUEST_HOSTILE).unwrap());
    strict().connect(component, providers().get("gong").unwrap(), &connection(gong)).unwrap()
}

fn gong_strict(gong: &terapi_e2e::fake_gong::FakeGong) -> Session {
    static COMPONENT: OnceLock<ProviderComponent> = OnceLock::new();
    let component = COMPONENT.get_or_init(|| strict().load_component(terapi_artifacts::PROVIDER_GONG).unwrap());
    strict().connect(component, providers().get("gong").unwrap(), &connection(gong)).unwrap()
}

#[test]
fn a_guest_that_loops_forever_is_stopped_and_the_host_carries_on() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let error = hostile(&gong).run_action("spin", "").await.unwrap_err();
        assert!(matches!(error, Error::Guest(GuestFailure::CpuBudget(_))), "{error:?}");
        assert!(error.to_string().contains("CPU budget"), "{error}");
        gong_strict(&gong).verify().await.unwrap();
    });
}

#[test]
fn a_guest_that_allocates_without_bound_is_stopped() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let error = hostile(&gong).run_action("allocate", "").await.unwrap_err();
        assert!(matches!(error, Error::Guest(GuestFailure::Memory(64))), "{error:?}");
        gong_strict(&gong).verify().await.unwrap();
    });
}

#[test]
fn a_panicking_guest_is_a_clear_error_with_its_message() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let error = hostile(&gong).run_action("panic", "").await.unwrap_err();
        let Error::Guest(GuestFailure::Crashed(message)) = &error else { panic!("{error:?}") };
        assert!(message.contains("panics on purpose"), "{message}");
    });
}

#[test]
fn a_repeating_cursor_ends_the_sync_with_an_error_not_a_hang() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let mut sink = CollectingSink::default();
        let options = SyncOptions { modified_since: None, backfill_days: None };
        let error = terapi_host::run_sync(&hostile(&gong), "same-cursor", None, &options, &mut sink).await.unwrap_err();
        assert!(matches!(error, Error::Sync(SyncFailure::RepeatingCheckpoint { page: 2, .. })), "{error:?}");
        assert_eq!(sink.pages.len(), 1, "the looping page was not accepted");
    });
}

#[test]
fn an_oversized_answer_is_refused() {
    block_on(async {
        let gong =
            start_gong(FakeGongConfig { users: fixtures::users(500), page_size: 500, ..FakeGongConfig::default() })
                .await;
        let error = hostile(&gong).run_action("fetch", "/v2/users").await.unwrap_err();
        assert!(matches!(&error, Error::Provider(ProviderFailure::Http(EgressError::TooLarge(_)))), "{error:?}");
    });
}

#[test]
fn a_call_that_takes_too_long_is_stopped() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        gong.set_delay(Duration::from_secs(5));
        let error = gong_strict(&gong).verify().await.unwrap_err();
        assert!(matches!(error, Error::Guest(GuestFailure::WallTime(_))), "{error:?}");
    });
}

#[test]
fn redirects_are_not_followed_with_the_credential() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let elsewhere = start_gong(FakeGongConfig::default()).await;
        gong.redirect_next(&format!("{}/v2/users", elsewhere.base_url()));
        let answer: Value =
            serde_json::from_str(&hostile(&gong).run_action("fetch", "/v2/users").await.unwrap()).unwrap();
        assert_eq!(answer["status"], 302, "the guest sees the redirect");
        assert!(elsewhere.requests().is_empty(), "nothing went to the other host");
    });
}

#[test]
fn the_guest_sees_no_env_args_files_or_network() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        // The host has variables to leak (cargo sets CARGO_* for every test);
        // setting one here would race the other tests' threads reading env.
        assert!(std::env::vars_os().next().is_some(), "the host has variables the guest must not see");
        let probe: Value = serde_json::from_str(&hostile(&gong).run_action("probe-wasi", "").await.unwrap()).unwrap();
        assert_eq!(probe["env"], 0);
        assert_eq!(probe["args"], 0);
        assert_eq!(probe["etc_passwd"], false);
        assert_eq!(probe["cwd_listing"], false);
        assert_eq!(probe["tcp"], 0);
    });
}

#[test]
fn absurdly_nested_json_is_refused_within_the_guest_stack() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        // serde_json stops at 128 levels; the guest's stack must hold that many.
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));

        let input = format!(r#"{{"workspaceId": {}}}"#, nested(100_000));
        let error = session.run_action("list-trackers", &input).await.unwrap_err();
        assert!(matches!(error, Error::Provider(ProviderFailure::InvalidInput(_))), "{error:?}");
        assert!(error.to_string().contains("recursion limit"), "{error}");

        gong.inject(
            1,
            Fault::Body(format!(r#"{{"records":{{}},"keywordTrackers":[{{"trackerId":"1","x":{}}}]}}"#, nested(100))),
        );
        let options = SyncOptions { modified_since: None, backfill_days: None };
        let mut sink = CollectingSink::default();
        terapi_host::run_sync(&session, "trackers", None, &options, &mut sink).await.unwrap();
        assert_eq!(sink.records().count(), 1, "deep but within serde_json's 128 levels is fine");

        gong.inject(1, Fault::Body(format!(r#"{{"records":{{}},"keywordTrackers":{}}}"#, nested(100_000))));
        let error = terapi_host::run_sync(&session, "trackers", None, &options, &mut sink).await;
        let error = error.unwrap_err().to_string();
        assert!(error.contains("recursion limit") && error.contains("/v2/settings/trackers"), "{error}");
    });
}
