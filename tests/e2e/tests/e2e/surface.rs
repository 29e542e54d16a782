//! All of Gong: every sync over a multi-page fixture, incremental reruns,
//! every action's round trip, input checks before any request, and
//! plan-gated endpoints.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};
use terapi_e2e::fake_gong::{FakeGong, FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{Error, ProviderFailure, Session, SyncOptions};
use terapi_e2e::*;

const SINCE_2023: &str = "2023-12-31T00:00:00Z";

async fn gong(plan_gated: bool) -> FakeGong {
    start_gong(FakeGongConfig {
        users: fixtures::users(5),
        calls: fixtures::calls(7),
        page_size: 2,
        extras: 5,
        plan_gated,
        ..FakeGongConfig::default()
    })
    .await
}

fn session(gong: &FakeGong) -> Session {
    host().connect(gong_component(), providers().get("gong").unwrap(), &connection(gong)).unwrap()
}

fn since(modified_since: &str) -> SyncOptions {
    SyncOptions { modified_since: Some(modified_since.into()), backfill_days: None }
}

#[test]
fn every_sync_returns_every_record_of_a_multi_page_fixture_once() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let description = host().describe(gong_component()).await.unwrap();
        let expected = [
            ("users", 5),
            ("calls", 7),
            ("call-transcripts", 7),
            ("scorecards", 5),
            ("answered-scorecards", 7),
            ("trackers", 5),
            ("workspaces", 5),
            // 5 company flows once, two personal ones each of users 0 and 3,
            // and one flow shared with users 0, 2 and 4, once.
            ("flows", 10),
            ("permission-profiles", 25),
            ("call-outcomes", 5),
        ];
        assert_eq!(description.syncs.len(), expected.len(), "every sync is covered here");
        for (name, count) in expected {
            let mut sink = CollectingSink::default();
            let run = terapi_host::run_sync(&session, name, None, &since(SINCE_2023), &mut sink).await.unwrap();
            let ids: Vec<&str> = sink.records().map(|r| r.id.as_str()).collect();
            let unique: HashSet<&str> = ids.iter().copied().collect();
            assert_eq!((ids.len(), unique.len()), (count, count), "{name}: {ids:?}");
            // Gong answers settings lists in one go (its OpenAPI document
            // gives them no cursor); everything else comes in pages.
            let one_answer = matches!(name, "workspaces" | "scorecards" | "trackers");
            assert_eq!(run.pages > 1, !one_answer, "{name}: {} pages", run.pages);
            for record in sink.records() {
                let json: Value = serde_json::from_str(&record.json).unwrap();
                assert_eq!(json["id"], record.id.as_str(), "{name}: the record carries its id");
            }
        }
    });
}

#[test]
fn calls_carry_parties_and_crm_deal_context_and_post_pagination_resends_the_filter() {
    block_on(async {
        let gong = gong(false).await;
        let mut sink = CollectingSink::default();
        terapi_host::run_sync(&session(&gong), "calls", None, &since(SINCE_2023), &mut sink).await.unwrap();
        let first: Value = serde_json::from_str(&sink.records().next().unwrap().json).unwrap();
        assert_eq!(first["id"], fixtures::call_id(0));
        assert_eq!(first["context"][0]["objects"][1]["objectType"], "Opportunity");
        assert_eq!(first["parties"].as_array().unwrap().len(), 2);
        let posts: Vec<Value> = gong
            .requests()
            .iter()
            .filter(|r| r.path == "/v2/calls/extensive")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(posts.len(), 4, "7 calls in pages of 2");
        assert!(posts.iter().all(|p| p["filter"] == posts[0]["filter"]), "the same filter on every page");
        assert_eq!(posts[0]["filter"]["fromDateTime"], SINCE_2023);
        assert!(posts[0].get("cursor").is_none() && posts[1]["cursor"].is_string());
        assert_eq!(posts[0]["contentSelector"]["context"], "Extended");
    });
}

