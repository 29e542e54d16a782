//! `gong-oauth`: authorizing through the browser flow and saving a connection on the customer base URL.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

use crate::common::*;

#[test]
fn oauth_authorize_saves_a_connection_that_uses_the_customer_base_url() {
    use std::io::BufRead;
    let config = FakeGongConfig {
        users: fixtures::users(3),
        oauth: Some(fake_gong::OAuthConfig::default()),
        ..FakeGongConfig::default()
    };
    let gong = tokio().block_on(FakeGong::start(config)).unwrap();
    let oauth = fake_gong::OAuthConfig::default();
    let providers = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oauth-providers.yaml");
    let yaml = include_str!("../../../providers.yaml").replace("https://app.gong.io", &gong.base_url());
    std::fs::write(&providers, yaml).unwrap();
    let dir = data_dir("oauth");
    let with_oauth = |cmd: &mut Command| {
        cmd.env("TERAPI_DATA_DIR", &dir)
            .env("TERAPI_PROVIDERS", &providers)
            .env("GONG_OAUTH_CLIENT_ID", &oauth.client_id)
            .env("GONG_OAUTH_CLIENT_SECRET", &oauth.client_secret);
    };

    let mut authorize = terapi(None);
    with_oauth(&mut authorize);
    let mut child = authorize
        // The README test runs `authorize` on the default port.
        .args(["connection", "authorize", "acme", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = rx
        .iter()
        .find_map(|line| line.trim().starts_with("http").then(|| line.trim().to_string()))
        .expect("the authorization URL is printed");
    assert!(url.contains("access_type=offline") && url.contains("state="), "{url}");
    // No write scope nobody asked for.
    let redirect = url::Url::parse(&url).unwrap();
    let query: std::collections::HashMap<_, _> = redirect.query_pairs().into_owned().collect();
    let scopes: Vec<&str> = query["scope"].split(' ').collect();
    assert!(scopes.contains(&"api:users:read") && scopes.contains(&"api:calls:read:extensive"), "{scopes:?}");
    for write in ["api:calls:create", "api:flows:write", "api:data-privacy:delete"] {
        assert!(!scopes.contains(&write), "{write} asked for: {scopes:?}");
    }

    // The browser: the fake approves and redirects to terapi's listener.
    let page = tokio().block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    assert!(page.contains("authorized"), "{page}");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {:?}", rx.try_iter().collect::<Vec<_>>());
    let api = gong.api_base_url().unwrap();
    assert!(
        stdout.contains(&format!("connection `acme` authorized (credential accepted; 3 users visible; API at {api})")),
        "{stdout}"
    );

    // Later use: expired token, refreshed and saved; calls go to the customer's base URL.
    gong.expire_access_tokens();
    let mut verify = terapi(None);
    with_oauth(&mut verify);
    let output = verify.args(["verify", "--connection", "acme"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "gong-oauth: credential accepted; 3 users visible");
    assert_eq!(gong.token_grants(), ["authorization_code", "refresh_token"]);
    let last = gong.requests().pop().unwrap();
    assert_eq!(format!("http://{}", last.host), api);
    // The refreshed token was saved: a new process uses it without refreshing again.
    let mut again = terapi(None);
    with_oauth(&mut again);
    assert!(again.args(["verify", "--connection", "acme"]).output().unwrap().status.success());
    assert_eq!(gong.token_grants().len(), 2);

    // A long-running MCP server refreshes an expired token once and keeps
    // using the new one for the calls after.
    gong.expire_access_tokens();
    let mut serve = terapi(None);
    with_oauth(&mut serve);
    serve.args(["mcp", "serve", "--connection", "acme"]);
    let mut client = McpClient::start(serve);
    for i in 0..2 {
        let arguments = serde_json::json!({"id": fixtures::user_id(i)});
        let called = client.request("tools/call", serde_json::json!({"name": "get-user", "arguments": arguments}));
        assert_eq!(called["result"]["isError"], false, "{called}");
    }
    drop(client);
    assert_eq!(gong.token_grants(), ["authorization_code", "refresh_token", "refresh_token"]);
}
