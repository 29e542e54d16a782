//! A Connect link in a hostile end user's hands: `terapi serve` with the
//! default egress policy (public addresses only), the real component, and
//! the fake Gong on loopback as the "internal service" the user aims at.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_gong::FakeGongConfig;
use serde_json::{Value, json};
use terapi_e2e::terapi_host::{EgressPolicy, Providers, RuntimeConfig};
use terapi_e2e::*;

use crate::serve::{Served, answer};

/// `terapi serve` as an operator runs it by default: private egress
/// refused. `gong-internal.test` resolves to 127.0.0.1, as an internal DNS
/// name (or a rebinding attacker's) would.
async fn strict(name: &str, providers: Providers) -> Served {
    let dir = fresh_dir(name);
    let policy = EgressPolicy {
        allow_private: false,
        dns_overrides: BTreeMap::from([("gong-internal.test".into(), vec!["127.0.0.1".parse().unwrap()])]),
        ..EgressPolicy::default()
    };
    let platform = platform_with(&dir, providers, RuntimeConfig { egress_policy: policy, ..RuntimeConfig::default() });
    Served::start_on(platform, dir).await
}

async fn session(served: &Served, body: Value) -> String {
    let (status, session) = served.json(reqwest::Method::POST, "/connect/sessions", Some(body)).await;
    assert_eq!(status, 200, "{session}");
    session["data"]["token"].as_str().unwrap().to_string()
}

async fn save(served: &Served, token: &str, key: &str, secret: &str, base_url: &str) -> (u16, Value) {
    let body = json!({
        "session_token": token,
        "provider": "gong",
        "credentials": {"username": key, "password": secret},
        "connection_config": {"api_base_url_for_customer": base_url},
    });
    answer(served.http.post(format!("{}/connect/api/connections", served.base)).json(&body)).await
}

/// providers.yaml with the base URL's `pattern` taken out, as an operator's
/// own file might have it: the host's egress policy must hold alone.
fn without_base_url_pattern() -> Providers {
    let yaml = PROVIDERS_YAML.replace(
        "            pattern: '^(https://([a-zA-Z0-9-]+\\.)?api\\.gong\\.io|http://(127\\.0\\.0\\.1|localhost)(:[0-9]+)?)/?$'\n",
        "",
    );
    assert_ne!(yaml, PROVIDERS_YAML, "the pattern this test removes is in providers.yaml");
    Providers::parse(&yaml, "providers.yaml without base URL patterns").unwrap()
}

#[test]
fn connect_refuses_loopback_private_and_mapped_base_urls_before_any_request() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let port = fake.base_url().rsplit(':').next().unwrap().to_string();
        let (key, secret) = (fake.config().access_key.clone(), fake.config().access_key_secret.clone());
        let served = strict("connect-egress", without_base_url_pattern()).await;
        let token = session(&served, json!({"end_user": {"id": "u-1"}})).await;
        for base in [
            fake.base_url(),
            format!("http://localhost:{port}"),
            format!("https://127.0.0.1:{port}"),
            format!("https://localhost:{port}"),
            format!("https://gong-internal.test:{port}"),
            format!("https://[::ffff:127.0.0.1]:{port}"),
            format!("https://[::1]:{port}"),
            format!("https://2130706433:{port}"),
            "https://10.0.0.7".into(),
            "https://192.168.1.1".into(),
            "https://169.254.169.254".into(),
            "https://100.64.0.1".into(),
            "https://[fd00::1]".into(),
            "https://0.0.0.0".into(),
        ] {
            let (status, refused) = save(&served, &token, &key, &secret, &base).await;
            assert_eq!(status, 400, "{base}: {refused}");
            assert_eq!(refused["error"]["code"], "invalid_connection_config", "{base}: {refused}");
            let message = refused["error"]["message"].as_str().unwrap();
            assert!(message.contains("https://us-44392.api.gong.io"), "says what to use: {message}");
            assert!(!message.contains(&secret) && !message.contains("127.0.0.1"), "{base}: {message}");
        }
        assert_eq!(fake.arrivals(), 0, "no request reached the loopback service");
        assert!(served.platform.store().connections().await.unwrap().is_empty(), "nothing saved");

        // Each refusal gave the link back: the page still offers the form.
        let page = served.http.get(format!("{}/connect?session_token={token}", served.base)).send().await.unwrap();
        assert_eq!(page.status(), 200);
    })
}

