//! `terapi serve` as an app sees it: Nango's API over HTTP, with the real
//! component in the real host against the fake Gong, the scheduler
//! running syncs and change webhooks arriving signed at a local receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_gong::FakeGongConfig;
use serde_json::{Value, json};
use terapi_e2e::terapi_host::Secret;
use terapi_e2e::terapi_serve::webhooks::{WebhookConfig, sign};
use terapi_e2e::terapi_serve::{ServeConfig, ServeState};
use terapi_e2e::*;

const SIGNING_KEY: &str = "whsec-test-signing-key";

/// Webhooks as the app's endpoint received them: (signature header, body,
/// whether it was accepted). The very first delivery is answered 503, so
/// every run of these tests also sees a retry.
type Received = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

pub(crate) struct Served {
    pub(crate) base: String,
    pub(crate) key: String,
    pub(crate) http: reqwest::Client,
    webhooks: Received,
    pub(crate) platform: Arc<terapi_platform::Platform>,
    dir: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    pub(crate) async fn start(name: &str) -> Served {
        let dir = fresh_dir(name);
        Served::start_on(platform_in(&dir), dir).await
    }

    /// `terapi serve` over `platform` (whose store is in `dir`).
    pub(crate) async fn start_on(platform: terapi_platform::Platform, dir: std::path::PathBuf) -> Served {
        let webhooks: Received = Arc::default();
        let receiver = {
            let webhooks = webhooks.clone();
            axum::Router::new().route(
                "/hooks",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let webhooks = webhooks.clone();
                    async move {
                        let signature =
                            headers.get("x-nango-hmac-sha256").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        let mut webhooks = webhooks.lock().unwrap();
                        let accept = !webhooks.is_empty();
                        webhooks.push((signature, body.to_vec(), accept));
                        if accept { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE }
                    }
                }),
            )
        };
        let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hooks_url = format!("http://{}/hooks", hooks.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(hooks, receiver).await });

        let platform = Arc::new(platform.with_lease_ttl(Duration::from_secs(5)));
        let key = terapi_serve::auth::new_secret_key().unwrap();
        platform.store().create_api_key(&terapi_serve::auth::sha256_hex(&key), "test").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = ServeState::new(
            platform.clone(),
            ServeConfig {
                public_url: format!("{base}/").parse().unwrap(),
                webhooks: Some(WebhookConfig {
                    url: hooks_url.parse().unwrap(),
                    signing_key: Secret::new(SIGNING_KEY),
                    attempts: 3,
                    first_backoff: Duration::from_millis(50),
                    always_send: false,
                }),
                worker_concurrency: 4,
                connect_session_ttl: Duration::from_secs(600),
                frame_ancestors: Vec::new(),
                connect_page: Default::default(),
                connections: Default::default(),
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(terapi_serve::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        Served { base, key, http: reqwest::Client::new(), webhooks, platform, dir, _stop: stop }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key)
    }

    pub(crate) async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request).await
    }

    /// A connection made the way an end user makes one: a Connect session,
    /// then the page's Save.
    async fn connect(&self, fake: &fake_gong::FakeGong, secret: &str) -> (u16, Value) {
        let (status, session) = self
            .json(
                reqwest::Method::POST,
                "/connect/sessions",
                Some(json!({"end_user": {"id": "u-1"}, "allowed_integrations": ["gong"]})),
            )
            .await;
        assert_eq!(status, 200, "{session}");
        let token = session["data"]["token"].as_str().unwrap().to_string();
        let body = json!({
            "session_token": token,
            "provider": "gong",
            "credentials": {"username": fake.config().access_key, "password": secret},
            "connection_config": {"api_base_url_for_customer": fake.base_url()},
        });
        answer(self.http.post(format!("{}/connect/api/connections", self.base)).json(&body)).await
    }

    async fn wait_for(&self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..300 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn sync_status(&self, connection: &str, sync: &str) -> Value {
        let (status, body) = self
            .json(
                reqwest::Method::GET,
                &format!("/sync/status?syncs={sync}&provider_config_key=gong&connection_id={connection}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["syncs"][0].clone()
    }

    /// The verified webhooks of `sync`, parsed.
    fn webhooks_of(&self, sync: &str) -> Vec<Value> {
        self.webhooks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, accepted)| *accepted)
            .map(|(signature, body, _)| {
                assert_eq!(signature, &sign(SIGNING_KEY, body), "every webhook carries the HMAC of its body");
                serde_json::from_slice::<Value>(body).unwrap()
            })
            .filter(|w| w["syncName"] == sync)
            .collect()
    }
}

