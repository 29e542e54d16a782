//! `gong-oauth` end to end: the host's OAuth flow against the fake's token
//! endpoint, the API base URL switching to `api_base_url_for_customer` (the
//! fake's second port), refresh before expiry and after a 401, one shared
//! refresh for concurrent calls, and a revoked grant. The component is the
//! same one `gong` uses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use terapi_e2e::fake_gong::{FakeGong, FakeGongConfig, OAuthConfig, fixtures};
use terapi_e2e::terapi_host::oauth::{self, OAuthClient, TokenRefresher, TokenSet};
use terapi_e2e::terapi_host::{
    Connection, Credentials, EgressError, Error, ProviderComponent, ProviderFailure, Providers, Secret, Session,
};
use terapi_e2e::*;

/// providers.yaml with gong-oauth's authorize and token URLs on the fake.
fn providers_for(gong: &FakeGong) -> Providers {
    let text = terapi_e2e::PROVIDERS_YAML
        .replace("https://app.gong.io/oauth2/authorize", &format!("{}/oauth2/authorize", gong.base_url()))
        .replace(
            "https://app.gong.io/oauth2/generate-customer-token",
            &format!("{}/oauth2/generate-customer-token", gong.base_url()),
        );
    Providers::parse(&text, "providers.yaml").unwrap()
}

fn client() -> OAuthClient {
    let config = OAuthConfig::default();
    OAuthClient {
        client_id: config.client_id,
        client_secret: Secret::new(config.client_secret),
        redirect_uri: "http://127.0.0.1:9/callback".into(),
    }
}

async fn start(ttl: Duration) -> FakeGong {
    let oauth = OAuthConfig { access_token_ttl: ttl, ..OAuthConfig::default() };
    start_gong(FakeGongConfig { users: fixtures::users(12), oauth: Some(oauth), ..FakeGongConfig::default() }).await
}

/// Runs the authorization-code flow the way a browser would, and returns the
/// connection the host builds from the token response.
async fn authorize(providers: &Providers) -> Connection {
    let spec = providers.get("gong-oauth").unwrap();
    let state = oauth::random_state();
    let url = oauth::authorization_url(spec, &BTreeMap::new(), &client(), &state, &["api:users:read".into()]).unwrap();
    assert_eq!(url.query_pairs().find(|(k, _)| k == "access_type").unwrap().1, "offline");
    // The "user" approves: the fake redirects back with a code and our state.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = browser.get(url).send().await.unwrap();
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let params: BTreeMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(params["state"], state, "state comes back unchanged");
    let tokens =
        oauth::exchange_code(host().http_client(), spec, &BTreeMap::new(), &client(), &params["code"]).await.unwrap();
    Connection {
        id: format!("oauth-{}", state),
        provider: "gong-oauth".into(),
        credentials: terapi_host::egress::credentials_from(&tokens),
        config: tokens.metadata.clone(),
    }
}

fn recording_refresher() -> (TokenRefresher, Arc<Mutex<Vec<TokenSet>>>) {
    let saved = Arc::new(Mutex::new(Vec::new()));
    let sink = saved.clone();
    let refresher = TokenRefresher {
        client: client(),
        on_refresh: Arc::new(move |tokens: TokenSet| {
            sink.lock().unwrap().push(tokens);
            Box::pin(std::future::ready(()))
        }),
        on_refresh_failure: None,
        coordination: None,
    };
    (refresher, saved)
}

type Saved = Arc<Mutex<Vec<TokenSet>>>;

/// A fake with OAuth, a connection authorized against it, and a session that
/// refreshes its token and records every token set it hands over to be saved.
async fn refreshing(ttl: Duration) -> (FakeGong, Session, Connection, Saved) {
    refreshing_with(gong_component(), ttl).await
}

async fn refreshing_with(
    component: &'static ProviderComponent,
    ttl: Duration,
) -> (FakeGong, Session, Connection, Saved) {
    let gong = start(ttl).await;
    let providers = providers_for(&gong);
    let connection = authorize(&providers).await;
    let (refresher, saved) = recording_refresher();
    let session = host()
        .connect_with_refresh(component, providers.get("gong-oauth").unwrap(), &connection, Some(refresher))
        .unwrap();
    (gong, session, connection, saved)
}

