//! Gong's limits and a misbehaving remote: rate limits, retries, budgets.
//! Timing is asserted on the fake's recorded arrival times, not on a
//! stopwatch in the test.

use std::sync::Arc;
use std::time::Duration;

use terapi_e2e::fake_gong::{FakeGongConfig, Fault, fixtures};
use terapi_e2e::terapi_host::{EgressError, Error, Method, OutboundRequest, ProviderFailure, Providers, RuntimeConfig};
use terapi_e2e::terapi_platform::{PlatformError, StoredSyncOptions};
use terapi_e2e::*;

fn session_for(gong: &terapi_e2e::fake_gong::FakeGong, providers: &Providers) -> terapi_host::Session {
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
fn a_retry_after_given_as_an_http_date_is_waited_for() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        // An HTTP date has whole seconds: two ahead is at least one away.
        gong.inject(1, Fault::TooManyRequestsUntil { secs_ahead: 2 });
        let session = session_for(&gong, providers());
        session.verify().await.unwrap();
        let requests = gong.requests();
        assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
        let waited = requests[1].at.duration_since(requests[0].at);
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the date Gong named");
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
        assert_eq!(gong.busiest_second(), 3);
        let total = arrivals[19].0.duration_since(arrivals[0].0);
        assert!(total >= Duration::from_millis(19 * 1000 / 3), "20 calls in {total:?}");
    });
}

#[test]
fn a_spent_daily_budget_stops_a_sync_at_a_page_boundary_and_says_when_it_resets() {
    block_on(async {
        let text = terapi_e2e::PROVIDERS_YAML.replacen("per_day: 10000", "per_day: 3", 1);
        let providers = Providers::parse(&text, "providers.yaml").unwrap();
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
        let connection = connection(&gong);
        let dir = fresh_dir("budget");
        let platform = platform_with(&dir, providers.clone(), loopback_runtime());
        // Saving the connection verifies it: one request of the three.
        platform.create_connection(&connection).await.unwrap();

        let options = StoredSyncOptions::default();
        let error = platform.run_sync(&connection.id, "users", &options, &mut |_: &_| {}).await.unwrap_err();
        let PlatformError::Host(Error::Provider(ProviderFailure::Http(EgressError::RateLimited(message)))) = &error
        else {
            panic!("{error:?}")
        };
        assert!(message.contains("daily budget of 3 requests") && message.contains("resets at 00:00 UTC"), "{message}");
        assert_eq!(gong.requests().len(), 3, "the fourth request never left the host");
        let state = &platform.store().sync_states(&connection.id).await.unwrap()[0];
        assert_eq!(state.records, 200);
        assert!(state.checkpoint.is_some(), "resumable from the last committed page");

        // The same budget covers actions, and any other platform on the
        // same store (another process) too.
        let session = platform.session(&connection.id).await.unwrap();
        let error =
            session.run_action("get-user", &format!(r#"{{"id":"{}"}}"#, fixtures::user_id(1))).await.unwrap_err();
        assert!(error.to_string().contains("daily budget"), "{error}");
        let other = platform_with(&dir, providers, loopback_runtime());
        let error = other.verify(&connection.id).await.unwrap_err();
        assert!(error.to_string().contains("daily budget"), "{error}");
        assert_eq!(gong.requests().len(), 3);
    });
}

#[test]
fn two_platforms_on_one_store_keep_gongs_rate_together() {
    block_on(async {
        // This fake enforces Gong's limit: a 429 would show the host broke it.
        let config =
            FakeGongConfig { rate_limit_per_second: Some(3), users: fixtures::users(5), ..FakeGongConfig::default() };
        let gong = start_gong(config).await;
        let dir = fresh_dir("shared-rate");
        let (a, b) = (platform_in(&dir), platform_in(&dir));
        // Two connections to one tenant (one base URL): one budget.
        let (first, second) = (connection(&gong), connection(&gong));
        a.create_connection(&first).await.unwrap();
        b.create_connection(&second).await.unwrap();
        let (a, b) = (a.session(&first.id).await.unwrap(), b.session(&second.id).await.unwrap());
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..12 {
            let session = if i % 2 == 0 { a.clone() } else { b.clone() };
            let input = format!(r#"{{"id":"{}"}}"#, fixtures::user_id(i % 5));
            calls.spawn(async move { session.run_action("get-user", &input).await });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap().unwrap();
        }
        let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200; 14], "two verifies and twelve calls, none answered 429 or retried");
        assert_eq!(gong.busiest_second(), 3);
    });
}

#[test]
fn a_provider_that_does_not_answer_fails_once_with_no_answer_not_after_retries() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        gong.set_delay(Duration::from_secs(30));
        let runtime = terapi_host::Runtime::new(RuntimeConfig {
            egress: terapi_host::EgressLimits {
                request_timeout: Duration::from_millis(500),
                ..terapi_host::EgressLimits::default()
            },
            ..loopback_runtime()
        })
        .unwrap();
        let component = runtime.load_component(terapi_artifacts::PROVIDER_GONG).unwrap();
        let session = runtime.connect(&component, providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let error = session.verify().await.unwrap_err().to_string();
        assert!(error.contains("no answer from the provider to GET /v2/users within 0.5s"), "{error}");
        assert_eq!(gong.arrivals(), 1, "a hung provider is not asked again (each retry would wait as long)");
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

#[test]
fn an_upstream_that_answers_empty_pages_forever_is_stopped_within_the_guard() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = session_for(&gong, providers());
        for (sync, items) in [("users", "users"), ("calls", "calls")] {
            let before = gong.arrivals();
            gong.inject(1_000, Fault::EmptyPageWithNewCursor { items: items.into() });
            let mut sink = CollectingSink::default();
            let error = terapi_host::run_sync(&session, sync, None, &since_2023(), &mut sink).await.unwrap_err();
            let Error::Provider(ProviderFailure::BadResponse(message)) = &error else { panic!("{sync}: {error:?}") };
            assert!(message.contains("empty pages in a row") && message.contains("request quota"), "{message}");
            assert!(gong.arrivals() - before <= 5, "{sync}: {} requests spent", gong.arrivals() - before);
            assert_eq!(sink.records().count(), 0);
            gong.clear_faults();
        }
    });
}