#[test]
fn an_incremental_rerun_reads_14_days_back_and_catches_calls_gong_processed_late() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let mut first = CollectingSink::default();
        let run = terapi_host::run_sync(&session, "calls", None, &since(SINCE_2023), &mut first).await.unwrap();
        assert_eq!(run.records, 7);
        let checkpoint: Value = serde_json::from_str(run.checkpoint.as_deref().unwrap()).unwrap();
        let window_end = checkpoint["since"].as_str().unwrap().to_string();
        let end = fixtures::parse_rfc3339(&window_end).unwrap();

        // After the first run: two new calls, and one that started three days
        // before it but that Gong only now finished processing.
        let mut calls: Vec<Value> = (100..103).map(fixtures::call).collect();
        calls[0]["started"] = json!(window_end);
        calls[1]["started"] = json!(window_end);
        calls[2]["started"] = json!(fixtures::format_rfc3339(end - 3 * 86_400));
        gong.add_calls(calls);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let before = gong.requests().len();
        let mut second = CollectingSink::default();
        let options = SyncOptions { modified_since: None, backfill_days: None };
        let run = terapi_host::run_sync(&session, "calls", run.checkpoint, &options, &mut second).await.unwrap();
        let mut ids: Vec<&str> = second.records().map(|r| r.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, [fixtures::call_id(100), fixtures::call_id(101), fixtures::call_id(102)]);
        assert_eq!(run.records, 3);
        let asked: Value = serde_json::from_slice(&gong.requests()[before].body).unwrap();
        let from = fixtures::parse_rfc3339(asked["filter"]["fromDateTime"].as_str().unwrap()).unwrap();
        assert_eq!(end - from, 14 * 86_400, "the rerun reaches 14 days before the last window ended");
    });
}

#[test]
fn answered_scorecards_are_windowed_by_review_time_not_call_time() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let mut first = CollectingSink::default();
        let run =
            terapi_host::run_sync(&session, "answered-scorecards", None, &since(SINCE_2023), &mut first).await.unwrap();
        let checkpoint: Value = serde_json::from_str(run.checkpoint.as_deref().unwrap()).unwrap();
        let end = fixtures::parse_rfc3339(checkpoint["since"].as_str().unwrap()).unwrap();

        // A call from ten days ago, reviewed only after the first run.
        let mut call = fixtures::call(200);
        call["started"] = json!(fixtures::format_rfc3339(end - 10 * 86_400));
        call["reviewed"] = json!(fixtures::format_rfc3339(end + 1));
        gong.add_calls(vec![call]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let before = gong.requests().len();
        let mut second = CollectingSink::default();
        let options = SyncOptions { modified_since: None, backfill_days: None };
        terapi_host::run_sync(&session, "answered-scorecards", run.checkpoint, &options, &mut second).await.unwrap();
        let calls: Vec<Value> =
            second.records().map(|r| serde_json::from_str::<Value>(&r.json).unwrap()["callId"].clone()).collect();
        assert_eq!(calls, [json!(fixtures::call_id(200))]);
        let asked: Value = serde_json::from_slice(&gong.requests()[before].body).unwrap();
        assert!(asked["filter"]["reviewFromDate"].is_string() && asked["filter"]["callFromDate"].is_null(), "{asked}");
    });
}

/// Every page of `sync` from `checkpoint` with the host's clock at `now`;
/// the records and where the next run starts.
async fn run_at(
    session: &Session,
    sync: &str,
    mut checkpoint: Option<String>,
    options: &SyncOptions,
    now: i64,
) -> (Vec<Value>, Option<String>) {
    let mut records = Vec::new();
    loop {
        let page = session.run_sync_page_at(sync, checkpoint.as_deref(), options, now).await.unwrap();
        records.extend(page.records.iter().map(|r| serde_json::from_str::<Value>(&r.json).unwrap()));
        checkpoint = page.next_checkpoint;
        if page.done {
            return (records, checkpoint);
        }
    }
}

#[test]
fn a_review_made_after_the_last_run_is_read_the_same_day_in_any_time_zone() {
    block_on(async {
        // The last run at 07:30 UTC; reviews ten and forty minutes later,
        // read by a run at 08:30 UTC. At UTC-8 the first is late on the
        // company's 2 December and the second just past its midnight.
        let last_run = fixtures::parse_rfc3339("2026-12-03T07:30:00Z").unwrap();
        for offset_minutes in [0, -480, 840] {
            let gong =
                start_gong(FakeGongConfig { company_utc_offset_minutes: offset_minutes, ..Default::default() }).await;
            let session = session(&gong);
            let options =
                SyncOptions { modified_since: Some(fixtures::format_rfc3339(last_run - 86_400)), backfill_days: None };
            let (_, checkpoint) = run_at(&session, "answered-scorecards", None, &options, last_run).await;
            let mut reviewed = Vec::new();
            for (i, minutes) in [(201, 10), (202, 40)] {
                let mut call = fixtures::call(i);
                call["started"] = json!(fixtures::format_rfc3339(last_run - 10 * 86_400));
                call["reviewed"] = json!(fixtures::format_rfc3339(last_run + minutes * 60));
                reviewed.push(json!(fixtures::call_id(i)));
                gong.add_calls(vec![call]);
            }
            let (records, _) = run_at(&session, "answered-scorecards", checkpoint, &options, last_run + 3_600).await;
            let mut calls: Vec<Value> = records.iter().map(|r| r["callId"].clone()).collect();
            calls.sort_by_key(|c| c.to_string());
            calls.dedup();
            assert_eq!(calls, reviewed, "both reviews are read at UTC{offset_minutes:+} minutes");
        }
    });
}