#[test]
fn the_flow_ends_with_calls_to_the_customer_base_url() {
    block_on(async {
        let gong = start(Duration::from_secs(3600)).await;
        let providers = providers_for(&gong);
        let connection = authorize(&providers).await;
        let api = gong.api_base_url().unwrap();
        assert_eq!(connection.config["api_base_url_for_customer"], api);
        assert_eq!(gong.token_grants(), ["authorization_code"]);

        let session = host().connect(gong_component(), providers.get("gong-oauth").unwrap(), &connection).unwrap();
        assert_eq!(session.verify().await.unwrap().summary, "credential accepted; 12 users visible");
        let last = gong.requests().pop().unwrap();
        assert_eq!(format!("http://{}", last.host), api, "the API call went to the customer's base URL");
        assert!(last.authorization.unwrap().starts_with("Bearer "));
    });
}

#[test]
fn an_expired_token_is_refreshed_once_and_the_call_succeeds() {
    block_on(async {
        let (gong, session, _connection, saved) = refreshing(Duration::from_secs(3600)).await;
        gong.expire_access_tokens();
        session.verify().await.unwrap();
        let statuses: Vec<u16> = gong.requests().iter().filter(|r| r.path == "/v2/users").map(|r| r.status).collect();
        assert_eq!(statuses, [401, 200]);
        assert_eq!(gong.token_grants(), ["authorization_code", "refresh_token"]);
        assert_eq!(saved.lock().unwrap().len(), 1, "the new tokens were handed over to be saved");
    });
}

#[test]
fn a_token_minted_by_a_refresh_is_scrubbed_like_the_first() {
    block_on(async {
        let (gong, session, _connection, saved) = refreshing_with(hostile_component(), Duration::from_secs(3600)).await;
        gong.expire_access_tokens();
        session.run_action("fetch", "/v2/users").await.unwrap();
        let minted = saved.lock().unwrap()[0].access_token.expose().to_string();
        // The guest echoes the new token in its last words.
        let error = session.run_action("panic", &minted).await.unwrap_err().to_string();
        assert!(error.contains("panics on purpose: <redacted>"), "{error}");
        assert!(!error.contains(&minted), "the refreshed token leaked: {error}");
    });
}

#[test]
fn a_token_about_to_expire_is_refreshed_before_the_call() {
    block_on(async {
        // 30 s is inside the host's 60 s refresh margin.
        let (gong, session, _connection, _saved) = refreshing(Duration::from_secs(30)).await;
        session.verify().await.unwrap();
        assert_eq!(gong.token_grants(), ["authorization_code", "refresh_token"]);
        assert!(gong.requests().iter().all(|r| r.status != 401), "no call was sent with the old token");
    });
}

#[test]
fn concurrent_calls_share_one_refresh() {
    block_on(async {
        let (gong, session, _connection, saved) = refreshing(Duration::from_secs(3600)).await;
        let session = Arc::new(session);
        gong.expire_access_tokens();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let session = session.clone();
            calls.spawn(async move { session.verify().await });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap().unwrap();
        }
        assert_eq!(gong.token_grants().iter().filter(|g| *g == "refresh_token").count(), 1);
        assert_eq!(saved.lock().unwrap().len(), 1);
    });
}

#[test]
fn a_revoked_grant_says_reauthorize_and_saves_nothing() {
    block_on(async {
        let (gong, session, connection, saved) = refreshing(Duration::from_secs(3600)).await;
        gong.revoke_refresh_tokens();
        gong.expire_access_tokens();
        let error = session.verify().await.unwrap_err();
        assert!(
            matches!(&error, Error::Provider(ProviderFailure::Http(EgressError::Reauthorize(m))) if m.contains("re-authorize this connection")),
            "{error:?}"
        );
        assert!(saved.lock().unwrap().is_empty());
        let Credentials::OAuth2 { access_token, .. } = &connection.credentials else { panic!() };
        assert!(!error.to_string().contains(access_token.expose()));
    });
}