#[test]
fn one_run_spends_at_most_its_request_budget_and_the_next_resumes() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..Default::default() }).await;
        let runtime =
            terapi_host::Runtime::new(RuntimeConfig { max_requests_per_run: Some(2), ..loopback_runtime() }).unwrap();
        let component = runtime.load_component(terapi_artifacts::PROVIDER_GONG).unwrap();
        let session = runtime.connect(&component, providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let mut sink = CollectingSink::default();
        let options = terapi_host::SyncOptions { modified_since: None, backfill_days: None };
        let error = terapi_host::run_sync(&session, "users", None, &options, &mut sink).await.unwrap_err();
        assert!(matches!(&error, Error::Sync(terapi_host::SyncFailure::RequestBudget { sent: 2, budget: 2, .. })));
        assert!(error.to_string().contains("resumes from page 3"), "{error}");
        assert_eq!(gong.arrivals(), 2);
        let checkpoint = sink.pages.last().and_then(|(_, c)| c.clone());
        let run = terapi_host::run_sync(&session, "users", checkpoint, &options, &mut sink).await.unwrap();
        assert!(run.done);
        assert_eq!(sink.records().count(), 250, "every user once over the two runs");
    });
}

fn since_2023() -> terapi_host::SyncOptions {
    terapi_host::SyncOptions { modified_since: Some("2023-01-01T00:00:00Z".into()), backfill_days: None }
}

#[test]
fn a_page_just_under_the_response_cap_fits_in_the_guest() {
    block_on(async {
        // 100 calls of ~300 KB each, as many small objects with numbers
        // (the costliest shape to parse, as a transcript's sentences are):
        // a ~30 MB answer, under the 32 MiB cap.
        let calls: Vec<serde_json::Value> = (0..100)
            .map(|i| {
                let mut call = fixtures::call(i);
                call["customData"] = serde_json::Value::Array(
                    (0..10_000).map(|j| serde_json::json!({"s": j, "e": j + 1, "t": "ok"})).collect(),
                );
                call
            })
            .collect();
        let gong = start_gong(FakeGongConfig { calls, ..Default::default() }).await;
        let session = session_for(&gong, providers());
        let mut sink = CollectingSink::default();
        let run = terapi_host::run_sync(&session, "calls", None, &since_2023(), &mut sink).await;
        let size = gong.requests().iter().map(|r| r.body.len()).max();
        run.unwrap_or_else(|e| panic!("{e} (largest request body {size:?})"));
        assert_eq!(sink.records().count(), 100);
    });
}