#[test]
fn a_first_run_backfills_30_days_by_default() {
    block_on(async {
        let gong = gong(false).await;
        let mut sink = CollectingSink::default();
        let options = SyncOptions { modified_since: None, backfill_days: None };
        terapi_host::run_sync(&session(&gong), "calls", None, &options, &mut sink).await.unwrap();
        let asked: Value = serde_json::from_slice(&gong.requests()[0].body).unwrap();
        let from = fixtures::parse_rfc3339(asked["filter"]["fromDateTime"].as_str().unwrap()).unwrap();
        let to = fixtures::parse_rfc3339(asked["filter"]["toDateTime"].as_str().unwrap()).unwrap();
        assert_eq!(to - from, 30 * 86_400);
        assert_eq!(sink.records().count(), 0, "the 2024 fixture is older than 30 days: Gong's 404 is an empty page");
    });
}

#[test]
fn flows_are_listed_per_active_owner_with_company_flows_once() {
    block_on(async {
        // Ten users in pages of three; user 9 is inactive; users 0, 3, 6 and
        // 9 own two personal flows each.
        let gong = start_gong(FakeGongConfig {
            users: fixtures::users(10),
            page_size: 3,
            extras: 4,
            ..FakeGongConfig::default()
        })
        .await;
        let mut sink = CollectingSink::default();
        terapi_host::run_sync(&session(&gong), "flows", None, &since(SINCE_2023), &mut sink).await.unwrap();

        let owners: BTreeSet<String> = gong
            .requests()
            .iter()
            .filter(|r| r.path == "/v2/flows")
            .filter_map(|r| r.query.get("flowOwnerEmail").cloned())
            .collect();
        let active: BTreeSet<String> = (0..9).map(|i| format!("user{i}@example.com")).collect();
        assert_eq!(owners, active, "every active user is asked for, the inactive one is not");
        assert!(gong.requests().iter().all(|r| r.status == 200), "no request lacked flowOwnerEmail");

        let records: Vec<Value> = sink.records().map(|r| serde_json::from_str(&r.json).unwrap()).collect();
        let ids: HashSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(
            (records.len(), ids.len()),
            (4 + 6 + 1, 4 + 6 + 1),
            "company flows once, personal flows of 0, 3, 6, the shared flow once though five owners list it"
        );
        let personal: Vec<&Value> = records.iter().filter(|r| r["visibility"] == "Personal").collect();
        assert_eq!(personal.len(), 6);
        for flow in personal {
            let owner = flow["ownerEmail"].as_str().unwrap();
            let n = owner.trim_start_matches("user").trim_end_matches("@example.com");
            assert!(flow["name"].as_str().unwrap().starts_with(&format!("Flow of user {n} #")), "{flow}");
        }
        assert!(records.iter().filter(|r| r["visibility"] == "Company").all(|r| r.get("ownerEmail").is_none()));
    });
}