#[test]
fn a_bad_client_secret_is_a_clear_error() {
    block_on(async {
        let gong = start(Duration::from_secs(3600)).await;
        let providers = providers_for(&gong);
        let bad = OAuthClient { client_secret: Secret::new("nope"), ..client() };
        let error = oauth::exchange_code(
            host().http_client(),
            providers.get("gong-oauth").unwrap(),
            &BTreeMap::new(),
            &bad,
            "x",
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("rejected the client id or secret"), "{error}");
    });
}

#[test]
fn a_token_without_a_scope_says_which_and_spends_no_refresh() {
    block_on(async {
        let (gong, session, _, saved) = refreshing(Duration::from_secs(3600)).await;
        let grants = gong.token_grants().len();
        gong.inject(1, terapi_e2e::fake_gong::Fault::MissingScope("api:calls:read:transcript".into()));
        let error = session.run_action("get-call-transcripts", r#"{"callIds":["8000000000000000001"]}"#).await;
        let message = error.unwrap_err().to_string();
        assert!(
            message.contains("lacks the scope `api:calls:read:transcript`") && message.contains("re-authorize"),
            "{message}"
        );
        assert_eq!(gong.token_grants().len(), grants, "no refresh was spent on it");
        assert!(saved.lock().unwrap().is_empty());
        // The default scopes ask for it.
        let scopes = host().describe(gong_component()).await.unwrap().requirements.oauth2_scopes;
        assert!(scopes.iter().any(|s| s == "api:calls:read:transcript"), "{scopes:?}");
    });
}

/// Through the platform, a refused refresh becomes Nango's auth webhook
/// (`operation: refresh`, `success: false`), once, however many calls fail.
#[test]
fn a_refused_refresh_is_told_to_the_app_once() {
    block_on(async {
        let gong = start(Duration::from_secs(3600)).await;
        let providers = providers_for(&gong);
        let connection = authorize(&providers).await;
        let dir = fresh_dir("oauth-refresh-failure");
        let clients = BTreeMap::from([("gong-oauth".to_string(), client())]);
        let platform = terapi_e2e::platform_with_oauth(&dir, providers, clients);
        platform.store().create_connection(&connection, None).await.unwrap();
        gong.revoke_refresh_tokens();
        gong.expire_access_tokens();
        for _ in 0..3 {
            let error = platform.session(&connection.id).await.unwrap().verify().await.unwrap_err();
            assert!(error.to_string().contains("re-authorize this connection"), "{error}");
        }
        let events = platform.store().events(10).await.unwrap();
        let told: Vec<_> = events.iter().filter(|e| e.kind == "auth").collect();
        assert_eq!(told.len(), 1, "{events:?}");
        let body = terapi_e2e::terapi_platform::events::render(told[0], false).unwrap();
        assert_eq!(
            (&body["type"], &body["operation"], &body["success"]),
            (&serde_json::json!("auth"), &serde_json::json!("refresh"), &serde_json::json!(false))
        );
        assert_eq!(body["error"]["type"], "refresh_token_error");
        let Credentials::OAuth2 { access_token, .. } = &connection.credentials else { panic!() };
        assert!(!body.to_string().contains(access_token.expose()));
    });
}

/// An end user is asked for the fewest scopes: verification's, and those of
/// the syncs and actions named; naming none, every sync's and every
/// read-only action's, never a write nobody asked for.
#[test]
fn the_scopes_asked_for_are_those_of_what_will_run() {
    use terapi_e2e::terapi_platform::{PlatformError, ScopeChoice};
    block_on(async {
        let platform = platform_in(&fresh_dir("oauth-scopes"));
        let scopes = |syncs: &[&str], actions: &[&str]| {
            let choice = ScopeChoice::For {
                syncs: syncs.iter().map(|s| s.to_string()).collect(),
                actions: actions.iter().map(|s| s.to_string()).collect(),
            };
            let platform = &platform;
            async move { platform.oauth_scopes("gong-oauth", &choice).await }
        };
        assert_eq!(scopes(&["users"], &[]).await.unwrap(), ["api:users:read"]);
        assert_eq!(
            scopes(&["calls"], &["upload-call"]).await.unwrap(),
            ["api:calls:create", "api:calls:read:extensive", "api:users:read"]
        );
        let default = scopes(&[], &[]).await.unwrap();
        let everything = platform.oauth_scopes("gong-oauth", &ScopeChoice::Everything).await.unwrap();
        for read in ["api:users:read", "api:calls:read:transcript", "api:stats:scorecards", "api:workspaces:read"] {
            assert!(default.iter().any(|s| s == read), "{read} missing from {default:?}");
        }
        for write in ["api:calls:create", "api:flows:write", "api:crm:upload", "api:data-privacy:delete"] {
            assert!(!default.iter().any(|s| s == write), "{write} asked for by default: {default:?}");
            assert!(everything.iter().any(|s| s == write), "{write} missing from everything");
        }
        assert!(default.len() < everything.len());
        let named = ScopeChoice::Named(vec!["api:calls:read:basic".into()]);
        let named = platform.oauth_scopes("gong-oauth", &named).await.unwrap();
        assert_eq!(named, ["api:calls:read:basic", "api:users:read"]);
        assert!(matches!(scopes(&["nope"], &[]).await, Err(PlatformError::NoSync { .. })));
        assert!(matches!(scopes(&[], &["nope"]).await, Err(PlatformError::NoAction(_))));
    });
}

/// Gong's refresh tokens are single-use. Sessions of two platforms on one
/// store (two processes), and several sessions of each (`terapi serve` makes
/// one per request), find the token expired at once: one refreshes, the rest
/// use what it saved, nobody is told to re-authorize.
#[test]
fn sessions_of_two_processes_share_one_refresh_of_a_single_use_token() {
    block_on(async {
        let gong = start(Duration::from_secs(3600)).await;
        let providers = providers_for(&gong);
        let connection = authorize(&providers).await;
        let dir = fresh_dir("oauth-two-processes");
        let clients = BTreeMap::from([("gong-oauth".to_string(), client())]);
        let first = Arc::new(terapi_e2e::platform_with_oauth(&dir, providers.clone(), clients.clone()));
        let second = Arc::new(terapi_e2e::platform_with_oauth(&dir, providers, clients));
        first.store().create_connection(&connection, None).await.unwrap();
        gong.expire_access_tokens();
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..6 {
            let platform = if n % 2 == 0 { first.clone() } else { second.clone() };
            let id = connection.id.clone();
            calls.spawn(async move { platform.session(&id).await.unwrap().verify().await });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap().unwrap_or_else(|e| panic!("a false revocation: {e}"));
        }
        assert_eq!(gong.token_grants().iter().filter(|g| *g == "refresh_token").count(), 1, "one refresh");
        let events = first.store().events(10).await.unwrap();
        assert!(events.iter().all(|e| e.kind != "auth"), "no refresh failure told: {events:?}");

        // A session made before the refresh still holds the spent token:
        // its refresh is refused, and it takes the newer stored one instead.
        let stale = second.session(&connection.id).await.unwrap();
        gong.expire_access_tokens();
        first.session(&connection.id).await.unwrap().verify().await.unwrap();
        stale.verify().await.unwrap_or_else(|e| panic!("a false revocation: {e}"));
        assert_eq!(gong.token_grants().iter().filter(|g| *g == "refresh_token").count(), 2);

        // A grant really revoked is still told as one.
        gong.revoke_refresh_tokens();
        gong.expire_access_tokens();
        let error = second.session(&connection.id).await.unwrap().verify().await.unwrap_err();
        assert!(error.to_string().contains("re-authorize this connection"), "{error}");
    });
}

#[test]
fn an_absurd_expires_in_is_never_rather_than_already_expired() {
    block_on(async {
        let gong = start(Duration::from_secs(u64::MAX)).await;
        let providers = providers_for(&gong);
        let connection = authorize(&providers).await;
        let Credentials::OAuth2 { expires_at, .. } = &connection.credentials else { panic!() };
        assert_eq!(*expires_at, Some(u64::MAX));
        let (refresher, saved) = recording_refresher();
        let session = host()
            .connect_with_refresh(gong_component(), providers.get("gong-oauth").unwrap(), &connection, Some(refresher))
            .unwrap();
        session.verify().await.unwrap();
        assert!(saved.lock().unwrap().is_empty(), "no refresh of a token that never expires");
        assert_eq!(gong.token_grants(), ["authorization_code"]);
    });
}
