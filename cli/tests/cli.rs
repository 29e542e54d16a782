//! The `terapi` binary as a user runs it, against a fake Gong on loopback.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

mod common;
use common::*;

#[test]
fn verify_succeeds_with_the_right_credential() {
    let gong = gong(12);
    let output = terapi(Some(&gong)).arg("verify").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "gong: credential accepted; 12 users visible");
}

#[test]
fn verify_with_a_wrong_secret_fails_clearly_and_prints_no_secret() {
    let gong = gong(1);
    let wrong = "not-the-secret-9f8e7d";
    let output = terapi(Some(&gong)).env("GONG_ACCESS_KEY_SECRET", wrong).args(["verify", "-vv"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr.contains("error: unauthorized: Gong rejected the credential"), "{stderr}");
    assert!(stderr.contains("check the access key and access key secret"), "{stderr}");
    for secret in [wrong, gong.config().access_key_secret.as_str()] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "secret in output:\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_missing_secret_says_which_variable_to_set() {
    let gong = gong(1);
    let output = terapi(Some(&gong)).env_remove("GONG_ACCESS_KEY_SECRET").arg("verify").output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("GONG_ACCESS_KEY_SECRET"), "{stderr}");
    assert!(gong.requests().is_empty());
}

#[test]
fn sync_run_writes_every_record_as_ndjson() {
    let gong = gong(230);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("users.ndjson");
    let output = terapi(Some(&gong)).args(["sync", "run", "users", "--output"]).arg(&file).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("users: 230 records in 3 pages, done"), "{stderr}");
    let written = std::fs::read_to_string(&file).unwrap();
    let ids: Vec<String> = written
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..230).map(fixtures::user_id).collect::<Vec<_>>());
}

#[test]
fn a_record_the_provider_lists_twice_in_one_run_is_written_once() {
    // Users 0..150 and then user 7 again, on the second page (as when
    // Gong's pages shift while a listing is read).
    let mut users = fixtures::users(150);
    users.push(users[7].clone());
    let gong = tokio().block_on(FakeGong::start(FakeGongConfig { users, ..FakeGongConfig::default() })).unwrap();
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("users-twice.ndjson");
    let output = terapi(Some(&gong)).args(["sync", "run", "users", "--output"]).arg(&file).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("users: 150 records in 2 pages (1 listed again by the provider, written once)"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 150);
}

