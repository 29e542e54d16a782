//! Gong's limits and a misbehaving remote: rate limits, retries, budgets.
//! Timing is asserted on the fake's recorded arrival times, not on a
//! stopwatch in the test.

use std::sync::Arc;
use std::time::Duration;

use terapi_e2e::fake_gong::{FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{EgressError, Error, Method, OutboundRequest, ProviderFailure, Providers, SyncOptions};
use terapi_e2e::terapi_store::{MasterKey, Store};
use terapi_e2e::*;

fn session_for(gong: &terapi_e2e::fake_gong::FakeGong, providers: &Providers) -> terapi_host::Session<'static> {
    host().connect(gong_component(), providers.get("gong").unwrap(), &connection(gong)).unwrap()
}

#[test]
fn a_429_is_retried_after_retry_after() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        gong.throttle_next(1, 1);
        let session = session_for(&gong, providers());
        session.verify().await.unwrap();
        let requests = gong.requests();
        assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
        let waited = requests[1].at.duration_since(requests[0].at);
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before Retry-After");
    });
}

#[test]
fn a_burst_of_20_calls_keeps_to_3_a_second() {
    block_on(async {
        // This fake enforces Gong's limit: a 429 would show the host broke it.
        let config =
            FakeGongConfig { rate_limit_per_second: Some(3), users: fixtures::users(5), ..FakeGongConfig::default() };
        let gong = start_gong(config).await;
        let session = Arc::new(session_for(&gong, providers()));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..20 {
            let session = session.clone();
            let input = format!(r#"{{"id":"{}"}}"#, fixtures::user_id(i % 5));
            calls.spawn(async move { session.run_action("get-user", &input).await });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap().unwrap();
        }
        let mut arrivals: Vec<_> = gong.requests().iter().map(|r| (r.at, r.status)).collect();
        arrivals.sort();
        assert_eq!(arrivals.len(), 20, "no retries were needed");
        assert!(arrivals.iter().all(|(_, status)| *status == 200), "the fake answered 429: the limit was broken");
        for window in arrivals.windows(4) {
            let span = window[3].0.duration_since(window[0].0);
            assert!(span >= Duration::from_secs(1), "4 requests within {span:?}");
        }
        let total = arrivals[19].0.duration_since(arrivals[0].0);
        assert!(total >= Duration::from_millis(19 * 1000 / 3), "20 calls in {total:?}");
    });
}

#[test]
fn a_spent_daily_budget_stops_a_sync_at_a_page_boundary_and_says_when_it_resets() {
    block_on(async {
        let text = terapi_e2e::PROVIDERS_YAML.replacen("per_day: 10000", "per_day: 2", 1);
        let providers = Providers::parse(&text, "providers.yaml").unwrap();
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
        let connection = connection(&gong);
        let session = host().connect(gong_component(), providers.get("gong").unwrap(), &connection).unwrap();
        let dir = std::env::temp_dir().join(format!("terapi-e2e-{}-budget", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, MasterKey::from_env_or_file(&dir).unwrap()).unwrap();
        store.create_connection(&connection).unwrap();

        let start = store.begin_sync(&connection.id, "users", "GongUser", false).unwrap();
        let mut sink = store.page_sink(&connection.id, "users", "GongUser");
        let options = SyncOptions { modified_since: None, backfill_days: None };
        let error = terapi_host::run_sync(&session, "users", start, &options, &mut sink).await.unwrap_err();
        let Error::Provider(ProviderFailure::Http(EgressError::RateLimited(message))) = &error else {
            panic!("{error:?}")
        };
        assert!(message.contains("daily budget of 2 requests") && message.contains("resets at 00:00 UTC"), "{message}");
        assert_eq!(gong.requests().len(), 2, "the third request never left the host");
        let state = &store.sync_states(&connection.id).unwrap()[0];
        assert_eq!(state.records, 200);
        assert!(state.checkpoint.is_some(), "resumable from the last committed page");

        // The same budget covers actions and the proxy of this connection.
        let error =
            session.run_action("get-user", &format!(r#"{{"id":"{}"}}"#, fixtures::user_id(1))).await.unwrap_err();
        assert!(error.to_string().contains("daily budget"), "{error}");
    });
}

#[test]
fn server_errors_are_retried_only_for_idempotent_requests() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = session_for(&gong, providers());
        gong.fail_next(2, 503);
        session.verify().await.unwrap();
        assert_eq!(gong.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [503, 503, 200]);

        // A POST that may change data is not retried blindly.
        gong.fail_next(1, 503);
        let post = OutboundRequest {
            method: Method::Post,
            path: "/v2/calls".into(),
            query: vec![],
            headers: vec![],
            body: Some(b"{}".to_vec()),
            idempotent: false,
        };
        let response = session.proxy(post).await.unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(gong.requests().len(), 4, "one attempt only");
    });
}

#[test]
fn a_long_retry_after_is_a_clear_rate_limit_error() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        gong.throttle_next(1, 3600);
        let error = session_for(&gong, providers()).verify().await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("429") && message.contains("3600s") && message.contains("try again later"),
            "{message}"
        );
        assert_eq!(gong.requests().len(), 1);
    });
}
