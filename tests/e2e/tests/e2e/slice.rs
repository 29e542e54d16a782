//! The vertical slice end to end: the real Gong component in the real
//! wasmtime host, over real HTTP to a fake Gong on loopback.

use serde_json::{Value, json};
use terapi_e2e::fake_gong::{FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{EgressError, Error, Method, OutboundRequest, ProviderFailure, SyncOptions};
use terapi_e2e::*;

fn config(users: usize, calls: usize) -> FakeGongConfig {
    FakeGongConfig { users: fixtures::users(users), calls: fixtures::calls(calls), ..FakeGongConfig::default() }
}

#[test]
fn verify_accepts_the_right_credential() {
    block_on(async {
        let gong = start_gong(config(42, 0)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let verified = session.verify().await.unwrap();
        assert_eq!(verified.summary, "credential accepted; 42 users visible");
        let requests = gong.requests();
        assert_eq!(requests.len(), 1, "verify makes one cheap call");
        assert_eq!(requests[0].path, "/v2/users");
        assert_eq!(requests[0].status, 200);
    });
}

#[test]
fn verify_with_a_wrong_secret_says_so_without_any_secret() {
    block_on(async {
        let gong = start_gong(config(3, 0)).await;
        let wrong = "wrong-secret-value-123";
        let session = host()
            .connect(gong_component(), providers().get("gong").unwrap(), &connection_with_secret(&gong, wrong))
            .unwrap();
        let error = session.verify().await.unwrap_err();
        assert!(matches!(error, Error::Provider(ProviderFailure::Unauthorized(_))), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("check the access key and access key secret"), "{message}");
        for text in [message.clone(), format!("{error:?}")] {
            assert!(!text.contains(wrong), "the wrong secret leaked: {text}");
            assert!(!text.contains(&gong.config().access_key_secret), "the real secret leaked: {text}");
        }
        assert_eq!(gong.requests()[0].status, 401);
    });
}

#[test]
fn users_sync_over_three_pages_returns_every_record_once_in_order() {
    block_on(async {
        let gong = start_gong(config(250, 0)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let mut sink = CollectingSink::default();
        let run = terapi_host::run_sync(
            &session,
            "users",
            None,
            &SyncOptions { modified_since: None, backfill_days: None },
            &mut sink,
        )
        .await
        .unwrap();
        assert_eq!((run.pages, run.records, run.done), (3, 250, true));
        assert_eq!(sink.pages.iter().map(|(r, _)| r.len()).collect::<Vec<_>>(), [100, 100, 50]);
        let ids: Vec<String> = sink.records().map(|r| r.id.clone()).collect();
        let expected: Vec<String> = (0..250).map(fixtures::user_id).collect();
        assert_eq!(ids, expected);

        // Each record is the stable model, not Gong's raw shape.
        let first: Value = serde_json::from_str(&sink.pages[0].0[0].json).unwrap();
        assert_eq!(first["email"], "user0@example.com");
        assert_eq!(first["firstName"], "First0");
        assert!(first.get("emailAddress").is_none());

        // The fake saw the cursor of each page on the next request, and the
        // last page's checkpoint is empty.
        let requests = gong.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].query.get("cursor"), None);
        assert!(requests[1].query.contains_key("cursor") && requests[2].query.contains_key("cursor"));
        assert_ne!(requests[1].query["cursor"], requests[2].query["cursor"]);
        assert_eq!(sink.pages[2].1, None);
    });
}

#[test]
fn a_sync_resumes_from_a_checkpoint() {
    block_on(async {
        let gong = start_gong(config(250, 0)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let options = SyncOptions { modified_since: None, backfill_days: None };
        let first = session.run_sync_page("users", None, &options).await.unwrap();
        let mut sink = CollectingSink::default();
        let run =
            terapi_host::run_sync(&session, "users", first.next_checkpoint.clone(), &options, &mut sink).await.unwrap();
        assert_eq!(run.records, 150);
        assert_eq!(sink.records().next().unwrap().id, fixtures::user_id(100));
    });
}

#[test]
fn get_user_action_returns_the_mapped_user() {
    block_on(async {
        let gong = start_gong(config(5, 0)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let id = fixtures::user_id(3);
        let output = session.run_action("get-user", &json!({ "id": id }).to_string()).await.unwrap();
        let user: Value = serde_json::from_str(&output).unwrap();
        assert_eq!(
            user,
            json!({
                "id": id, "email": "user3@example.com", "firstName": "First3", "lastName": "Last3",
                "title": "Account Executive", "phoneNumber": "+1-555-0003", "active": true,
                "managerId": fixtures::user_id(0), "createdAt": fixtures::format_rfc3339(1_700_000_180)
            })
        );
        assert_eq!(gong.requests()[0].path, format!("/v2/users/{id}"));

        let missing = session.run_action("get-user", r#"{"id":"123"}"#).await.unwrap_err();
        assert!(matches!(missing, Error::Provider(ProviderFailure::NotFound(_))), "{missing:?}");
    });
}

#[test]
fn list_calls_action_filters_by_window_and_treats_no_calls_as_empty() {
    block_on(async {
        let gong = start_gong(config(1, 48)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let input = json!({ "fromDateTime": "2024-01-01T02:00:00Z", "toDateTime": "2024-01-01T05:00:00Z" });
        let output: Value =
            serde_json::from_str(&session.run_action("list-calls", &input.to_string()).await.unwrap()).unwrap();
        let ids: Vec<&str> = output["calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [fixtures::call_id(2), fixtures::call_id(3), fixtures::call_id(4)]);
        assert_eq!(output["calls"][0]["startedAt"], "2024-01-01T02:00:00Z");
        assert_eq!(output["calls"][0]["durationSeconds"], 1802);
        assert_eq!(output["nextCursor"], Value::Null);
        let seen = &gong.requests()[0];
        assert_eq!(seen.query.get("fromDateTime").map(String::as_str), Some("2024-01-01T02:00:00Z"));

        let empty = json!({ "fromDateTime": "2030-01-01T00:00:00Z" });
        let output: Value =
            serde_json::from_str(&session.run_action("list-calls", &empty.to_string()).await.unwrap()).unwrap();
        assert_eq!(output["calls"], json!([]));
        assert_eq!(gong.requests()[1].status, 404, "Gong's 'No calls found' is an empty list");
    });
}

#[test]
fn invalid_action_input_fails_before_any_request() {
    block_on(async {
        let gong = start_gong(config(1, 1)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        for (action, input, names) in [
            ("get-user", r#"{"idd":"1"}"#, "idd"),
            ("get-user", r#"{"id":"../admin"}"#, "id"),
            ("list-calls", r#"{"fromDateTime":"yesterday"}"#, "fromDateTime"),
            ("list-calls", "not json", "line 1"),
        ] {
            let error = session.run_action(action, input).await.unwrap_err();
            let Error::Provider(ProviderFailure::InvalidInput(message)) = &error else {
                panic!("{action} {input}: {error:?}")
            };
            assert!(message.contains(names), "{message}");
        }
        let unknown = session.run_action("delete-everything", "{}").await.unwrap_err();
        assert!(unknown.to_string().contains("`action list` shows the"), "{unknown}");
        assert!(gong.requests().is_empty(), "no request for invalid input");
    });
}

#[test]
fn proxy_passes_requests_and_answers_through() {
    block_on(async {
        let gong = start_gong(config(3, 0)).await;
        let session = host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&gong)).unwrap();
        let id = fixtures::user_id(1);
        let response = session
            .proxy(OutboundRequest {
                method: Method::Get,
                path: format!("v2//users/{id}"),
                query: vec![],
                headers: vec![],
                body: None,
                idempotent: true,
            })
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["user"], fixtures::user(1), "Gong's raw answer, unchanged");
        let seen = &gong.requests()[0];
        assert_eq!(seen.path, format!("/v2/users/{id}"), "path normalised by the component");

        // A POST with a body and an inline query reaches Gong as sent, and
        // Gong's error answer comes back as it is.
        let response = session
            .proxy(OutboundRequest {
                method: Method::Post,
                path: "/v2/calls/extensive?trace=1".into(),
                query: vec![("x".into(), "y z".into())],
                headers: vec![("x-custom".into(), "1".into())],
                body: Some(br#"{"filter":{}}"#.to_vec()),
                idempotent: true,
            })
            .await
            .unwrap();
        assert_eq!(response.status, 404);
        let seen = &gong.requests()[1];
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/v2/calls/extensive"));
        assert_eq!(seen.query.get("trace").map(String::as_str), Some("1"));
        assert_eq!(seen.query.get("x").map(String::as_str), Some("y z"));
        assert_eq!(seen.body, br#"{"filter":{}}"#);
        assert!(seen.authorization.as_deref().is_some_and(|a| a.starts_with("Basic ")));
    });
}

#[test]
fn requests_that_would_leave_the_base_url_are_refused_before_sending() {
    block_on(async {
        let gong = start_gong(config(1, 0)).await;
        let spec = providers().get("gong").unwrap();
        let hostile = host().connect(hostile_component(), spec, &connection(&gong)).unwrap();
        for attack in ["absolute-url", "scheme-relative-url", "dot-dot-path", "set-authorization"] {
            let error = hostile.run_action(attack, "").await.unwrap_err();
            assert!(
                matches!(&error, Error::Provider(ProviderFailure::Http(EgressError::Refused(_)))),
                "{attack}: {error:?}"
            );
        }
        // The same through the Gong component's proxy.
        let session = host().connect(gong_component(), spec, &connection(&gong)).unwrap();
        let error = session
            .proxy(OutboundRequest {
                method: Method::Get,
                path: "https://attacker.invalid/x".into(),
                query: vec![],
                headers: vec![],
                body: None,
                idempotent: true,
            })
            .await
            .unwrap_err();
        assert!(matches!(&error, Error::Http(EgressError::Refused(m)) if m.contains("absolute URL")), "{error:?}");
        assert!(gong.requests().is_empty(), "nothing was sent anywhere");
    });
}

#[test]
fn a_regional_base_url_is_where_requests_go() {
    block_on(async {
        // Two "clusters": the connection's config picks the second.
        let default_cluster = start_gong(config(1, 0)).await;
        let regional = start_gong(config(7, 0)).await;
        let session =
            host().connect(gong_component(), providers().get("gong").unwrap(), &connection(&regional)).unwrap();
        assert_eq!(session.verify().await.unwrap().summary, "credential accepted; 7 users visible");
        assert!(default_cluster.requests().is_empty());
        assert_eq!(session.base_url().unwrap().as_str(), format!("{}/", regional.base_url()));
    });
}

#[test]
fn the_component_describes_itself_without_a_connection() {
    block_on(async {
        let description = host().describe(gong_component()).await.unwrap();
        let syncs: Vec<&str> = description.syncs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&syncs[..3], ["users", "calls", "call-transcripts"]);
        let schema: Value = serde_json::from_str(&description.syncs[0].record_schema).unwrap();
        assert_eq!(schema["title"], "GongUser");
        let actions: Vec<&str> = description.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(&actions[..2], ["get-user", "list-calls"]);
        assert!(actions.len() > 20, "{actions:?}");
        for action in &description.actions {
            serde_json::from_str::<Value>(&action.input_schema).unwrap();
        }
        assert_eq!(description.requirements.basic.unwrap().username_title, "Access Key");
    });
}