#[test]
fn two_access_keys_of_one_company_on_the_shared_host_share_its_budget() {
    block_on(async {
        let gong = start_gong(FakeGongConfig {
            more_keys: vec![("second-key".into(), "second-secret".into())],
            ..FakeGongConfig::default()
        })
        .await;
        // The fake plays the shared default host (api.gong.io), which many
        // companies use: the base URL cannot tell them apart.
        let text = PROVIDERS_YAML.replacen("|| https://api.gong.io", &format!("|| {}", gong.base_url()), 1).replacen(
            "per_day: 10000",
            "per_day: 3",
            1,
        );
        let providers = Providers::parse(&text, "providers.yaml").unwrap();
        let platform = platform_with(&fresh_dir("company-budget"), providers, loopback_runtime());
        let key = |id: &str, key: &str, secret: &str| terapi_host::Connection {
            id: id.into(),
            provider: "gong".into(),
            credentials: terapi_host::Credentials::Basic {
                username: key.into(),
                password: terapi_host::Secret::new(secret),
            },
            config: Default::default(),
        };
        let (key_secret, first_key) = (gong.config().access_key_secret.clone(), gong.config().access_key.clone());
        platform.create_connection(&key("first", &first_key, &key_secret)).await.unwrap();
        platform.create_connection(&key("second", "second-key", "second-secret")).await.unwrap();
        let saved = platform.store().connection("second").await.unwrap();
        assert_eq!(
            saved.config.get(terapi_host::ACCOUNT_CONFIG_KEY).map(String::as_str),
            Some(format!("gong-company-of-user-{}", fixtures::user_id(0)).as_str()),
            "the company is learnt from Gong's answer"
        );
        let (first, second) = (platform.session("first").await.unwrap(), platform.session("second").await.unwrap());
        let input = format!(r#"{{"id":"{}"}}"#, fixtures::user_id(1));
        for session in [&first, &second, &first] {
            session.run_action("get-user", &input).await.unwrap();
        }
        // The company's third request of the day was its last.
        let error = second.run_action("get-user", &input).await.unwrap_err().to_string();
        assert!(error.contains("daily budget of 3 requests"), "{error}");
    });
}

/// A users page as Gong answers it, with this cursor and total.
fn users_page_body(users: &[serde_json::Value], total: usize, cursor: Option<&str>) -> String {
    let mut records =
        serde_json::json!({ "totalRecords": total, "currentPageSize": users.len(), "currentPageNumber": 0 });
    if let Some(cursor) = cursor {
        records["cursor"] = cursor.into();
    }
    serde_json::json!({ "requestId": "r", "records": records, "users": users }).to_string()
}

#[test]
fn a_cursor_that_repeats_is_stopped_on_its_first_repeat() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = session_for(&gong, providers());
        let users = fixtures::users(2);
        gong.inject(1_000, Fault::Body(users_page_body(&users, 4, Some("same-cursor"))));
        let mut sink = CollectingSink::default();
        let error = terapi_host::run_sync(&session, "users", None, &since_2023(), &mut sink).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("same cursor it gave the page before"), "{message}");
        assert!(!message.contains("new cursor"), "the error says what happened: {message}");
        assert_eq!(gong.arrivals(), 2, "stopped on the first repeat, not by the page cap");
        assert_eq!(sink.records().count(), 2, "the first page is kept");
    });
}

#[test]
fn a_listing_in_pages_of_twenty_is_read_to_its_end() {
    block_on(async {
        let gong =
            start_gong(FakeGongConfig { users: fixtures::users(1_200), page_size: 20, ..FakeGongConfig::default() })
                .await;
        let session = session_for(&gong, providers());
        let mut sink = CollectingSink::default();
        let run = terapi_host::run_sync(&session, "users", None, &since_2023(), &mut sink).await.unwrap();
        assert!(run.done);
        assert_eq!((run.pages, sink.records().count()), (60, 1_200));
    });
}

#[test]
fn a_page_of_a_million_tiny_records_is_refused_clearly_and_one_of_the_stated_limit_fits() {
    block_on(async {
        let gong = start_gong(FakeGongConfig::default()).await;
        let session = session_for(&gong, providers());
        // ~16 MB: a million users of a dozen bytes each.
        let tiny: Vec<serde_json::Value> = (0..1_000_000).map(|i| serde_json::json!({ "id": i.to_string() })).collect();
        gong.inject(1, Fault::Body(users_page_body(&tiny, tiny.len(), None)));
        let mut sink = CollectingSink::default();
        let error = terapi_host::run_sync(&session, "users", None, &since_2023(), &mut sink).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("more than 100000 records"), "a clear refusal, not a memory error: {message}");

        // The stated limit: 100,000 records in a page under the 32 MiB cap fit.
        let users: Vec<serde_json::Value> = (0..100_000)
            .map(|i| {
                serde_json::json!({
                    "id": i.to_string(),
                    "emailAddress": format!("user{i}@example.com"),
                    "firstName": "Ada", "lastName": "Lovelace", "title": "Account Executive with a long title",
                    "active": true, "created": "2024-01-01T00:00:00Z", "phoneNumber": "+1 555 0100",
                    "managerId": "1", "spokenLanguages": [{"language": "en-US", "primary": true}],
                })
            })
            .collect();
        let body = users_page_body(&users, users.len(), None);
        assert!(body.len() > 24 << 20 && body.len() < 32 << 20, "{} bytes", body.len());
        gong.inject(1, Fault::Body(body));
        let mut sink = CollectingSink::default();
        let run = terapi_host::run_sync(&session, "users", None, &since_2023(), &mut sink).await.unwrap();
        assert!(run.done);
        assert_eq!(sink.records().count(), 100_000);
    });
}