/// Below the Connect page, the component and providers.yaml: the host's
/// egress policy alone, on the proxy (which the component only shapes).
#[test]
fn the_egress_policy_alone_refuses_private_destinations_before_they_are_dialled() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let port = fake.base_url().rsplit(':').next().unwrap().to_string();
        let policy = EgressPolicy {
            allow_private: false,
            dns_overrides: BTreeMap::from([("gong-internal.test".into(), vec!["127.0.0.1".parse().unwrap()])]),
            ..EgressPolicy::default()
        };
        let runtime =
            terapi_host::Runtime::new(RuntimeConfig { egress_policy: policy, ..RuntimeConfig::default() }).unwrap();
        let component = runtime.load_component(terapi_artifacts::PROVIDER_GONG).unwrap();
        let providers = without_base_url_pattern();
        for base in [
            fake.base_url(),
            format!("https://127.0.0.1:{port}"),
            format!("https://localhost:{port}"),
            format!("https://gong-internal.test:{port}"),
            format!("https://[::ffff:127.0.0.1]:{port}"),
            format!("https://2130706433:{port}"),
            "https://10.0.0.7".into(),
            "https://169.254.169.254".into(),
            "https://[fd00::1]".into(),
        ] {
            let mut connection = connection(&fake);
            connection.config.insert(terapi_host::BASE_URL_CONFIG_KEY.into(), base.clone());
            let session = runtime.connect(&component, providers.get("gong").unwrap(), &connection).unwrap();
            let request = terapi_host::OutboundRequest {
                method: terapi_host::Method::Get,
                path: "/v2/users".into(),
                query: vec![],
                headers: vec![],
                body: None,
                idempotent: true,
            };
            let error = session.proxy(request).await.unwrap_err();
            let refused = matches!(
                &error,
                terapi_host::Error::Http(terapi_host::EgressError::Refused(m)) if m.contains("--allow-private-egress")
            );
            assert!(refused, "{base}: {error:?}");
        }
        assert_eq!(fake.arrivals(), 0, "nothing was dialled");

        // And the component's own check, before verify sends anything: a
        // public host that is not Gong's.
        let mut connection = connection(&fake);
        connection.config.insert(terapi_host::BASE_URL_CONFIG_KEY.into(), "https://gong.evil.example".into());
        let session = runtime.connect(&component, providers.get("gong").unwrap(), &connection).unwrap();
        let error = session.verify().await.unwrap_err();
        let terapi_host::Error::Provider(terapi_host::ProviderFailure::InvalidInput(message)) = &error else {
            panic!("{error:?}")
        };
        assert!(message.contains("api_base_url_for_customer") && !message.contains("evil"), "{message}");
    })
}

#[test]
fn the_bundled_pattern_keeps_the_base_url_on_gong_and_the_page_never_quotes_the_remote() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        let (key, secret) = (fake.config().access_key.clone(), fake.config().access_key_secret.clone());
        let served = strict("connect-pattern", providers().clone()).await;
        let token = session(&served, json!({"end_user": {"id": "u-1"}})).await;
        for base in
            ["https://evil.example", "https://10.0.0.7", "https://api.gong.io.evil.example", "ftp://api.gong.io"]
        {
            let (status, refused) = save(&served, &token, &key, &secret, base).await;
            assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_body")), "{base}: {refused}");
            assert!(refused["error"]["message"].as_str().unwrap().contains("not in the expected form"), "{refused}");
        }
        // Allowed by the pattern (a local fake), refused by the host.
        let (status, refused) = save(&served, &token, &key, &secret, &fake.base_url()).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_connection_config")));
        assert_eq!(fake.arrivals(), 0);

        // The same link with private egress allowed: a wrong secret is
        // refused in the end user's words, not the remote's.
        let open_dir = fresh_dir("connect-pattern-open");
        let open = Served::start_on(platform_in(&open_dir), open_dir).await;
        let token = session(&open, json!({"end_user": {"id": "u-1"}})).await;
        let (status, refused) = save(&open, &token, &key, "wrong-secret", &fake.base_url()).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("connection_test_failed")), "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused this access key and secret"), "{message}");
        assert!(!message.contains("Invalid access key"), "the remote's text stays in the operator log: {message}");
        // The refused save gave the link back: the right secret works with it.
        let (status, made) = save(&open, &token, &key, &secret, &fake.base_url()).await;
        assert_eq!(status, 200, "{made}");
        // A connection saved through the CLI or a token response is held to
        // the pattern too, not only the Connect form.
        let stored = open.platform.store().connection(made["connection_id"].as_str().unwrap()).await.unwrap();
        let mut elsewhere = stored.clone();
        elsewhere.id = "elsewhere".into();
        elsewhere.config.insert(terapi_host::BASE_URL_CONFIG_KEY.into(), "https://evil.example".into());
        let error = open.platform.create_connection(&elsewhere).await.unwrap_err().to_string();
        assert!(error.contains("not in the form providers.yaml asks for"), "{error}");
        assert!(!error.contains("evil.example"), "{error}");
    })
}