pub(crate) async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("terapi serve answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn all_records(served: &Served, connection: &str, model: &str, extra: &str) -> Vec<Value> {
    all_records_from(served, connection, model, extra, None).await
}

async fn all_records_from(
    served: &Served,
    connection: &str,
    model: &str,
    extra: &str,
    from: Option<&str>,
) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor = from.map(|c| format!("&cursor={c}")).unwrap_or_default();
    loop {
        let (status, page) = answer(
            served
                .request(reqwest::Method::GET, &format!("/records?model={model}&limit=100{extra}{cursor}"))
                .header("Connection-Id", connection)
                .header("Provider-Config-Key", "gong"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        records.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return records,
        }
    }
}

#[test]
fn connect_schedule_records_webhooks_and_deletions_over_nangos_api() {
    block_on(async {
        let fake = start_gong(FakeGongConfig { users: fake_gong::fixtures::users(250), ..Default::default() }).await;
        let served = Served::start("serve-api").await;

        // A wrong secret is shown to the end user and saves nothing.
        let (status, refused) = served.connect(&fake, "wrong-secret").await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["code"], "connection_test_failed");
        assert!(!refused.to_string().contains("wrong-secret"), "the secret is never echoed: {refused}");
        assert!(served.platform.store().connections().await.unwrap().is_empty());

        let (status, made) = served.connect(&fake, &fake.config().access_key_secret).await;
        assert_eq!(status, 200, "{made}");
        let id = made["connection_id"].as_str().unwrap().to_string();

        // Connecting starts every sync on its default schedule; the users
        // sync runs at once, and its webhook reports 250 added.
        served
            .wait_for("the users sync", async || {
                served.sync_status(&id, "users").await["latestExecutionStatus"] == "SUCCESS"
            })
            .await;
        let status = served.sync_status(&id, "users").await;
        assert_eq!(status["frequency"], "every 1d", "the component's default for a full sync");
        assert_eq!(status["recordCount"]["GongUser"], 250);
        assert!(status["nextScheduledSyncAt"].is_string(), "the next run is scheduled: {status}");
        // The run history says who ran it and what it did.
        let (code, history) = served.json(reqwest::Method::GET, &format!("/sync/runs?connection_id={id}"), None).await;
        assert_eq!(code, 200, "{history}");
        let run = history["runs"].as_array().unwrap().iter().find(|r| r["sync"] == "users").unwrap().clone();
        assert_eq!((&run["status"], &run["records"]), (&json!("done"), &json!(250)), "{run}");
        assert!(run["owner"].as_str().unwrap().contains(':') && run["finished_at_ms"].is_u64(), "{run}");
        served.wait_for("the users webhook", async || !served.webhooks_of("users").is_empty()).await;
        {
            let attempts = served.webhooks.lock().unwrap();
            assert!(!attempts[0].2 && attempts.len() >= 2, "the first delivery was refused");
            assert!(
                attempts[1..].iter().any(|(_, body, accepted)| *accepted && body == &attempts[0].1),
                "and delivered again, unchanged"
            );
        }
        // The connection's auth webhook, from the same outbox, names the
        // Connect session's end user.
        let auth: Vec<Value> = served
            .webhooks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, accepted)| *accepted)
            .map(|(_, body, _)| serde_json::from_slice::<Value>(body).unwrap())
            .filter(|w| w["type"] == "auth")
            .collect();
        assert_eq!(auth.len(), 1, "{auth:?}");
        assert_eq!(
            (&auth[0]["connectionId"], &auth[0]["operation"], &auth[0]["authMode"], &auth[0]["success"]),
            (&json!(id), &json!("creation"), &json!("BASIC"), &json!(true))
        );
        assert_eq!(auth[0]["endUser"]["endUserId"], "u-1");
        let hook = &served.webhooks_of("users")[0];
        assert_eq!(hook["type"], "sync");
        assert_eq!(hook["connectionId"], id.as_str());
        assert_eq!(hook["model"], "GongUser");
        assert_eq!(hook["success"], true);
        assert_eq!(hook["responseResults"], json!({"added": 250, "updated": 0, "deleted": 0}));

        let records = all_records(&served, &id, "GongUser", "").await;
        assert_eq!(records.len(), 250, "every record once, page by page");
        let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 250);
        assert!(records.iter().all(|r| r["_nango_metadata"]["last_action"] == "ADDED"));
        // A record's own cursor resumes after it.
        let tenth = records[9]["_nango_metadata"]["cursor"].as_str().unwrap();
        let after = all_records_from(&served, &id, "GongUser", "", Some(tenth)).await;
        assert_eq!(after.len(), 240);
        assert_eq!(after[0]["id"], records[10]["id"]);

        // Users gone upstream: a triggered full run marks them deleted, and
        // the webhook says so.
        let gone: Vec<String> = records[..3].iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        fake.remove_users(&gone);
        let (code, body) = served
            .json(
                reqwest::Method::POST,
                "/sync/trigger",
                Some(json!({"syncs": ["users"], "provider_config_key": "gong", "connection_id": id})),
            )
            .await;
        assert_eq!((code, body), (200, json!({"success": true})));
        served.wait_for("the deletions webhook", async || served.webhooks_of("users").len() >= 2).await;
        assert_eq!(served.webhooks_of("users")[1]["responseResults"]["deleted"], 3);
        let deleted = all_records(&served, &id, "GongUser", "&filter=deleted").await;
        let mut deleted_ids: Vec<String> = deleted.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        deleted_ids.sort();
        let mut expected = gone.clone();
        expected.sort();
        assert_eq!(deleted_ids, expected);
        assert!(deleted.iter().all(|r| r["_nango_metadata"]["deleted_at"].is_string()));

        // Frequency and pause.
        let (code, body) = served
            .json(reqwest::Method::PUT, "/sync/update-connection-frequency", Some(json!({"sync_name": "users", "provider_config_key": "gong", "connection_id": id, "frequency": "every 2 hours"})))
            .await;
        assert_eq!((code, body), (200, json!({"frequency": "every 2h"})));
        let (code, body) = served
            .json(reqwest::Method::PUT, "/sync/update-connection-frequency", Some(json!({"sync_name": "users", "provider_config_key": "gong", "connection_id": id, "frequency": "sometimes"})))
            .await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(served.sync_status(&id, "users").await["frequency"], "every 2h");
        let (code, _) = served
            .json(
                reqwest::Method::POST,
                "/sync/pause",
                Some(json!({"syncs": ["users"], "provider_config_key": "gong", "connection_id": id})),
            )
            .await;
        assert_eq!(code, 200);
        let paused = served.sync_status(&id, "users").await;
        assert_eq!(paused["status"], "PAUSED");
        assert!(paused["nextScheduledSyncAt"].is_null());
        // The schedule is in the store: a platform started afresh on it (a
        // restarted server) sees it.
        let restarted = platform_in(&served.dir);
        let info = restarted.schedule(&id, "users").await.unwrap();
        assert_eq!((info.frequency_secs, info.paused), (7_200, true));
    });
}

