//! The official clients against `terapi serve`: MCP SDKs, Nango's Node client, the Connect page and the dashboard in Chromium.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::{FakeGong, fixtures};

use crate::common::*;
use crate::*;

/// `terapi serve` on a saved connection, with a fresh secret key; returns
/// the server, its URL and the key.
pub(crate) fn serve_with_key(
    dir: &std::path::Path,
    extra: &[&str],
    envs: &[(&str, String)],
) -> (ChildGuard, String, String) {
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
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each screenshot was written: a PNG with more than `min_bytes` of picture.
pub(crate) fn assert_screenshots(dir: &std::path::Path, names: &[&str], min_bytes: usize) {
    for name in names {
        let png = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > min_bytes, "{name}: {} bytes", png.len());
    }
}

/// `node --test FILE` in tests/node (whose packages `scripts/test.sh` installs).
pub(crate) fn node_test(file: &str, envs: &[(&str, String)]) {
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

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `terapi serve` on the saved connection `acme` of `gong` (which has
/// `users` users), sending webhooks to a port the Node test listens on; the
/// server and the environment a Node test needs.
pub(crate) fn serve_for_node(gong: &FakeGong, name: &str, users: usize) -> (ChildGuard, Vec<(&'static str, String)>) {
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
pub(crate) fn operator(dir: &std::path::Path, gong: Option<&FakeGong>, args: &[&str]) -> String {
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