#[test]
fn every_catalogued_action_round_trips() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let id = fixtures::call_id(1);
        // (action, input, method, path, where the input should show up)
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("list-users", json!({}), "GET", "/v2/users"),
            ("get-call", json!({"id": id}), "GET", "/v2/calls/8000000000000000001"),
            ("get-call-transcripts", json!({"callIds": [id]}), "POST", "/v2/calls/transcript"),
            ("get-extensive-calls", json!({"callIds": [id]}), "POST", "/v2/calls/extensive"),
            (
                "upload-call",
                json!({"clientUniqueId": "c1", "actualStart": "2024-01-01T00:00:00Z", "parties": [], "direction": "Inbound", "primaryUser": fixtures::user_id(1)}),
                "POST",
                "/v2/calls",
            ),
            ("list-scorecards", json!({}), "GET", "/v2/settings/scorecards"),
            (
                "list-answered-scorecards",
                json!({"callFromDate": "2024-01-01"}),
                "POST",
                "/v2/stats/activity/scorecards",
            ),
            ("list-trackers", json!({"workspaceId": "5000000000000000000"}), "GET", "/v2/settings/trackers"),
            ("list-workspaces", json!({}), "GET", "/v2/workspaces"),
            ("list-flows", json!({"flowOwnerEmail": "user0@example.com"}), "GET", "/v2/flows"),
            ("list-flow-prospects", json!({"crmProspectsIds": ["003A"]}), "POST", "/v2/flows/prospects"),
            (
                "assign-flow-prospects",
                json!({"crmProspectsIds": ["003A"], "flowId": "620", "flowInstanceOwnerEmail": "rep@example.com"}),
                "POST",
                "/v2/flows/prospects/assign",
            ),
            (
                "unassign-flow-prospects",
                json!({"crmProspectId": "003A"}),
                "POST",
                "/v2/flows/prospects/unassign-flows-by-crm-id",
            ),
            (
                "list-permission-profiles",
                json!({"workspaceId": "5000000000000000000"}),
                "GET",
                "/v2/all-permission-profiles",
            ),
            ("list-permission-profile-users", json!({"profileId": "64"}), "GET", "/v2/permission-profile/users"),
            (
                "crm-get-entities",
                json!({"integrationId": "1", "objectType": "DEAL", "objectsCrmIds": ["006A", "999"]}),
                "GET",
                "/v2/crm/entities",
            ),
            (
                "crm-upload-entities",
                json!({"integrationId": "1", "objectType": "DEAL", "clientRequestId": "r1", "entities": [{"objectId": "006A"}]}),
                "POST",
                "/v2/crm/entities",
            ),
            (
                "crm-get-entity-schema",
                json!({"integrationId": "1", "objectType": "DEAL"}),
                "GET",
                "/v2/crm/entity-schema",
            ),
            (
                "stats-activity-aggregate",
                json!({"fromDate": "2024-01-01", "toDate": "2024-02-01", "userIds": ["1"]}),
                "POST",
                "/v2/stats/activity/aggregate",
            ),
            (
                "stats-activity-day-by-day",
                json!({"fromDate": "2024-01-01", "toDate": "2024-02-01"}),
                "POST",
                "/v2/stats/activity/day-by-day",
            ),
            (
                "stats-interaction",
                json!({"fromDate": "2024-01-01", "toDate": "2024-02-01"}),
                "POST",
                "/v2/stats/interaction",
            ),
            ("list-library-folders", json!({}), "GET", "/v2/library/folders"),
            ("get-logs", json!({"logType": "AccessLog", "fromDateTime": "2024-01-01T00:00:00Z"}), "GET", "/v2/logs"),
            (
                "data-privacy-lookup",
                json!({"emailAddress": "buyer@customer.com"}),
                "GET",
                "/v2/data-privacy/data-for-email-address",
            ),
            (
                "data-privacy-erase",
                json!({"emailAddress": "buyer@customer.com"}),
                "POST",
                "/v2/data-privacy/erase-data-for-email-address",
            ),
            ("list-call-outcomes", json!({}), "GET", "/v2/call-outcomes"),
            (
                "list-library-folder-content",
                json!({"folderId": "3843152912968920037"}),
                "GET",
                "/v2/library/folder-content",
            ),
        ];
        let description = host().describe(gong_component()).await.unwrap();
        let catalogued: HashSet<&str> = description
            .actions
            .iter()
            .map(|a| a.name.as_str())
            .filter(|n| !matches!(*n, "get-user" | "list-calls" | "get-call-media"))
            .collect();
        assert_eq!(catalogued, cases.iter().map(|c| c.0).collect::<HashSet<_>>(), "every action is covered here");

        for (i, (action, input, method, path)) in cases.iter().enumerate() {
            let output =
                session.run_action(action, &input.to_string()).await.unwrap_or_else(|e| panic!("{action}: {e}"));
            let output: Value = serde_json::from_str(&output).unwrap();
            let seen = &gong.requests()[i];
            assert_eq!((seen.method.as_str(), seen.path.as_str()), (*method, *path), "{action}");
            // Every input field reached Gong: in the query, or in the body (maybe under `filter`).
            let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
            for (key, value) in input.as_object().unwrap() {
                let in_query = seen.query.get(key).is_some_and(|q| value.as_str() == Some(q.as_str()));
                let in_path = value.as_str().is_some_and(|v| seen.path.ends_with(v));
                let in_body = body.get(key) == Some(value) || body["filter"].get(key) == Some(value) || body == *value;
                // An upload's objects travel as lines of a multipart file part.
                let raw = String::from_utf8_lossy(&seen.body);
                let in_file = value.as_array().is_some_and(|items| {
                    raw.contains("name=\"dataFile\"") && items.iter().all(|item| raw.contains(&format!("{item}\n")))
                });
                assert!(in_query || in_path || in_body || in_file, "{action}: `{key}` did not reach Gong ({seen:?})");
            }
            assert!(output.get("requestId").is_some(), "{action}: Gong's answer comes back: {output}");
            if *action == "crm-get-entities" {
                // As Gong takes them: in the body, never the query (415).
                assert!(!seen.query.contains_key("objectsCrmIds") && seen.status == 200, "{seen:?}");
                assert_eq!(output["crmObjectsMap"]["006A"]["objectId"], "006A", "{output}");
                assert!(output["crmObjectsMap"]["999"].is_null(), "{output}");
            }
        }
    });
}