#[test]
fn actions_proxy_connections_and_errors_over_nangos_api() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let served = Served::start("serve-calls").await;
        let (status, made) = served.connect(&fake, &fake.config().access_key_secret).await;
        assert_eq!(status, 200, "{made}");
        let id = made["connection_id"].as_str().unwrap().to_string();

        // Secret key: missing, malformed, unknown.
        let (code, body) = answer(served.http.get(format!("{}/connections", served.base))).await;
        assert_eq!((code, body["error"]["code"].clone()), (401, json!("missing_auth_header")));
        let (code, body) =
            answer(served.http.get(format!("{}/connections", served.base)).bearer_auth("terapi_sk_nope")).await;
        assert_eq!((code, body["error"]["code"].clone()), (401, json!("unknown_account")));

        // Unknown routes, methods and models answer in Nango's error shape.
        let (code, body) = served.json(reqwest::Method::GET, "/scripts/config-nope", None).await;
        assert_eq!((code, body["error"]["code"].clone()), (404, json!("unknown_route")), "{body}");
        let (code, body) = served.json(reqwest::Method::PATCH, "/sync/status", None).await;
        assert_eq!((code, body["error"]["code"].clone()), (405, json!("method_not_allowed")), "{body}");
        let (code, body) = answer(
            served
                .request(reqwest::Method::GET, "/records?model=NoSuchModel")
                .header("Connection-Id", &id)
                .header("Provider-Config-Key", "gong"),
        )
        .await;
        assert_eq!((code, body["error"]["code"].clone()), (404, json!("unknown_model")), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("GongUser"), "{body}");

        // The action runs in the component.
        let user = fake_gong::fixtures::user(3);
        let (code, output) = answer(
            served
                .request(reqwest::Method::POST, "/action/trigger")
                .header("Connection-Id", &id)
                .header("Provider-Config-Key", "gong")
                .json(&json!({"action_name": "get-user", "input": {"id": user["id"]}})),
        )
        .await;
        assert_eq!(code, 200, "{output}");
        assert_eq!(output["email"], user["emailAddress"]);
        let (code, bad) = answer(
            served
                .request(reqwest::Method::POST, "/action/trigger")
                .header("Connection-Id", &id)
                .header("Provider-Config-Key", "gong")
                .json(&json!({"action_name": "get-user", "input": {"idd": 1}})),
        )
        .await;
        assert_eq!((code, bad["error"]["code"].clone()), (400, json!("invalid_action_input")), "{bad}");

        // The proxy goes to the connection's base URL with its credential;
        // an override of the base URL is refused.
        let (code, users) = answer(
            served
                .request(reqwest::Method::GET, "/proxy/v2/users")
                .header("Connection-Id", &id)
                .header("Provider-Config-Key", "gong"),
        )
        .await;
        assert_eq!(code, 200, "{users}");
        assert_eq!(users["users"].as_array().unwrap().len(), 10);
        let (code, refused) = answer(
            served
                .request(reqwest::Method::GET, "/proxy/v2/users")
                .header("Connection-Id", &id)
                .header("Provider-Config-Key", "gong")
                .header("Base-Url-Override", "https://evil.example"),
        )
        .await;
        assert_eq!((code, refused["error"]["code"].clone()), (400, json!("base_url_override_refused")));

        // Connections: no secret leaves; another integration's key does not find it.
        let (code, shown) =
            served.json(reqwest::Method::GET, &format!("/connections/{id}?provider_config_key=gong"), None).await;
        assert_eq!(code, 200, "{shown}");
        assert_eq!(shown["credentials"], json!({"type": "BASIC", "username": fake.config().access_key}));
        assert!(!shown.to_string().contains(&fake.config().access_key_secret));
        let (code, body) =
            served.json(reqwest::Method::GET, &format!("/connections/{id}?provider_config_key=gong-oauth"), None).await;
        assert_eq!((code, body["error"]["code"].clone()), (404, json!("unknown_connection")));
        let (code, listed) = served.json(reqwest::Method::GET, "/connections", None).await;
        assert_eq!(code, 200);
        assert_eq!(listed["connections"][0]["connection_id"], id.as_str());
        let (code, body) = answer(
            served.request(reqwest::Method::GET, "/records?model=GongUser").header("Provider-Config-Key", "gong"),
        )
        .await;
        assert_eq!((code, body["error"]["code"].clone()), (400, json!("invalid_headers")));

        // A Connect link works once.
        let (code, body) =
            answer(served.http.get(format!("{}/connect?session_token=nango_connect_session_00", served.base))).await;
        assert_eq!(code, 401, "{body}");

        let (code, body) =
            served.json(reqwest::Method::DELETE, &format!("/connections/{id}?provider_config_key=gong"), None).await;
        assert_eq!((code, body), (200, json!({"success": true})));
        let (code, _) =
            served.json(reqwest::Method::GET, &format!("/connections/{id}?provider_config_key=gong"), None).await;
        assert_eq!(code, 404);
    });
}