#[test]
fn one_connect_link_makes_one_connection_however_many_saves_race() {
    block_on(async {
        let fake = start_gong(FakeGongConfig::default()).await;
        // A slow verify: every save is in flight at once.
        fake.set_delay(Duration::from_millis(400));
        let (key, secret) = (fake.config().access_key.clone(), fake.config().access_key_secret.clone());
        let dir = fresh_dir("connect-race");
        let served = Served::start_on(platform_in(&dir), dir).await;
        let token = session(&served, json!({"end_user": {"id": "u-1"}, "allowed_integrations": ["gong"]})).await;
        let mut saves = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let body = json!({
                "session_token": token,
                "provider": "gong",
                "credentials": {"username": key, "password": secret},
                "connection_config": {"api_base_url_for_customer": fake.base_url()},
            });
            let request = served.http.post(format!("{}/connect/api/connections", served.base)).json(&body);
            saves.spawn(answer(request));
        }
        let answers = saves.join_all().await;
        let made: Vec<_> = answers.iter().filter(|(status, _)| *status == 200).collect();
        let used =
            answers.iter().filter(|(status, body)| *status == 409 && body["error"]["code"] == "connect_session_used");
        assert_eq!(made.len(), 1, "{answers:?}");
        assert_eq!(used.count(), 7, "{answers:?}");
        assert_eq!(served.platform.store().connections().await.unwrap().len(), 1);
        assert_eq!(fake.arrivals(), 1, "only the save that holds the link asked Gong");
    })
}

#[test]
fn the_oauth_callback_holds_to_the_session_and_its_integrations() {
    block_on(async {
        let dir = fresh_dir("connect-oauth-allowed");
        let served = Served::start_on(platform_in(&dir), dir).await;
        let token = session(&served, json!({"end_user": {"id": "u-1"}, "allowed_integrations": ["gong"]})).await;
        let hash = terapi_serve::auth::sha256_hex(&token);
        let callback = format!("{}/oauth/callback?code=stolen-code&state={hash}.gong-oauth", served.base);
        let response = served.http.get(callback).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let page = response.text().await.unwrap();
        assert!(page.contains("cannot be connected with this link"), "{page}");
        assert!(served.platform.store().connections().await.unwrap().is_empty());
        let start = format!("{}/connect/oauth/start?session_token={token}&provider=gong-oauth", served.base);
        assert_eq!(served.http.get(start).send().await.unwrap().status(), 400, "the start refuses it too");
    })
}

#[test]
fn connect_pages_carry_security_headers_and_post_only_to_the_apps_origin() {
    block_on(async {
        let dir = fresh_dir("connect-headers");
        let served = Served::start_on(platform_in(&dir), dir).await;
        let (status, refused) = served
            .json(
                reqwest::Method::POST,
                "/connect/sessions",
                Some(json!({"end_user": {"id": "u"}, "allowed_origin": "https://app.example.com/path"})),
            )
            .await;
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_body")), "{refused}");

        for (origin, framed_by) in [
            (None, "frame-ancestors 'self'"),
            (Some("https://app.example.com"), "frame-ancestors 'self' https://app.example.com"),
        ] {
            let mut body = json!({"end_user": {"id": "u-1"}});
            if let Some(origin) = origin {
                body["allowed_origin"] = json!(origin);
            }
            let token = session(&served, body).await;
            let response =
                served.http.get(format!("{}/connect?session_token={token}", served.base)).send().await.unwrap();
            let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let csp = header("content-security-policy").expect("a CSP");
            assert!(csp.ends_with(framed_by), "{csp}");
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
            assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
            let page = response.text().await.unwrap();
            assert!(!page.contains("'*'"), "the result is never posted to any origin");
            assert!(page.contains(&format!("data-origin=\"{}\"", origin.unwrap_or(""))), "{page}");
        }
        // Error pages carry them too.
        let gone = served.http.get(format!("{}/connect?session_token=nope", served.base)).send().await.unwrap();
        assert_eq!(gone.status(), 401);
        assert!(gone.headers().get("content-security-policy").is_some());
    })
}