#[test]
fn action_run_prints_the_output_json() {
    let gong = gong(4);
    let id = fixtures::user_id(2);
    let output = terapi(Some(&gong))
        .args(["action", "run", "get-user", "--input", &format!(r#"{{"id":"{id}"}}"#)])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let user: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(user["id"], id);
    assert_eq!(user["email"], "user2@example.com");
}

#[test]
fn proxy_prints_the_body_and_refuses_foreign_urls() {
    let gong = gong(2);
    let output = terapi(Some(&gong)).args(["proxy", "GET", "/v2/users", "-q", "x=1"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP 200"));
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["records"]["totalRecords"], 2);

    let output = terapi(Some(&gong)).args(["proxy", "GET", "https://attacker.invalid/x"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("absolute URL") && stderr.contains("refused"), "{stderr}");
    assert_eq!(gong.requests().len(), 1, "only the first proxy call reached Gong");
}

#[test]
fn a_broken_providers_file_names_line_and_field() {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("broken-providers.yaml");
    let shipped = include_str!("../../providers.yaml");
    std::fs::write(&file, shipped.replacen("auth_mode: OAUTH2", "auth_mode: OAUTH3", 1)).unwrap();
    // The file loads; the listing says which entry cannot be served and why.
    let output = terapi(None).arg("--providers").arg(&file).args(["providers", "list"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    let listed = stdout.lines().find(|l| l.starts_with("gong-oauth ")).unwrap();
    assert!(listed.contains("read only") && listed.contains("`OAUTH3` is not one Nango defines"), "{listed}");
    assert!(stdout.lines().any(|l| l.starts_with("gong ") && l.contains("auth, proxy, syncs, actions")), "{stdout}");
    // Using it says where.
    let output = terapi(None)
        .arg("--providers")
        .arg(&file)
        .args(["verify", "--provider", "gong-oauth", "--access-token", "t"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    let line = shipped.lines().position(|l| l.contains("auth_mode: OAUTH2")).unwrap() + 1;
    assert!(stderr.contains(&format!("broken-providers.yaml, line {line}")), "{stderr}");
    assert!(stderr.contains("auth_mode") && stderr.contains("OAUTH3"), "{stderr}");
}

/// `master-key generate` makes a key a store opens with; `completions`
/// prints a script for the shell.
#[test]
fn a_generated_master_key_opens_a_store_and_completions_print() {
    let output = terapi(None).args(["master-key", "generate"]).output().unwrap();
    assert!(output.status.success());
    let key = text(&output).0.trim().to_string();
    assert_eq!(key.len(), 44, "{key}");
    let dir = data_dir("generated-master-key");
    let list = |key: &str| {
        terapi(None)
            .env("TERAPI_DATA_DIR", &dir)
            .env("TERAPI_MASTER_KEY", key)
            .args(["connection", "list"])
            .output()
            .unwrap()
    };
    assert!(list(&key).status.success(), "{}", text(&list(&key)).1);
    let other = terapi(None).args(["master-key", "generate"]).output().unwrap();
    let wrong = list(text(&other).0.trim());
    assert_eq!(wrong.status.code(), Some(5), "a store opened with another key: {}", text(&wrong).1);
    for shell in ["bash", "zsh", "fish"] {
        let output = terapi(None).args(["completions", shell]).output().unwrap();
        assert!(output.status.success() && text(&output).0.contains("master-key"), "{shell}");
    }
}

#[test]
fn help_lists_every_command_and_never_shows_secret_values() {
    let output =
        terapi(None).env("GONG_ACCESS_KEY_SECRET", "env-secret-value").args(["verify", "--help"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(stdout.contains("GONG_ACCESS_KEY_SECRET") && !stdout.contains("env-secret-value"), "{stdout}");
    let output = terapi(None).arg("--help").output().unwrap();
    let (stdout, _) = text(&output);
    for command in ["providers", "verify", "sync", "action", "proxy"] {
        assert!(stdout.contains(command), "{command} missing from --help");
    }
}

#[test]
fn lists_need_no_connection() {
    let output = terapi(None).args(["sync", "list"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("users") && stdout.contains("GongUser"), "{stdout}");
    let output = terapi(None).args(["providers", "list"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.contains("gong ") && stdout.contains("gong-oauth") && stdout.contains("OAUTH2"), "{stdout}");
    // `--json` on the lists: documents a script reads.
    let json = |args: &[&str]| -> serde_json::Value {
        let dir = data_dir("lists-json");
        let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(args).arg("--json").output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", text(&output).1);
        serde_json::from_str(&text(&output).0).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    assert_eq!(json(&["sync", "list"])[0]["model"], "GongUser");
    let actions = json(&["action", "list"]);
    let get_user = actions.as_array().unwrap().iter().find(|a| a["name"] == "get-user").unwrap();
    assert_eq!((&get_user["read_only"], &get_user["input_schema"]["type"]), (&true.into(), &"object".into()));
    assert_eq!(json(&["connection", "list"]), serde_json::json!([]));
    assert_eq!(json(&["key", "list"]), serde_json::json!([]));
}

#[test]
fn a_connection_is_verified_saved_synced_into_the_store_and_rotated() {
    let gong = gong(230);
    let dir = data_dir("lifecycle");
    let secret = gong.config().access_key_secret.clone();
    let run = |args: &[&str]| {
        let output = terapi(Some(&gong)).env("TERAPI_DATA_DIR", &dir).args(args).output().unwrap();
        let (stdout, stderr) = text(&output);
        assert!(!stdout.contains(&secret) && !stderr.contains(&secret), "secret printed by {args:?}");
        (output.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = run(&["connection", "create", "acme"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("connection `acme` saved (credential accepted; 230 users visible)"), "{stdout}");
    let (_, stdout, _) = run(&["connection", "list"]);
    assert!(stdout.starts_with("acme") && stdout.contains(&gong.base_url()), "{stdout}");
    let (_, stdout, _) = run(&["connection", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((&listed[0]["id"], &listed[0]["auth_mode"]), (&"acme".into(), &"BASIC".into()), "{listed}");

    // Saved connections need no credential in the environment.
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["sync", "run", "users", "--connection", "acme"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("users: 230 records in 3 pages saved (from the beginning), done"), "{stderr}");

    let (_, stdout, _) = run(&["sync", "status", "--connection", "acme"]);
    assert!(stdout.contains("users") && stdout.contains("done") && stdout.contains("records=230"), "{stdout}");
    let (_, stdout, _) = run(&["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!((&runs[0]["status"], &runs[0]["pages"], &runs[0]["records"]), (&"done".into(), &3.into(), &230.into()));
    let (_, stdout, stderr) = run(&["records", "list", "GongUser", "--connection", "acme"]);
    assert_eq!(stdout.lines().count(), 230);
    assert!(stderr.contains("230 GongUser records"));
    let (_, stdout, _) =
        run(&["records", "list", "GongUser", "--connection", "acme", "--modified-after", "4102444800"]);
    assert_eq!(stdout.lines().count(), 0, "nothing changed after 2100");

    // A rotation to a credential Gong rejects keeps the old one.
    let output = terapi(Some(&gong))
        .env("TERAPI_DATA_DIR", &dir)
        .env("GONG_ACCESS_KEY_SECRET", "rejected-new-secret")
        .args(["connection", "rotate", "acme"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr.contains("the old one is kept") && !stderr.contains("rejected-new-secret"), "{stderr}");
    let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["verify", "--connection", "acme"]).output().unwrap();
    assert!(output.status.success(), "old credential still works: {}", text(&output).1);

    let (code, stdout, _) = run(&["connection", "show", "acme"]);
    assert_eq!(code, Some(0));
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["connection"]["username"], gong.config().access_key);
    assert_eq!(shown["syncs"][0]["records"], 230);

    let (code, _, _) = run(&["connection", "delete", "acme"]);
    assert_eq!(code, Some(0));
    let (_, stdout, _) = run(&["connection", "list"]);
    assert!(stdout.is_empty());
}

#[test]
fn a_credential_gong_rejects_is_not_saved() {
    let gong = gong(1);
    let dir = data_dir("rejected");
    let output = terapi(Some(&gong))
        .env("TERAPI_DATA_DIR", &dir)
        .env("GONG_ACCESS_KEY_SECRET", "wrong")
        .args(["connection", "create", "acme"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr.contains("the credential was not saved") && stderr.contains("unauthorized"), "{stderr}");
    let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["connection", "list"]).output().unwrap();
    assert!(output.status.success() && output.stdout.is_empty());
}

#[test]
fn a_wrong_master_key_is_refused_with_what_to_do() {
    let gong = gong(1);
    let dir = saved_connection(&gong, "wrong-key");
    let key_file = std::fs::read_to_string(dir.join("master.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);

    let other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_ne!(key_file.trim(), other_key);
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .env("TERAPI_MASTER_KEY", other_key)
        .args(["connection", "list"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(5));
    assert!(stderr.contains("master key does not match") && stderr.contains("TERAPI_MASTER_KEY"), "{stderr}");
    // With the right key everything is still there.
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .env("TERAPI_MASTER_KEY", key_file.trim())
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("acme"));
}

#[test]
fn no_secret_appears_in_any_output_of_a_failing_verbose_run() {
    let gong = gong(250);
    gong.fail_after(1);
    let secret = gong.config().access_key_secret.clone();
    let basic = {
        // What the Authorization header carries, in case a log printed it.
        let raw = format!("{}:{}", gong.config().access_key, secret);
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        raw.as_bytes()
            .chunks(3)
            .flat_map(|c| {
                let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
                (0..=c.len()).map(move |i| table[(n >> (18 - 6 * i) & 63) as usize] as char)
            })
            .collect::<String>()
    };
    let output = terapi(Some(&gong)).env("RUST_LOG", "trace").args(["sync", "run", "users", "-vv"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("500") && stderr.contains("resume with --checkpoint"), "{stderr}");
    assert!(stderr.lines().count() > 10, "trace logging was on: {stderr}");
    assert!(!stderr.contains('\x1b'), "no colour codes into a pipe: {stderr:?}");
    for needle in [secret.as_str(), &basic[..basic.len() - 4]] {
        assert!(!stdout.contains(needle) && !stderr.contains(needle), "{needle} in output");
    }
}

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
    let yaml = include_str!("../../providers.yaml").replace("https://app.gong.io", &gong.base_url());
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

#[test]
fn webhooks_store_a_signed_call_once_and_reject_the_rest() {
    use sha2::Digest as _;
    use std::io::BufRead;
    let gong = gong(1);
    let dir = saved_connection(&gong, "webhooks");

    let fixtures_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut server = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args([
            "webhooks",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--connection",
            "acme",
            "--max-body-bytes",
            "65536",
            "--public-url",
            "https://hooks.example.com/webhooks/gong",
            "--public-key",
        ])
        .arg(fixtures_dir.join("webhook-test-public.pem"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{first}")).to_string();
    std::thread::spawn(move || lines.for_each(drop)); // keep draining the logs

    let private =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixtures_dir.join("webhook-test-private.pem")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign_as = |body: &[u8], iat: u64, url: &str| {
        let hash: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
        let claims = serde_json::json!({ "body_sha256": hash, "iat": iat, "exp": iat + 3600, "webhook_url": url });
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &private).unwrap()
    };
    let sign = |body: &[u8]| sign_as(body, now, "https://hooks.example.com/webhooks/gong");
    let post = |body: Vec<u8>, token: Option<String>| -> u16 {
        tokio().block_on(async {
            let mut request = reqwest::Client::new().post(&url).header("content-type", "application/json").body(body);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.send().await.unwrap().status().as_u16()
        })
    };

    let call = fake_gong::fixtures::extensive_call(&fixtures::call(1));
    let payload = serde_json::to_vec(&serde_json::json!({ "callData": call, "isTest": false })).unwrap();
    let first = sign(&payload);
    assert_eq!(post(payload.clone(), Some(first.clone())), 200);
    assert_eq!(post(payload.clone(), Some(sign(&payload))), 200, "delivered twice");
    // The call is renamed in Gong and delivered again; then the first
    // delivery is replayed: it must not roll the call back.
    let mut renamed = call.clone();
    renamed["metaData"]["title"] = "Renamed after the first delivery".into();
    let newer = serde_json::to_vec(&serde_json::json!({ "callData": renamed, "isTest": false })).unwrap();
    assert_eq!(post(newer.clone(), Some(sign(&newer))), 200);
    assert_eq!(post(payload.clone(), Some(first)), 200, "a replay is acknowledged, not applied");
    let stale = sign_as(&payload, now - 3_600, "https://hooks.example.com/webhooks/gong");
    assert_eq!(post(payload.clone(), Some(stale)), 401, "signed an hour ago");
    let elsewhere = sign_as(&payload, now, "https://attacker.example.net/hook");
    assert_eq!(post(payload.clone(), Some(elsewhere)), 401, "signed for another receiver");
    assert_eq!(post(payload.clone(), None), 401, "unsigned");
    assert_eq!(post(payload.clone(), Some(sign(b"another body"))), 401, "signed for another body");
    assert_eq!(post(payload.clone(), Some("not.a.jwt".into())), 401);
    let huge = vec![b' '; 70_000];
    assert_eq!(post(huge.clone(), Some(sign(&huge))), 413, "over --max-body-bytes");
    assert_eq!(post(b"garbage".to_vec(), Some(sign(b"garbage"))), 400);
    let test = serde_json::to_vec(
        &serde_json::json!({ "callData": fake_gong::fixtures::extensive_call(&fixtures::call(2)), "isTest": true }),
    )
    .unwrap();
    assert_eq!(post(test.clone(), Some(sign(&test))), 200, "a test delivery is acknowledged");
    assert_eq!(post(payload.clone(), Some(sign(&payload))), 200, "still up after garbage");
    let _ = server.kill();
    let _ = server.wait();

    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["records", "list", "GongCallExtensive", "--connection", "acme"])
        .output()
        .unwrap();
    let (stdout, _) = text(&output);
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [fixtures::call_id(1)], "stored once; the test delivery not at all");
    let stored: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(stored["metaData"]["title"], "Renamed after the first delivery", "the replay rolled nothing back");
}

fn gong_limited(users: usize) -> FakeGong {
    let config =
        FakeGongConfig { users: fixtures::users(users), rate_limit_per_second: Some(3), ..FakeGongConfig::default() };
    tokio().block_on(FakeGong::start(config)).unwrap()
}

#[test]
fn three_processes_syncing_at_once_keep_gongs_three_a_second_together() {
    // The fake answers 429 to a fourth request within any one second.
    let gong = gong_limited(250);
    let dir = data_dir("three-processes");
    for id in ["acme-1", "acme-2", "acme-3"] {
        let output = terapi(Some(&gong)).env("TERAPI_DATA_DIR", &dir).args(["connection", "create", id]).output();
        assert!(output.as_ref().unwrap().status.success(), "{}", text(&output.unwrap()).1);
    }
    let children: Vec<_> = ["acme-1", "acme-2", "acme-3"]
        .iter()
        .map(|id| {
            terapi(None)
                .env("TERAPI_DATA_DIR", &dir)
                .args(["sync", "run", "users", "--connection", id])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let (_, stderr) = text(&output);
        assert!(output.status.success() && stderr.contains("250 records in 3 pages saved"), "{stderr}");
    }
    let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200; 12], "3 verifies and 9 pages, none answered 429 or retried");
    assert_eq!(gong.busiest_second(), 3, "Gong's limit was kept, and used");
    // Times are printed as RFC 3339.
    let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["sync", "status", "-c", "acme-2"]).output().unwrap();
    let (stdout, _) = text(&output);
    let last_run = stdout.split("last_run=").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(last_run.len() == 20 && last_run.ends_with('Z') && last_run.as_bytes()[10] == b'T', "{stdout}");
}

#[test]
fn the_daily_budget_holds_across_processes() {
    let gong = gong(3);
    let dir = data_dir("daily-across");
    let providers = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("providers-per-day-5.yaml");
    std::fs::write(&providers, include_str!("../../providers.yaml").replacen("per_day: 10000", "per_day: 5", 1))
        .unwrap();
    let mut answered = 0;
    for _ in 0..12 {
        let output =
            terapi(Some(&gong)).env("TERAPI_DATA_DIR", &dir).arg("--providers").arg(&providers).arg("verify").output();
        let output = output.unwrap();
        if output.status.success() {
            answered += 1;
        } else {
            let (_, stderr) = text(&output);
            assert!(
                stderr.contains("daily budget of 5 requests") && stderr.contains("resets at 00:00 UTC"),
                "{stderr}"
            );
        }
    }
    assert_eq!(answered, 5);
    assert_eq!(gong.requests().len(), 5, "the other runs never reached Gong");
}

#[test]
fn first_runs_at_once_on_a_fresh_data_dir_all_succeed() {
    let dir = data_dir("fresh-race");
    let children: Vec<_> = (0..4)
        .map(|_| {
            terapi(None)
                .env("TERAPI_DATA_DIR", &dir)
                .args(["connection", "list"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
    }
}

#[test]
fn bad_times_and_oversized_inputs_are_clear_errors_that_echo_nothing() {
    let gong = gong(2);
    let dir = saved_connection(&gong, "bad-input");
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["records", "list", "GongUser", "-c", "acme", "--modified-after", "last-tuesday-xyz"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("--modified-after") && stderr.contains("expected an RFC 3339 time"), "{stderr}");
    assert!(!stderr.contains("last-tuesday-xyz"), "{stderr}");

    let big = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("big-input.json");
    std::fs::write(&big, vec![b' '; (8 << 20) + 1]).unwrap();
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["action", "run", "get-user", "-c", "acme", "--input"])
        .arg(format!("@{}", big.display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("larger than 8 MiB"), "{stderr}");

    // A header typed without its colon may be a credential: never repeated.
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["proxy", "GET", "/v2/users", "-c", "acme", "-H", "X-Token secret-token-123"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("--header takes KEY:VALUE") && !stderr.contains("secret-token-123"), "{stderr}");
    assert_eq!(gong.requests().len(), 1, "only the verify of `connection create` reached Gong");
}

/// A new, empty database on the test PostgreSQL server (`scripts/test.sh`
/// starts one and sets TERAPI_TEST_DATABASE_URL).
fn fresh_database(name: &str) -> (String, tokio_postgres::Client) {
    let admin = std::env::var("TERAPI_TEST_DATABASE_URL").expect(
        "TERAPI_TEST_DATABASE_URL is not set: run ./scripts/test.sh, which starts a PostgreSQL server for the tests",
    );
    let connect = |url: String| {
        tokio().block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        })
    };
    let database = format!("cli_{}_{name}", std::process::id());
    let admin_client = connect(admin.clone());
    tokio().block_on(admin_client.batch_execute(&format!("CREATE DATABASE {database}"))).unwrap();
    let url = format!("{}/{database}", admin.rsplit_once('/').unwrap().0);
    (url.clone(), connect(url))
}

fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    tokio().block_on(db.query_one(sql, &[])).map(|row| row.get(0)).unwrap_or(0)
}

#[test]
fn a_fleet_of_three_workers_survives_one_killed_mid_run() {
    // Five Gong tenants (companies), each with Gong's 3-a-second limit, ten
    // connections each: fifty syncs of three pages.
    let tenants: Vec<FakeGong> = (0..5).map(|_| gong_limited(250)).collect();
    let (url, db) = fresh_database("fleet");
    let dir = data_dir("fleet");
    let fleet = |cmd: &mut Command| {
        cmd.env("TERAPI_DATA_DIR", &dir).env("TERAPI_DATABASE_URL", &url);
    };
    for i in 0..50 {
        let mut create = terapi(Some(&tenants[i % 5]));
        fleet(&mut create);
        let output = create.args(["connection", "create", &format!("acme-{i}")]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
    }
    let mut schedule = terapi(None);
    fleet(&mut schedule);
    let output = schedule.args(["sync", "schedule", "users", "--all"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);

    let mut workers: Vec<std::process::Child> = (0..3)
        .map(|_| {
            let mut worker = terapi(None);
            fleet(&mut worker);
            worker
                .args(["worker", "--concurrency", "5", "--lease-secs", "3", "--exit-when-idle"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill the first worker with SIGKILL while it is inside a run that has
    // committed a page but not finished.
    let victim = workers[0].id();
    let mid_run = format!(
        "SELECT COUNT(*) FROM sync_runs WHERE owner LIKE '%:{victim}:%' AND finished_at_ms IS NULL AND pages > 0"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&db, &mid_run) == 0 {
        assert!(std::time::Instant::now() < deadline, "the first worker never got a run under way");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    for worker in workers.drain(1..) {
        let output = worker.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
    }

    // Every record stored exactly once, for every connection.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM records"), 50 * 250);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM (SELECT DISTINCT connection_id, id FROM records) r"), 50 * 250);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sync_state WHERE status = 'done' AND due_at IS NULL"), 50);
    // The victim's runs were cut off, and taken over.
    assert!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM sync_runs WHERE owner LIKE '%:{victim}:%' AND finished_at_ms IS NULL")
        ) >= 1
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sync_runs WHERE status = 'done'"), 50, "one finished run per sync");
    // A taken-over sync resumed from its checkpoint: no page was committed twice.
    assert_eq!(count(&db, "SELECT SUM(pages)::bigint FROM sync_runs"), 50 * 3);
    // No sync ran concurrently with itself: each run started after the one
    // before it ended (or, for a killed one, after its last sign of life).
    let overlapping = "SELECT COUNT(*) FROM sync_runs a JOIN sync_runs b
         ON a.connection_id = b.connection_id AND a.sync = b.sync AND a.id < b.id
         WHERE b.started_at_ms < COALESCE(a.finished_at_ms, a.last_beat_ms)";
    assert_eq!(count(&db, overlapping), 0);
    // No tenant saw more than 3 requests in any second, and none got a 429.
    // The one request a worker holds when it is frozen goes out when it
    // wakes, into a second the others may have used up: Gong may refuse
    // that one with 429 (the host waits and retries it). Nothing else may
    // go over the rate.
    for gong in &tenants {
        let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).filter(|s| *s != 200).collect();
        assert!(statuses.iter().all(|s| *s == 429) && statuses.len() <= 1, "answers other than 200: {statuses:?}");
        assert!(gong.busiest_second() <= 3 + statuses.len(), "{}", gong.busiest_second());
    }
}

/// A PostgreSQL server of the test's own (it restarts it), removed on drop.
struct OwnPostgres {
    url: String,
    data: String,
}

fn postgres_script(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
    let output = Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(output.status.success(), "postgres.sh {args:?}: {}", text(&output).1);
    text(&output).0
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let out = postgres_script(&["start"]);
        let var = |name: &str| {
            out.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().trim().to_string()
        };
        OwnPostgres { url: var("TERAPI_TEST_DATABASE_URL"), data: var("TERAPI_TEST_PGDATA") }
    }

    /// Stops the server (cutting every connection), leaves it down for
    /// `down_secs`, and starts it again on the same port.
    fn restart(&self, down_secs: u32) {
        postgres_script(&["restart", &self.data, &down_secs.to_string()]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let _ = Command::new("bash").arg(script).args(["stop", &self.data]).output();
    }
}

fn signal(pid: u32, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap().success());
}

/// Deliveries as the app's endpoint received them: (event id, body).
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// The app's webhook endpoint: every delivery's event id and body, answered 200.
fn webhook_receiver() -> (String, Deliveries) {
    let received: Deliveries = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let id = headers.get("x-terapi-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap().push((id, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio().spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// `/metrics` after a sync that `terapi serve` ran: the counters moved by
/// what Gong saw and what the store kept; the endpoint needs the secret key.
#[test]
fn metrics_count_what_a_sync_sent_and_saved() {
    let gong = gong(230);
    let dir = saved_connection(&gong, "serve-metrics");
    let before = gong.requests().len();
    let (_server, url, key) = serve_with_key(&dir, &[], &[]);
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("{url}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        tokio().block_on(async {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    assert_eq!(get("/metrics", None).0, 401);
    let trigger = http
        .post(format!("{url}/sync/trigger"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"provider_config_key": "gong", "connection_id": "acme", "syncs": ["users"]}));
    let status = tokio().block_on(async { trigger.send().await.unwrap().status().as_u16() });
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let metrics = loop {
        let (code, text) = get("/metrics", Some(&key));
        assert_eq!(code, 200);
        if text.contains("terapi_sync_runs_total{provider=\"gong\",sync=\"users\",outcome=\"done\"} 1") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no finished run in:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let value = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(value("terapi_sync_records_total{provider=\"gong\",sync=\"users\"}"), 230, "{metrics}");
    let sent = gong.requests().len() - before;
    assert!(sent >= 3, "{sent}");
    let ok = value(&format!(
        "terapi_provider_requests_total{{tenant=\"{}\",status=\"200\"}}",
        gong.base_url().trim_end_matches('/')
    ));
    assert_eq!(ok as usize, sent, "every request Gong saw, counted once:\n{metrics}");
    assert!(
        metrics.contains("terapi_sync_run_duration_seconds_count{provider=\"gong\",sync=\"users\",outcome=\"done\"} 1")
    );
    assert!(
        metrics.contains(
            "terapi_api_request_duration_seconds_count{method=\"POST\",route=\"/sync/trigger\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    // Budget left is the store's count (every process on it, the verify
    // of `connection create` included), as of this process's last request.
    let tenant = gong.base_url().trim_end_matches('/').to_string();
    assert_eq!(
        value(&format!("terapi_provider_budget_remaining{{tenant=\"{tenant}\"}}")) as usize,
        10_000 - gong.requests().len(),
        "{metrics}"
    );
    // The queue is read from the store at the scrape: nothing waits now.
    assert!(metrics.contains("# TYPE terapi_sync_queue_waiting gauge\nterapi_sync_queue_waiting 0\n"), "{metrics}");
    assert!(metrics.contains("terapi_sync_queue_running 0\n"), "{metrics}");
    assert!(metrics.contains("terapi_scheduler_lag_seconds 0\n"), "{metrics}");
    assert!(!metrics.contains(&gong.config().access_key_secret), "no secret in the metrics");
}

/// `/health/ready` answers 503 while the store is away (a PostgreSQL
/// restart) and 200 again when it is back; `/health/live` stays 200.
#[test]
fn health_ready_follows_the_store_through_a_database_restart() {
    let postgres = OwnPostgres::start();
    let dir = data_dir("health-ready");
    let mut serve = terapi(None);
    serve
        .env("TERAPI_DATA_DIR", &dir)
        .env("TERAPI_DATABASE_URL", &postgres.url)
        .args(["serve", "--bind", "127.0.0.1:0", "--concurrency", "0"])
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().unwrap();
    let url = listening_url(&mut child).expect("the address is printed");
    let _server = ChildGuard(child);
    let http = reqwest::Client::new();
    let status = |path: &str| {
        let request = http.get(format!("{url}{path}")).timeout(std::time::Duration::from_secs(5));
        tokio().block_on(async { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
    };
    assert_eq!(status("/health/ready"), 200);
    let data = postgres.data.clone();
    let restart = std::thread::spawn(move || postgres_script(&["restart", &data, "4"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while !restart.is_finished() || seen.last() != Some(&200) {
        seen.push(status("/health/ready"));
        assert_eq!(status("/health/live"), 200);
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    restart.join().unwrap();
    assert!(seen.contains(&503), "ready while the database was down: {seen:?}");
    assert_eq!(seen.last(), Some(&200));
    drop(postgres);
}

#[test]
fn a_fleet_outlives_a_database_restart_and_a_worker_paused_past_its_lease() {
    // Four Gong tenants at 3 requests a second, eight connections each:
    // thirty-two syncs of three pages, on a PostgreSQL of the test's own.
    let tenants: Vec<FakeGong> = (0..4).map(|_| gong_limited(250)).collect();
    let postgres = OwnPostgres::start();
    let (url, db) = {
        let url = postgres.url.clone();
        let client = tokio().block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        });
        (url, client)
    };
    let dir = data_dir("fleet-outage");
    let (hooks, received) = webhook_receiver();
    let fleet = |cmd: &mut Command| {
        cmd.env("TERAPI_DATA_DIR", &dir).env("TERAPI_DATABASE_URL", &url);
    };
    let syncs = 32;
    for i in 0..syncs {
        let mut create = terapi(Some(&tenants[i % 4]));
        fleet(&mut create);
        let output = create.args(["connection", "create", &format!("acme-{i}")]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
    }
    let mut schedule = terapi(None);
    fleet(&mut schedule);
    let output = schedule.args(["sync", "schedule", "users", "--all"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);

    let mut workers: Vec<ChildGuard> = (0..3)
        .map(|_| {
            let mut worker = terapi(None);
            fleet(&mut worker);
            let child = worker
                .env("TERAPI_WEBHOOK_URL", &hooks)
                .env("TERAPI_WEBHOOK_SIGNING_KEY", "whsec-fleet")
                .args(["worker", "--concurrency", "4", "--lease-secs", "3", "--exit-when-idle"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            ChildGuard(child)
        })
        .collect();
    // Once a worker is inside a run that committed a page, pause it
    // (SIGSTOP, as a frozen container is) for longer than its lease, and
    // restart PostgreSQL meanwhile.
    let pids: Vec<u32> = workers.iter().map(|w| w.0.id()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let victim = loop {
        let owners = tokio()
            .block_on(db.query("SELECT owner FROM sync_runs WHERE finished_at_ms IS NULL AND pages > 0", &[]))
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>())
            .unwrap_or_default();
        // An owner is `host:pid:nonce:run`.
        let busy = owners.iter().filter_map(|o| o.split(':').nth(1)?.parse::<u32>().ok()).find(|p| pids.contains(p));
        if let Some(pid) = busy {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no worker got a run under way");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    signal(victim, "STOP");
    let paused = std::time::Instant::now();
    postgres.restart(2);
    // Every worker came through the outage (none exited on it).
    std::thread::sleep(std::time::Duration::from_secs(1));
    for worker in &mut workers {
        assert!(worker.0.try_wait().unwrap().is_none(), "a worker exited during the database restart");
    }
    std::thread::sleep(std::time::Duration::from_secs(8).saturating_sub(paused.elapsed()));
    signal(victim, "CONT");
    let mut stderrs = Vec::new();
    for mut worker in workers.drain(..) {
        let status = worker.0.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(worker.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "{stderr}");
        stderrs.push(stderr);
    }

    let db = tokio().block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    });
    let syncs = syncs as i64;
    // Every record stored once, every sync done, no page committed twice.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM (SELECT DISTINCT connection_id, id FROM records) r"), syncs * 250);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM records"), syncs * 250);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sync_state WHERE status = 'done'"), syncs);
    let doubled = runs_where(
        &db,
        "connection_id IN (SELECT connection_id FROM sync_runs GROUP BY connection_id HAVING SUM(pages) > 3)",
    );
    assert!(doubled.is_empty(), "pages committed twice:\n{}", doubled.join("\n"));
    assert_eq!(count(&db, "SELECT SUM(pages)::bigint FROM sync_runs"), syncs * 3);
    // The paused worker's run was taken over while it slept; woken, it
    // committed nothing more.
    let lost = format!("SELECT COUNT(*) FROM sync_runs WHERE owner LIKE '%:{victim}:%' AND status = 'lost'");
    if count(&db, &lost) == 0 {
        let rows = runs_where(
            &db,
            &format!("connection_id IN (SELECT connection_id FROM sync_runs WHERE owner LIKE '%:{victim}:%')"),
        );
        let all = count(&db, "SELECT COUNT(*) FROM sync_runs");
        panic!(
            "the paused worker's run was not taken over:\n{}\n{all} runs; stderr:\n{}",
            rows.join("\n"),
            stderrs.join("\n---\n")
        );
    }
    let overlapping = "SELECT COUNT(*) FROM sync_runs a JOIN sync_runs b
         ON a.connection_id = b.connection_id AND a.sync = b.sync AND a.id < b.id
         WHERE b.started_at_ms < COALESCE(a.finished_at_ms, a.last_beat_ms)";
    assert_eq!(count(&db, overlapping), 0);
    // The one request a worker holds when it is frozen goes out when it
    // wakes, into a second the others may have used up: Gong may refuse
    // that one with 429 (the host waits and retries it). Nothing else may
    // go over the rate.
    for gong in &tenants {
        let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).filter(|s| *s != 200).collect();
        assert!(statuses.iter().all(|s| *s == 429) && statuses.len() <= 1, "answers other than 200: {statuses:?}");
        assert!(gong.busiest_second() <= 3 + statuses.len(), "{}", gong.busiest_second());
    }
    // Every event (a change webhook per finished sync, an auth webhook per
    // connection) delivered, by the workers.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE kind = 'sync'"), syncs);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE kind = 'auth'"), syncs);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE status <> 'delivered'"), 0);
    // Delivery is at least once: a worker paused mid-send (its receiver
    // answered while it slept) sends again on waking, with the same id and
    // body, so the app counts by id.
    let received = received.lock().unwrap().clone();
    let mut by_id: std::collections::BTreeMap<&str, &serde_json::Value> = Default::default();
    for (id, body) in &received {
        if let Some(earlier) = by_id.insert(id.as_str(), body) {
            assert_eq!(earlier, body, "event {id} was sent twice with different bodies");
        }
    }
    let stored = tokio().block_on(db.query("SELECT id FROM events", &[])).unwrap();
    let stored: std::collections::BTreeSet<String> = stored.iter().map(|r| r.get(0)).collect();
    assert_eq!(by_id.keys().map(|id| id.to_string()).collect::<std::collections::BTreeSet<_>>(), stored);
    // A worker frozen mid-batch sends the rest of its claimed batch (16)
    // on waking, after another worker delivered them: at least once, and
    // at most one batch more.
    assert!(received.len() as i64 <= 2 * syncs + 16 + 4, "{} deliveries of {} events", received.len(), 2 * syncs);
    let changes: Vec<&serde_json::Value> = by_id.values().copied().filter(|b| b["type"] == "sync").collect();
    assert_eq!(changes.len() as i64, syncs);
    assert!(changes.iter().all(|b| b["success"] == true && b["responseResults"]["added"] == 250), "{changes:?}");
    drop(postgres);
}

#[test]
fn sigterm_stops_a_worker_at_once_with_a_receiver_hanging_and_the_event_stays_for_the_next() {
    let gong = gong(3);
    // Saving the connection wrote its auth event to the store's outbox.
    let dir = saved_connection(&gong, "sigterm-webhooks");
    // A receiver that takes the connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (accepted, sent) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    let worker = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .env("TERAPI_WEBHOOK_URL", &hanging)
        .env("TERAPI_WEBHOOK_SIGNING_KEY", "whsec-term")
        .arg("worker")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut worker = ChildGuard(worker);
    sent.recv_timeout(std::time::Duration::from_secs(30)).expect("the worker sends the event");
    let asked = std::time::Instant::now();
    signal(worker.0.id(), "TERM");
    let status = worker.0.wait().unwrap();
    assert!(asked.elapsed() < std::time::Duration::from_secs(10), "took {:?} to stop", asked.elapsed());
    assert_eq!(status.code(), Some(130));

    let events = || {
        let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["webhooks", "events", "--json"]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
        serde_json::from_str::<serde_json::Value>(&text(&output).0).unwrap()
    };
    let pending = events();
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    assert_eq!((pending[0]["kind"].as_str(), pending[0]["status"].as_str()), (Some("auth"), Some("pending")));

    // The next worker delivers it, with the same id.
    let (hooks, received) = webhook_receiver();
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .env("TERAPI_WEBHOOK_URL", &hooks)
        .env("TERAPI_WEBHOOK_SIGNING_KEY", "whsec-term")
        .args(["worker", "--exit-when-idle"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, pending[0]["id"].as_str().unwrap());
    assert_eq!((received[0].1["type"].as_str(), received[0].1["connectionId"].as_str()), (Some("auth"), Some("acme")));
    assert_eq!(events()[0]["status"], "delivered");
    let log = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["webhooks", "deliveries"]).output().unwrap();
    let (stdout, _) = text(&log);
    assert!(stdout.contains("200 ok") && stdout.contains(&hooks), "{stdout}");
}

/// The runs matching `condition`, a line each, for a failure to show.
fn runs_where(db: &tokio_postgres::Client, condition: &str) -> Vec<String> {
    let sql = format!(
        "SELECT connection_id, owner, status, pages, records, started_at_ms, finished_at_ms FROM sync_runs
         WHERE {condition} ORDER BY id"
    );
    let rows = tokio().block_on(db.query(&sql, &[])).unwrap();
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} pages {} records {} {}..{:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, Option<i64>>(6)
            )
        })
        .collect()
}

/// `terapi serve` on a saved connection, with a fresh secret key; returns
/// the server, its URL and the key.
fn serve_with_key(dir: &std::path::Path, extra: &[&str], envs: &[(&str, String)]) -> (ChildGuard, String, String) {
    let key = terapi(None).env("TERAPI_DATA_DIR", dir).args(["key", "create", "--label", "node"]).output().unwrap();
    assert!(key.status.success(), "{}", text(&key).1);
    let key = text(&key).0.trim().to_string();
    assert!(key.starts_with("terapi_sk_"), "{key}");
    let mut command = terapi(None);
    command.env("TERAPI_DATA_DIR", dir).args(["serve", "--bind", "127.0.0.1:0"]).args(extra);
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let url = listening_url(&mut child).expect("the address is printed");
    (ChildGuard(child), url, key)
}

/// Where the browser tests put their screenshots (target/tmp/screenshots).
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each screenshot was written: a PNG with more than `min_bytes` of picture.
fn assert_screenshots(dir: &std::path::Path, names: &[&str], min_bytes: usize) {
    for name in names {
        let png = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > min_bytes, "{name}: {} bytes", png.len());
    }
}

/// `node --test FILE` in tests/node (whose packages `scripts/test.sh` installs).
fn node_test(file: &str, envs: &[(&str, String)]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    assert!(
        dir.join("node_modules/@nangohq/node").exists(),
        "tests/node has no node_modules: run ./scripts/test.sh (it runs `npm ci --prefix tests/node`)"
    );
    let mut command = Command::new("node");
    command.current_dir(&dir).args(["--test", "--test-reporter=spec", file]);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().expect("node runs (Node.js 20 or later)");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{file} failed:\n{stdout}\n{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `terapi serve` on the saved connection `acme` of `gong` (which has
/// `users` users), sending webhooks to a port the Node test listens on; the
/// server and the environment a Node test needs.
fn serve_for_node(gong: &FakeGong, name: &str, users: usize) -> (ChildGuard, Vec<(&'static str, String)>) {
    let dir = saved_connection(gong, name);
    let webhook_port = free_port();
    let signing_key = format!("whsec-{name}");
    let (server, url, key) = serve_with_key(
        &dir,
        &["--webhook-url", &format!("http://127.0.0.1:{webhook_port}/webhooks")],
        &[("TERAPI_WEBHOOK_SIGNING_KEY", signing_key.clone())],
    );
    let envs = vec![
        ("TERAPI_HOST", url),
        ("TERAPI_SECRET_KEY", key),
        ("TERAPI_CONNECTION_ID", "acme".into()),
        ("TERAPI_WEBHOOK_PORT", webhook_port.to_string()),
        ("TERAPI_WEBHOOK_SIGNING_KEY", signing_key),
        ("GONG_USER_COUNT", users.to_string()),
    ];
    (server, envs)
}

/// `terapi …` on `dir` (with `gong`'s credential in the environment);
/// stdout, or the test fails with stderr.
fn operator(dir: &std::path::Path, gong: Option<&FakeGong>, args: &[&str]) -> String {
    let output = terapi(gong).env("TERAPI_DATA_DIR", dir).args(args).output().unwrap();
    assert!(output.status.success(), "terapi {args:?}: {}", text(&output).1);
    text(&output).0.trim().to_string()
}

/// The governance of C1's Gong MCP server, through `terapi serve`'s /mcp,
/// as MCP clients on the official TypeScript SDK see it (tests/node/mcp.test.mjs
/// says what each user should see).
#[test]
fn mcp_clients_on_the_official_sdk_see_what_their_access_profiles_grant() {
    let gong = gong(12);
    let dir = saved_connection(&gong, "serve-mcp-governed");
    operator(&dir, Some(&gong), &["connection", "create", "globex"]);
    // A connection Gong stops accepting after it was saved.
    let stale_gong = common::gong(3);
    operator(&dir, Some(&stale_gong), &["connection", "create", "stale"]);
    stale_gong.fail_next(10_000, 401);

    operator(&dir, None, &["toolset", "create", "people", "get-user", "list-users"]);
    operator(&dir, None, &["toolset", "create", "calls", "get-call-transcripts", "upload-call"]);
    let alice = operator(&dir, None, &["mcp", "user", "add", "alice"]);
    let bob = operator(&dir, None, &["mcp", "user", "add", "bob"]);
    assert!(alice.starts_with("terapi_mcp_") && alice != bob, "{alice}");
    operator(&dir, None, &["profile", "create", "sales"]);
    operator(&dir, None, &["profile", "grant", "sales", "--toolset", "people"]);
    operator(&dir, None, &["profile", "add-user", "sales", "alice"]);
    operator(&dir, None, &["profile", "create", "ops"]);
    operator(&dir, None, &["profile", "grant", "ops", "--toolset", "people"]);
    operator(&dir, None, &["profile", "grant", "ops", "--toolset", "calls"]);
    operator(&dir, None, &["profile", "add-user", "ops", "bob"]);
    operator(&dir, None, &["tool", "default", "--connection", "globex", "pending-for-all"]);
    operator(&dir, None, &["tool", "approve", "--connection", "globex", "upload-call"]);
    // Unknown names change nothing and say what to do.
    let refused = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["profile", "grant", "ops", "--toolset", "nope"])
        .output()
        .unwrap();
    assert!(!refused.status.success() && text(&refused).1.contains("no toolset named `nope`"), "{}", text(&refused).1);
    let refused = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["toolset", "delete", "people"]).output().unwrap();
    assert!(text(&refused).1.contains("bound by the access profile(s) ops, sales"), "{}", text(&refused).1);

    let (_server, url, key) = serve_with_key(&dir, &[], &[]);
    node_test(
        "mcp.test.mjs",
        &[
            ("TERAPI_HOST", url),
            ("TERAPI_SECRET_KEY", key),
            ("ALICE_TOKEN", alice),
            ("BOB_TOKEN", bob),
            ("TERAPI_DATA_DIR", dir.display().to_string()),
            ("TERAPI_BIN", env!("CARGO_BIN_EXE_terapi").to_string()),
        ],
    );
    // Nothing the calls did reached the stale connection's Gong but 401s,
    // and no unapproved tool reached Gong at all.
    assert!(!gong.requests().iter().any(|r| r.method == "POST" && r.path.contains("/v2/calls")), "upload-call ran");
}

#[test]
fn an_app_on_nangos_node_client_works_against_terapi_serve() {
    let gong = gong(130);
    let (_server, mut envs) = serve_for_node(&gong, "serve-node", 130);
    // For saving a connection through a Connect session, as the page does.
    envs.push(("GONG_ACCESS_KEY", gong.config().access_key.clone()));
    envs.push(("GONG_ACCESS_KEY_SECRET", gong.config().access_key_secret.clone()));
    envs.push(("GONG_BASE_URL", gong.base_url()));
    node_test("nango.test.mjs", &envs);
}

#[test]
fn an_app_on_nangos_node_client_follows_changes_from_a_saved_cursor() {
    let gong = gong(130);
    let (_server, base) = serve_for_node(&gong, "serve-node-changes", 130);
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-changes-state.json");
    let envs = |phase: &str| {
        let mut envs = base.clone();
        envs.extend([
            ("PHASE", phase.to_string()),
            ("STATE_FILE", state.display().to_string()),
            ("CHANGED_ID", fixtures::user_id(5)),
            ("ADDED_ID", fixtures::user_id(130)),
            ("REMOVED_IDS", format!("{},{}", fixtures::user_id(7), fixtures::user_id(9))),
        ]);
        envs
    };
    node_test("changes.test.mjs", &envs("before"));
    // Gong changes one user's title, removes two users and adds one.
    let mut users = fixtures::users(131);
    users[5]["title"] = "Head of Sales".into();
    users.remove(9);
    users.remove(7);
    gong.set_users(&users);
    node_test("changes.test.mjs", &envs("after"));
}

#[test]
fn the_connect_page_in_chromium_saves_only_what_gong_accepts() {
    let gong = gong(3);
    let dir = data_dir("serve-browser");
    let (_server, url, key) = serve_with_key(&dir, &["--app-name", "Acme CRM"], &[]);
    let screenshots = screenshot_dir();
    node_test(
        "connect.browser.test.mjs",
        &[
            ("TERAPI_HOST", url),
            ("TERAPI_SECRET_KEY", key),
            ("GONG_BASE_URL", gong.base_url()),
            ("GONG_ACCESS_KEY", gong.config().access_key.clone()),
            ("GONG_ACCESS_KEY_SECRET", gong.config().access_key_secret.clone()),
            ("APP_NAME", "Acme CRM".into()),
            ("DOCS_CONNECT", "https://nango.dev/docs/api-integrations/gong/connect".into()),
            ("SCREENSHOT_DIR", screenshots.display().to_string()),
        ],
    );
    assert_screenshots(&screenshots, &["connect-1280x800.png", "connect-390x844.png"], 5_000);
}

/// `terapi ARGS` (a deployment's command, its bind address moved to a
/// free port, its data in `dir`) serves, is ready, and exits 0 on SIGTERM.
fn serves_and_stops_on_sigterm(args: &[String], dir: &std::path::Path) {
    let args: Vec<String> =
        args.iter().map(|a| if a.contains(":3003") { "127.0.0.1:0".to_string() } else { a.clone() }).collect();
    let mut child = terapi(None)
        .env("TERAPI_DATA_DIR", dir.join("data"))
        .env("TERAPI_CACHE_DIR", dir.join("cache"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = listening_url(&mut child).unwrap_or_else(|| panic!("terapi {args:?} did not start"));
    let ready = tokio().block_on(async { reqwest::get(format!("{url}/health/ready")).await.unwrap().status() });
    assert_eq!(ready, 200, "terapi {args:?}");
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "terapi {args:?} did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "terapi {args:?} exited {status} on SIGTERM");
}

/// deploy/terapi.service: `systemd-analyze verify` finds nothing to say (an
/// unknown key is only a warning to it, so any output fails), the unit is
/// hardened, and its ExecStart serves and stops cleanly on its KillSignal.
#[test]
fn the_systemd_unit_verifies_and_its_command_serves_and_stops_on_sigterm() {
    let unit = include_str!("../../deploy/terapi.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit has no {key}="))
    };
    for (key, wanted) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "terapi"),
        ("LimitNOFILE", "65536"),
    ] {
        assert_eq!(value(key), wanted, "{key}");
    }
    assert!(!unit.lines().any(|l| l.starts_with("MemoryDenyWriteExecute=yes")), "wasmtime needs W+X pages");
    let exec: Vec<String> = value("ExecStart").split_whitespace().map(str::to_string).collect();
    assert_eq!(exec[0], "/usr/local/bin/terapi");
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("systemd-unit");
        std::fs::create_dir_all(&dir).unwrap();
        let local = dir.join("terapi.service");
        std::fs::write(&local, unit.replace("/usr/local/bin/terapi", env!("CARGO_BIN_EXE_terapi"))).unwrap();
        let verified = Command::new("systemd-analyze").arg("verify").arg(&local).output().unwrap();
        let (stdout, stderr) = text(&verified);
        assert!(verified.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(), "{stdout}{stderr}");
    } else {
        eprintln!("systemd-analyze is not installed: the unit's keys and command are checked, not verified by systemd");
    }
    let dir = data_dir("systemd-exec");
    serves_and_stops_on_sigterm(&exec[1..], &dir);
}

/// The Dockerfile (no Docker daemon here to build it): a build stage on the
/// workspace's Rust with the wasm target, a runtime stage that copies only
/// the binary and runs it as a non-root user, exec-form ENTRYPOINT and CMD
/// whose command serves and stops on the STOPSIGNAL; the build context
/// leaves target/ out.
#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_terapi_unprivileged_in_another() {
    let text = include_str!("../../Dockerfile");
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        pending.push_str(line.trim_end_matches('\\'));
        pending.push(' ');
        if !line.ends_with('\\') {
            let (keyword, rest) = pending.trim().split_once(' ').unwrap_or((pending.trim(), ""));
            instructions.push((keyword.to_string(), rest.trim().to_string()));
            pending.clear();
        }
    }
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    for (keyword, _) in &instructions {
        assert!(KNOWN.contains(&keyword.as_str()), "not a Dockerfile instruction: {keyword}");
    }
    let stages: Vec<&String> = instructions.iter().filter(|(k, _)| k == "FROM").map(|(_, v)| v).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    let rust = include_str!("../../Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap();
    assert!(stages[0].starts_with(&format!("rust:{rust}-")) && stages[0].ends_with(" AS build"), "{}", stages[0]);
    let build_end = instructions.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let (build, runtime) = instructions.split_at(build_end);
    let runs = |stage: &[(String, String)]| {
        stage.iter().filter(|(k, _)| k == "RUN").map(|(_, v)| v.clone()).collect::<Vec<_>>().join(" && ")
    };
    assert!(runs(build).contains("rustup target add wasm32-wasip2"), "the component is built in");
    assert!(runs(build).contains("cargo build --release --locked -p terapi"));
    let get = |key: &str| runtime.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
    assert!(get("COPY").starts_with("--from=build "), "the runtime stage takes only the build's binary");
    let user = get("USER");
    assert!(!user.is_empty() && !user.starts_with("root") && !user.starts_with("0"), "USER {user}");
    assert_eq!(get("STOPSIGNAL"), "SIGTERM");
    let exec = |key: &str| -> Vec<String> { serde_json::from_str(get(key)).unwrap_or_else(|e| panic!("{key}: {e}")) };
    let (entrypoint, cmd) = (exec("ENTRYPOINT"), exec("CMD"));
    assert_eq!(entrypoint, ["/usr/local/bin/terapi"]);
    assert!(include_str!("../../.dockerignore").lines().any(|l| l.trim() == "target"));
    let dir = data_dir("docker-cmd");
    serves_and_stops_on_sigterm(&cmd, &dir);
}

/// The shell words of one README line: single quotes kept together, a
/// comment dropped, `[optional]` brackets taken off (the option is run).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            '#' if !quoted && !started => break,
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words.into_iter().map(|w| w.trim_start_matches('[').trim_end_matches(']').to_string()).collect()
}

/// The lines of the first ```sh block after `heading` in README.md.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let after = &readme[readme.find(heading).unwrap_or_else(|| panic!("README has no `{heading}`"))..];
    let block = &after[after.find("```sh\n").expect("a sh block") + 6..];
    block[..block.find("```").expect("the block ends")].lines().map(str::to_string).collect()
}

/// The README's examples for a Gong account, saved connections and
/// gong-oauth, run as written against the demo's fake Gong (what
/// `fake-gong` serves: `FakeGongConfig::demo`), each return data.
#[test]
fn every_readme_example_returns_data_against_the_demo_fake() {
    use std::io::BufRead;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let gong = tokio().block_on(FakeGong::start(FakeGongConfig::demo(250, 48, now))).unwrap();
    let oauth_gong = tokio()
        .block_on(FakeGong::start(FakeGongConfig {
            oauth: Some(fake_gong::OAuthConfig::default()),
            ..FakeGongConfig::demo(250, 48, now)
        }))
        .unwrap();
    let providers = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-oauth-providers.yaml");
    std::fs::write(&providers, FakeGongConfig::oauth_providers_yaml(&oauth_gong.base_url())).unwrap();
    let dir = data_dir("readme");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let mut ran = Vec::new();
    for (heading, oauth) in [
        ("## Using it against your Gong account", false),
        ("### Saved connections, resumable syncs, stored records", false),
        ("### gong-oauth", true),
    ] {
        for line in readme_block(heading) {
            let words = shell_words(&line);
            // The environment gives what `export` lines would, for the fake.
            let args: Vec<String> = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [] | ["export", ..] => continue,
                ["cargo", "run", "--release", "-p", "terapi", "--", args @ ..] | ["terapi", args @ ..] => {
                    args.iter().map(|a| a.to_string()).collect()
                }
                other => panic!("a README line this test cannot run: {other:?}"),
            };
            let mut command = terapi(Some(if oauth { &oauth_gong } else { &gong }));
            command.env("TERAPI_DATA_DIR", &dir).current_dir(&work).args(&args);
            if oauth {
                let client = fake_gong::OAuthConfig::default();
                command
                    .env("TERAPI_PROVIDERS", &providers)
                    .env("GONG_OAUTH_CLIENT_ID", &client.client_id)
                    .env("GONG_OAUTH_CLIENT_SECRET", &client.client_secret);
            }
            let output = if args.get(1).map(String::as_str) == Some("authorize") {
                // The person at the browser: open the printed URL (the fake
                // approves and redirects to terapi's listener).
                let mut child =
                    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
                let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
                let url = stderr.find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_string())).unwrap();
                assert!(url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2Fcallback"), "{url}");
                let page = tokio().block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
                assert!(page.contains("authorized"), "{page}");
                child.wait_with_output().unwrap()
            } else {
                command.output().unwrap()
            };
            let (stdout, stderr) = text(&output);
            assert!(output.status.success(), "`{line}` failed:\n{stdout}\n{stderr}");
            let sub: Vec<&str> = args.iter().map(String::as_str).take(2).collect();
            let data = match sub.as_slice() {
                ["verify"] => stdout.contains("250 users visible"),
                ["sync", "run"] if args.contains(&"--output".to_string()) => {
                    let file = work.join(&args[args.iter().position(|a| a == "--output").unwrap() + 1]);
                    std::fs::read_to_string(file).unwrap().lines().count() == 250
                }
                ["sync", "run"] if args[2] == "users" => stderr.contains("250 records"),
                ["sync", "run"] => stderr.contains("48 records"),
                ["action", "run"] => {
                    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                    answer["calls"].as_array().is_some_and(|calls| calls.len() == 48)
                }
                ["proxy", ..] => stdout.contains("\"workspaces\""),
                ["connection", "list"] => stdout.contains("acme"),
                ["connection", "authorize"] => stdout.contains("authorized (credential accepted; 250 users visible"),
                ["connection", _] => true,
                ["sync", "status"] => stdout.contains("records=250"),
                ["records", "list"] => stdout.lines().count() == 250,
                other => panic!("no expectation for {other:?}"),
            };
            assert!(data, "`{line}` returned no data:\n{stdout}\n{stderr}");
            ran.push(line);
        }
    }
    assert_eq!(ran.len(), 14, "{ran:#?}");

    // A misspelt model is an error naming the real ones, not 0 records.
    let wrong = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["records", "list", "Users", "-c", "acme"]).output();
    let wrong = wrong.unwrap();
    let (_, stderr) = text(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`Users` is not a model of `acme`") && stderr.contains("GongUser"), "{stderr}");
}

/// Progress: piped, a plain line now and then with Gong's total and the
/// time left; on a terminal (`script` gives it one), a bar with the total
/// and an ETA.
#[test]
fn progress_shows_gongs_total_and_the_time_left() {
    let gong = slow_gong();
    let output = terapi(Some(&gong))
        .env("TERAPI_PROGRESS_INTERVAL_MS", "1")
        .args(["sync", "run", "users", "--output", "/dev/null"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("records of 1000, about")).collect();
    assert!(lines.len() >= 5, "a line a page: {stderr}");
    assert!(lines[0].starts_with("users: 100 records of 1000, about ") && lines[0].contains(" s left"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no terminal codes into a pipe");

    if Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let command = format!("{} sync run users --output /dev/null", env!("CARGO_BIN_EXE_terapi"));
        let mut tty = Command::new("script");
        tty.args(["-qec", &command, "/dev/null"]).env("TERM", "xterm").env("COLUMNS", "120");
        for (name, value) in terapi(Some(&gong)).get_envs() {
            if let Some(value) = value {
                tty.env(name, value);
            }
        }
        let output = tty.output().unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("/1000 records") && stdout.contains("ETA"), "a bar with the total: {stdout:?}");
        assert!(stdout.contains("users: 1000 records in 10 pages"), "then the summary: {stdout:?}");
    } else {
        eprintln!("`script` is not installed: the terminal's progress bar is not checked");
    }
}

/// `--log-format json`: every stderr line is one JSON object, and each run
/// ends with one INFO line a log pipeline can index, secret-free.
#[test]
fn json_logs_give_one_line_per_run_with_its_figures() {
    let gong = gong(130);
    let dir = saved_connection(&gong, "json-logs");
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["--log-format", "json", "-v", "sync", "run", "users", "--connection", "acme"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ended: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "sync run ended").collect();
    assert_eq!(ended.len(), 1, "{stderr}");
    let run = ended[0];
    assert_eq!(run["level"], "INFO");
    assert_eq!((run["connection"].as_str(), run["sync"].as_str()), (Some("acme"), Some("users")));
    assert_eq!(
        (run["outcome"].as_str(), run["records"].as_u64(), run["pages"].as_u64()),
        (Some("done"), Some(130), Some(2))
    );
    assert!(run["duration_ms"].as_u64().is_some() && run["timestamp"].is_string(), "{run}");

    // A refused credential: the line says so, and carries no secret.
    gong.fail_next(10, 401);
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["--log-format", "json", "-v", "sync", "run", "users", "--connection", "acme", "--full"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let failed = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "sync run ended")
        .unwrap_or_else(|| panic!("no run line in {stderr}"));
    assert_eq!(failed["outcome"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("rejected the credential"), "{failed}");
    assert!(!stderr.contains(&gong.config().access_key_secret));
}

/// The operator dashboard in Chromium at 1280x800 and on a phone, after one
/// sync that ran and one whose Gong refused the credential
/// (tests/node/dashboard.browser.test.mjs says what the operator sees).
#[test]
fn the_operator_dashboard_shows_connections_a_failed_sync_and_a_run() {
    let gong = gong(130);
    let dir = saved_connection(&gong, "serve-dashboard");
    operator(&dir, Some(&gong), &["sync", "run", "users", "--connection", "acme"]);
    let stale_gong = common::gong(3);
    operator(&dir, Some(&stale_gong), &["connection", "create", "globex"]);
    stale_gong.fail_next(10_000, 401);
    let failed = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["sync", "run", "users", "--connection", "globex"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let runs: serde_json::Value =
        serde_json::from_str(&operator(&dir, None, &["runs", "list", "--connection", "acme", "--json"])).unwrap();
    let run = &runs[0];
    assert_eq!(run["status"], "done", "{runs}");
    let states: serde_json::Value =
        serde_json::from_str(&operator(&dir, None, &["sync", "status", "--connection", "globex", "--json"])).unwrap();
    assert_eq!(states[0]["status"], "failed", "{states}");
    // The page shows the stored error whole; the test looks for its start.
    let error: String = states[0]["last_error"].as_str().unwrap().chars().take(40).collect();
    let shown: serde_json::Value =
        serde_json::from_str(&operator(&dir, None, &["runs", "show", "users", "-c", "globex", "--json"])).unwrap();
    assert_eq!(
        (shown["state"]["status"].as_str(), shown["runs"][0]["status"].as_str()),
        (Some("failed"), Some("failed"))
    );
    let shown = operator(&dir, None, &["runs", "show", "users", "-c", "acme"]);
    assert!(shown.starts_with("acme / users (GongUser): done") && shown.contains("runs (1):"), "{shown}");

    let (_server, url, key) = serve_with_key(&dir, &["--concurrency", "0"], &[]);
    let screenshots = screenshot_dir();
    node_test(
        "dashboard.browser.test.mjs",
        &[
            ("TERAPI_HOST", url),
            ("TERAPI_SECRET_KEY", key),
            ("SCREENSHOT_DIR", screenshots.display().to_string()),
            ("RUN_PAGES", run["pages"].to_string()),
            ("RUN_RECORDS", run["records"].to_string()),
            ("FAILED_ERROR", error),
        ],
    );
    assert_screenshots(&screenshots, &["dashboard-1280x800.png", "dashboard-390x844.png"], 10_000);
}

/// Nango's own providers.yaml (the npm package tests/node installs).
fn nangos_providers_yaml() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/node/node_modules/@nangohq/providers/providers.yaml");
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh (it runs `npm ci --prefix tests/node`)",
        path.display()
    );
    path
}

/// Providers of Nango's file that no component serves (an API_KEY one and
/// an OAUTH2_CC one) through the Connect page and the proxy, against fakes
/// in tests/node/providers.browser.test.mjs; the Auth0 fake speaks TLS with
/// a certificate made here, from a CA terapi is told to trust.
#[test]
fn nangos_api_key_and_client_credentials_providers_connect_and_proxy_without_a_component() {
    let dir = data_dir("serve-nango-providers");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nango-providers-tls");
    fake_gong::tls::make_certificates(&tls);

    let nango = nangos_providers_yaml();
    let ca = tls.join("ca.pem");
    let (_server, url, key) = serve_with_key(
        &dir,
        &[
            "--providers",
            "bundled",
            "--providers",
            nango.to_str().unwrap(),
            "--ca-cert",
            ca.to_str().unwrap(),
            "--allow-private-egress",
            "--integration",
            "meilisearch",
            "--integration",
            "auth0-cc",
        ],
        &[],
    );
    node_test(
        "providers.browser.test.mjs",
        &[
            ("TERAPI_HOST", url),
            ("TERAPI_SECRET_KEY", key),
            ("TLS_CERT", tls.join("server.crt").display().to_string()),
            ("TLS_KEY", tls.join("server.key").display().to_string()),
        ],
    );
}

#[test]
fn nangos_providers_yaml_loads_whole_and_providers_list_says_what_terapi_does_with_each() {
    let nango = nangos_providers_yaml();
    let output = terapi(None)
        .args(["--providers", "bundled", "--providers", nango.to_str().unwrap(), "providers", "list"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("1013 entries") && stderr.contains("0 not readable"), "{stderr}");
    let line = |key: &str| stdout.lines().find(|l| l.split_whitespace().next() == Some(key)).unwrap().to_string();
    assert!(line("gong").contains("auth, proxy, syncs, actions"), "{}", line("gong"));
    assert!(line("meilisearch").contains("API_KEY") && line("meilisearch").contains("auth, proxy"));
    let two_step = stdout.lines().find(|l| l.contains("TWO_STEP")).unwrap();
    assert!(two_step.contains("read only") && two_step.contains("not served"), "{two_step}");

    let json = terapi(None)
        .args(["--providers", "bundled", "--providers", nango.to_str().unwrap(), "providers", "list", "--json"])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entries.len(), 1013, "the same entries as the text");
    let entry = |key: &str| entries.iter().find(|e| e["key"] == key).unwrap();
    assert_eq!(entry("gong")["serves"], serde_json::json!(["auth", "proxy", "syncs", "actions"]));
    assert_eq!(entry("meilisearch")["auth_mode"], "API_KEY");
    let served = entries.iter().filter(|e| e["not_served"].is_null()).count();
    assert!(stderr.contains(&format!(": {served} served,")), "as the text says: {served} in {stderr}");
}

#[test]
fn serve_refuses_a_webhook_url_without_a_signing_key() {
    let dir = data_dir("serve-no-signing-key");
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["serve", "--bind", "127.0.0.1:0", "--webhook-url", "http://127.0.0.1:9/"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output).1.contains("TERAPI_WEBHOOK_SIGNING_KEY"), "{}", text(&output).1);
}

/// Sends `signal` (TERM, INT, KILL) to `child` once `gong` has answered
/// `after` requests, so the run is mid-sync with pages committed.
fn signal_mid_run(child: &std::process::Child, gong: &FakeGong, after: usize, signal: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gong.requests().len() < after {
        assert!(std::time::Instant::now() < deadline, "the run never got under way");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// A slow Gong (each answer 200 ms late) with 1,000 users: ten pages.
fn slow_gong() -> FakeGong {
    let gong = gong(1000);
    gong.set_delay(std::time::Duration::from_millis(200));
    gong
}

#[test]
fn sigterm_and_ctrl_c_mid_sync_leave_a_run_an_immediate_rerun_resumes() {
    for signal in ["TERM", "INT"] {
        let gong = slow_gong();
        let dir = saved_connection(&gong, &format!("stop-{signal}"));
        let run = || {
            let mut command = terapi(Some(&gong));
            command.env("TERAPI_DATA_DIR", &dir).args(["sync", "run", "users", "--connection", "acme"]);
            command
        };
        let child = run().stderr(std::process::Stdio::piped()).spawn().unwrap();
        signal_mid_run(&child, &gong, 4, signal);
        let output = child.wait_with_output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("interrupted after") && stderr.contains("to resume (it may start now)"), "{stderr}");
        let status = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["sync", "status", "-c", "acme"]).output();
        let (stdout, _) = text(&status.unwrap());
        assert!(stdout.contains("interrupted") && stdout.contains("checkpoint=saved"), "{stdout}");

        // At once: no lease to wait for. It resumes after the saved pages.
        let answered = gong.requests().len();
        let output = run().output().unwrap();
        let (_, stderr) = text(&output);
        assert!(output.status.success(), "{signal}: {stderr}");
        assert!(stderr.contains("resumed from the saved checkpoint"), "{stderr}");
        let pages_again = gong.requests().len() - answered;
        assert!(pages_again < 10, "{signal}: the rerun read {pages_again} pages, not all ten again");
        let listed =
            terapi(None).env("TERAPI_DATA_DIR", &dir).args(["records", "list", "GongUser", "-c", "acme"]).output();
        let (stdout, _) = text(&listed.unwrap());
        let ids: std::collections::HashSet<&str> = stdout.lines().collect();
        assert_eq!((stdout.lines().count(), ids.len()), (1000, 1000), "every user stored once");
    }
}

#[test]
fn a_sync_killed_on_this_machine_is_taken_over_at_once() {
    let gong = slow_gong();
    let dir = saved_connection(&gong, "stop-kill");
    let run = || {
        let mut command = terapi(Some(&gong));
        command.env("TERAPI_DATA_DIR", &dir).args(["sync", "run", "users", "--connection", "acme"]);
        command
    };
    let mut child = run().stderr(std::process::Stdio::null()).spawn().unwrap();
    signal_mid_run(&child, &gong, 4, "KILL");
    child.wait().unwrap();
    // The lease lasts a minute, but its holder is gone: no need to wait.
    let output = run().output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resumed from the saved checkpoint"), "{stderr}");
}

#[test]
fn ctrl_c_on_a_sync_to_a_file_prints_the_checkpoint_to_resume_from() {
    let gong = slow_gong();
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("users-interrupted.ndjson");
    let child = terapi(Some(&gong))
        .args(["sync", "run", "users", "--output"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    signal_mid_run(&child, &gong, 3, "INT");
    let output = child.wait_with_output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let checkpoint = stderr.split("--checkpoint '").nth(1).and_then(|s| s.split('\'').next()).expect(&stderr);
    let first = std::fs::read_to_string(&file).unwrap();
    let rest = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("users-rest.ndjson");
    let output = terapi(Some(&gong))
        .args(["sync", "run", "users", "--checkpoint", checkpoint, "--output"])
        .arg(&rest)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let second = std::fs::read_to_string(&rest).unwrap();
    let ids: std::collections::HashSet<&str> = first.lines().chain(second.lines()).collect();
    assert_eq!((first.lines().count() + second.lines().count(), ids.len()), (1000, 1000));
}

#[test]
fn sigterm_stops_a_worker_whose_syncs_another_worker_resumes_at_once() {
    let gong = slow_gong();
    let dir = saved_connection(&gong, "stop-worker");
    let with_dir = |mut command: Command| {
        command.env("TERAPI_DATA_DIR", &dir);
        command
    };
    let scheduled = with_dir(terapi(None)).args(["sync", "schedule", "users", "-c", "acme"]).output().unwrap();
    assert!(scheduled.status.success(), "{}", text(&scheduled).1);
    let child = with_dir(terapi(None)).args(["worker"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    signal_mid_run(&child, &gong, 4, "TERM");
    let stopping = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("1 interrupted"), "{stderr}");
    assert!(stopping.elapsed() < std::time::Duration::from_secs(10), "stopped in {:?}", stopping.elapsed());
    // Another worker takes it from its checkpoint straight away.
    let answered = gong.requests().len();
    let output = with_dir(terapi(None)).args(["worker", "--exit-when-idle"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(gong.requests().len() - answered < 10, "{stderr}");
    let listed = with_dir(terapi(None)).args(["records", "list", "GongUser", "-c", "acme"]).output().unwrap();
    let (stdout, _) = text(&listed);
    let ids: std::collections::HashSet<&str> = stdout.lines().collect();
    assert_eq!((stdout.lines().count(), ids.len()), (1000, 1000));
}

#[test]
fn a_serve_killed_mid_sync_is_taken_over_by_another_at_once_not_after_its_lease() {
    let gong = slow_gong();
    let dir = saved_connection(&gong, "kill-serve");
    let with_dir = |mut command: Command| {
        command.env("TERAPI_DATA_DIR", &dir);
        command
    };
    let scheduled = with_dir(terapi(None)).args(["sync", "schedule", "users", "-c", "acme"]).output().unwrap();
    assert!(scheduled.status.success(), "{}", text(&scheduled).1);
    let mut serve = with_dir(terapi(None))
        .args(["serve", "--bind", "127.0.0.1:0", "--concurrency", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    signal_mid_run(&serve, &gong, 4, "KILL");
    serve.wait().unwrap();
    // The killed server's lease lasts a minute; its process is gone, so the
    // other takes the sync over now and finishes it from its checkpoint.
    let taking_over = std::time::Instant::now();
    let output = with_dir(terapi(None)).args(["worker", "--exit-when-idle"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(taking_over.elapsed() < std::time::Duration::from_secs(30), "took {:?}: {stderr}", taking_over.elapsed());
    let listed = with_dir(terapi(None)).args(["records", "list", "GongUser", "-c", "acme"]).output().unwrap();
    let (stdout, _) = text(&listed);
    let ids: std::collections::HashSet<&str> = stdout.lines().collect();
    assert_eq!((stdout.lines().count(), ids.len()), (1000, 1000));
}