#[test]
fn every_operation_in_the_openapi_document_is_routed() {
    block_on(async {
        let served = Served::start("serve-openapi").await;
        let (code, document) = answer(served.http.get(format!("{}/openapi.json", served.base))).await;
        assert_eq!(code, 200);
        let paths = document["paths"].as_object().unwrap();
        assert_eq!(
            paths.values().map(|p| p.as_object().unwrap().len()).sum::<usize>(),
            terapi_serve::openapi::OPERATIONS.len()
        );
        for (path, operations) in paths {
            for method in operations.as_object().unwrap().keys() {
                let concrete =
                    path.replace("{provider}", "gong").replace("{connectionId}", "none").replace("{path}", "v2/users");
                let method: reqwest::Method = method.to_uppercase().parse().unwrap();
                let response = served.request(method.clone(), &concrete).json(&json!({})).send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                // 404 is fine when it is the API's own answer about a thing,
                // not the router's (`unknown_route`, `method_not_allowed`).
                let code = serde_json::from_str::<Value>(&body).ok().map(|b| b["error"]["code"].clone());
                assert!(
                    status != 405
                        && code != Some(json!("unknown_route"))
                        && code != Some(json!("method_not_allowed"))
                        && (status != 404 || code.is_some()),
                    "{method} {concrete}: {status} {body}"
                );
            }
        }
    });
}