#[test]
fn invalid_input_fails_before_any_request_naming_the_field() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let description = host().describe(gong_component()).await.unwrap();
        for action in &description.actions {
            let schema: Value = serde_json::from_str(&action.input_schema).unwrap();
            let error = session.run_action(&action.name, r#"{"notAField": 1}"#).await.unwrap_err();
            let Error::Provider(ProviderFailure::InvalidInput(message)) = &error else {
                panic!("{}: {error:?}", action.name)
            };
            assert!(message.contains("notAField"), "{}: {message}", action.name);
            if let Some(required) = schema["required"].as_array().and_then(|r| r.first()) {
                let error = session.run_action(&action.name, "{}").await.unwrap_err();
                assert!(error.to_string().contains(required.as_str().unwrap()), "{}: {error}", action.name);
            }
        }
        assert!(gong.requests().is_empty(), "no request for any invalid input");
    });
}

#[test]
fn plan_gated_endpoints_say_they_are_not_available_for_the_account() {
    block_on(async {
        let gong = gong(true).await;
        let session = session(&gong);
        for (action, input) in [
            ("list-permission-profiles", json!({"workspaceId": "1"})),
            ("crm-get-entity-schema", json!({"integrationId": "1", "objectType": "DEAL"})),
            ("list-library-folders", json!({})),
        ] {
            let error = session.run_action(action, &input.to_string()).await.unwrap_err();
            assert!(matches!(&error, Error::Provider(ProviderFailure::NotAvailable(_))), "{action}: {error:?}");
            assert!(error.to_string().contains("not available for this Gong account"), "{error}");
        }
        let mut sink = CollectingSink::default();
        let error = terapi_host::run_sync(&session, "permission-profiles", None, &since(SINCE_2023), &mut sink)
            .await
            .unwrap_err();
        assert!(matches!(&error, Error::Provider(ProviderFailure::NotAvailable(_))), "{error:?}");
    });
}

#[test]
fn call_media_links_come_from_the_extensive_call_data() {
    block_on(async {
        let gong = gong(false).await;
        let session = session(&gong);
        let id = fixtures::call_id(2);
        let output = session.run_action("get-call-media", &format!(r#"{{"id":"{id}"}}"#)).await.unwrap();
        let media: Value = serde_json::from_str(&output).unwrap();
        assert_eq!(media["callId"], id.as_str());
        assert!(media["audioUrl"].as_str().unwrap().contains(&format!("{id}/audio")), "{media}");
        let asked: Value = serde_json::from_slice(&gong.requests().last().unwrap().body).unwrap();
        assert_eq!(asked["contentSelector"]["exposedFields"]["media"], true);
        assert_eq!(asked["filter"]["callIds"], json!([id]));
        let error = session.run_action("get-call-media", r#"{"id":"8999999999999999999"}"#).await.unwrap_err();
        assert!(error.to_string().contains("no Gong call has id 8999999999999999999"), "{error}");
    });
}