/// An app written against Nango's Gong templates asks for `User`,
/// `GongCallOutput` and `GongCallTranscriptSyncOutput`, and reads terapi's
/// records in those shapes.
#[test]
fn nangos_gong_model_names_read_terapis_records_in_nangos_shapes() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let served = Served::start("serve-nango-models").await;
        let connection = connection(&fake);
        served.platform.create_connection(&connection).await.unwrap();
        let options = terapi_e2e::terapi_platform::StoredSyncOptions {
            sync: terapi_e2e::terapi_host::SyncOptions {
                modified_since: Some("2023-12-31T00:00:00Z".into()),
                backfill_days: None,
            },
            ..Default::default()
        };
        for sync in ["users", "calls", "call-transcripts"] {
            served.platform.run_sync(&connection.id, sync, &options, &mut |_: &_| {}).await.unwrap();
        }
        let list = |model: &'static str| {
            let request = served
                .request(reqwest::Method::GET, &format!("/records?model={model}&limit=100"))
                .header("Connection-Id", &connection.id)
                .header("Provider-Config-Key", "gong");
            answer(request)
        };
        let (code, users) = list("User").await;
        assert_eq!(code, 200, "{users}");
        let first = &users["records"][0];
        let gong_user = fake_gong::fixtures::user(0);
        assert_eq!(
            (&first["id"], &first["firstName"], &first["lastName"], &first["email"]),
            (&gong_user["id"], &gong_user["firstName"], &gong_user["lastName"], &gong_user["emailAddress"])
        );
        assert!(first.get("title").is_none() && first["_nango_metadata"]["cursor"].is_string(), "{first}");

        let (code, calls) = list("GongCallOutput").await;
        assert_eq!(code, 200, "{calls}");
        let call = &calls["records"][0];
        assert_eq!(call["id"], fake_gong::fixtures::call_id(0));
        assert_eq!(call["workspace_id"], "5000000000000000001");
        assert_eq!(call["meeting_url"], "https://zoom.us/j/123");
        assert_eq!(call["is_private"], false);
        assert_eq!(call["parties"][0]["email_address"], "rep@example.com");
        assert_eq!(call["context"]["system"], "Salesforce");
        assert_eq!(call["context"]["objects"]["object_type"], "Account");

        let (code, transcripts) = list("GongCallTranscriptSyncOutput").await;
        assert_eq!(code, 200, "{transcripts}");
        let transcript = &transcripts["records"][0];
        assert_eq!(transcript["id"], fake_gong::fixtures::call_id(0));
        assert_eq!(transcript["transcript"][0]["speaker_id"], "1");
        assert_eq!(transcript["transcript"][0]["sentences"][0]["text"], "Thanks for joining.");

        // The same records under terapi's own names, in Gong's shape.
        let (_, own) = list("GongUser").await;
        assert_eq!(own["records"][0]["title"], gong_user["title"]);
        assert_eq!(own["records"].as_array().unwrap().len(), users["records"].as_array().unwrap().len());
    });
}

/// `createReconnectSession`: a link whose save gives an existing connection
/// a new credential (checked first) instead of making another connection.
#[test]
fn a_reconnect_link_gives_its_connection_a_new_credential_and_nothing_else() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let served = Served::start("serve-reconnect").await;
        let (status, made) = served.connect(&fake, &fake.config().access_key_secret).await;
        assert_eq!(status, 200, "{made}");
        let id = made["connection_id"].as_str().unwrap().to_string();

        let (status, missing) = served
            .json(
                reqwest::Method::POST,
                "/connect/sessions/reconnect",
                Some(json!({"connection_id": "no-such-connection", "integration_id": "gong"})),
            )
            .await;
        assert_eq!((status, missing["error"]["code"].clone()), (404, json!("unknown_connection")), "{missing}");
        let (status, session) = served
            .json(
                reqwest::Method::POST,
                "/connect/sessions/reconnect",
                Some(json!({"connection_id": id, "integration_id": "gong"})),
            )
            .await;
        assert_eq!(status, 200, "{session}");
        let token = session["data"]["token"].as_str().unwrap().to_string();
        let save = |secret: String| {
            let body = json!({
                "session_token": token,
                "provider": "gong",
                "credentials": {"username": fake.config().access_key, "password": secret},
                "connection_config": {"api_base_url_for_customer": fake.base_url()},
            });
            answer(served.http.post(format!("{}/connect/api/connections", served.base)).json(&body))
        };
        // A refused credential changes nothing; the old one still works.
        let (status, refused) = save("wrong-secret".into()).await;
        assert_eq!((status, refused["error"]["code"].clone()), (400, json!("connection_test_failed")), "{refused}");
        served.platform.verify(&id).await.unwrap();
        let (status, saved) = save(fake.config().access_key_secret.clone()).await;
        assert_eq!(status, 200, "{saved}");
        assert_eq!(saved["connection_id"], id.as_str(), "the same connection");
        assert_eq!(served.platform.store().connections().await.unwrap().len(), 1);
        served
            .wait_for("the override webhook", async || {
                served.webhooks.lock().unwrap().iter().any(|(_, body, accepted)| {
                    let hook: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    *accepted
                        && hook["type"] == "auth"
                        && hook["operation"] == "override"
                        && hook["connectionId"] == id.as_str()
                })
            })
            .await;
        // The link is used up.
        let (status, _) = save(fake.config().access_key_secret.clone()).await;
        assert_eq!(status, 409);
    });
}

/// `POST /connections`: a connection made elsewhere, imported with its end
/// user, tags and metadata, after Gong accepted its credential.
#[test]
fn a_connection_is_imported_only_once_gong_accepts_it() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let served = Served::start("serve-import").await;
        let import = |secret: &str, kind: &str| {
            json!({
                "connection_id": "imported-1",
                "provider_config_key": "gong",
                "credentials": {"type": kind, "username": fake.config().access_key, "password": secret},
                "connection_config": {"api_base_url_for_customer": fake.base_url()},
                "end_user": {"id": "u-9", "email": "grace@example.com"},
                "tags": {"plan": "enterprise"},
                "metadata": {"region": "us"},
            })
        };
        let (status, refused) =
            served.json(reqwest::Method::POST, "/connections", Some(import("wrong", "BASIC"))).await;
        assert_eq!((status, refused["error"]["code"].clone()), (400, json!("connection_test_failed")), "{refused}");
        assert!(!refused.to_string().contains("wrong\""), "{refused}");
        let (status, mistyped) = served.json(reqwest::Method::POST, "/connections", Some(import("x", "API_KEY"))).await;
        assert_eq!((status, mistyped["error"]["code"].clone()), (400, json!("invalid_body")), "{mistyped}");
        assert!(served.platform.store().connections().await.unwrap().is_empty(), "nothing saved");

        let secret = fake.config().access_key_secret.clone();
        let (status, made) = served.json(reqwest::Method::POST, "/connections", Some(import(&secret, "BASIC"))).await;
        assert_eq!(status, 200, "{made}");
        assert_eq!(made["connection_id"], "imported-1");
        assert_eq!(made["end_user"]["id"], "u-9");
        assert_eq!(
            (&made["tags"]["plan"], &made["tags"]["end_user_email"]),
            (&json!("enterprise"), &json!("grace@example.com"))
        );
        assert_eq!(made["metadata"], json!({"region": "us"}));
        assert_eq!(made["credentials"], json!({"type": "BASIC", "username": fake.config().access_key}));
        assert!(!made.to_string().contains(&secret), "no secret comes back");
    });
}
