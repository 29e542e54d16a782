//! `terapi mcp serve` as MCP clients use it, over stdio and streamable HTTP,
//! against a fake Gong: approved tools only, clients told when that changes,
//! every call audited (cut-off ones too, and no input values), JSON-RPC's
//! error codes with the request's id, and browsers from elsewhere refused.

use std::path::Path;
use std::time::{Duration, Instant};

use fake_gong::fixtures;

use crate::common::*;

fn mcp_serve(dir: &Path) -> std::process::Command {
    let mut serve = terapi(None);
    serve.env("TERAPI_DATA_DIR", dir).args(["mcp", "serve", "--connection", "acme"]);
    serve
}

fn audit_lines(dir: &Path) -> Vec<String> {
    let output = terapi(None).env("TERAPI_DATA_DIR", dir).args(["audit", "list"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    text(&output).0.lines().map(str::to_string).collect()
}

/// Waits (up to 20 s) for an audit line that `wanted` accepts.
fn wait_for_audit(dir: &Path, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = audit_lines(dir).into_iter().find(|l| wanted(l)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no such audit line: {:?}", audit_lines(dir));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The milliseconds an audit line says its call took (`…  1234ms …`).
fn audited_millis(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|word| word.strip_suffix("ms").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no duration in {line}"))
}

fn tool_names(client: &mut McpClient) -> Vec<String> {
    let listed = client.request("tools/list", serde_json::json!({}));
    listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

fn tool(dir: &Path, verb: &str, name: &str) {
    let output = terapi(None).env("TERAPI_DATA_DIR", dir).args(["tool", verb, name]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
}

/// `_meta` of a request under MCP 2026-07-28, which has no `initialize`:
/// every request says who the client is.
fn meta_2026(client: &str) -> serde_json::Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": client, "version": "1.0"},
    })
}

#[test]
fn mcp_serves_only_approved_tools_and_audits_every_call() {
    let gong = gong(4);
    let dir = saved_connection(&gong, "mcp");
    let secret = gong.config().access_key_secret.clone();

    let mut serve = terapi(None);
    serve.env("TERAPI_DATA_DIR", &dir).args(["mcp", "serve", "--connection", "acme"]);
    let mut client = McpClient::start(serve);
    let listed = client.request("tools/list", serde_json::json!({}));
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"get-user") && names.contains(&"list-workspaces"), "{names:?}");
    assert!(
        !names.contains(&"upload-call") && !names.contains(&"data-privacy-erase"),
        "writes start pending: {names:?}"
    );
    let get_user = listed["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "get-user").unwrap();
    assert_eq!(get_user["inputSchema"]["required"][0], "id", "the tool carries the action's input schema");
    assert_eq!(get_user["annotations"]["readOnlyHint"], true, "{get_user}");
    assert_eq!(get_user["annotations"]["title"], "Get user", "{get_user}");

    let id = fixtures::user_id(2);
    let called = client.request("tools/call", serde_json::json!({"name": "get-user", "arguments": {"id": id}}));
    assert_eq!(called["result"]["isError"], false, "{called}");
    assert_eq!(called["result"]["structuredContent"]["email"], "user2@example.com", "{called}");

    let refused = client.request(
        "tools/call",
        serde_json::json!({"name": "data-privacy-erase", "arguments": {"emailAddress": "a@b.co"}}),
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("terapi tool approve --connection acme data-privacy-erase"),
        "{refused}"
    );
    assert!(!gong.requests().iter().any(|r| r.path.contains("erase")), "an unapproved tool never reaches Gong");

    let failed =
        client.request("tools/call", serde_json::json!({"name": "get-user", "arguments": {"id": "not-an-id"}}));
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    drop(client);

    // An operator approves the write; now it is listed.
    let output =
        terapi(None).env("TERAPI_DATA_DIR", &dir).args(["tool", "approve", "data-privacy-erase"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let mut serve = terapi(None);
    serve.env("TERAPI_DATA_DIR", &dir).args(["mcp", "serve", "--connection", "acme"]);
    let mut client = McpClient::start(serve);
    let listed = client.request("tools/list", serde_json::json!({}));
    assert!(listed["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "data-privacy-erase"));
    drop(client);

    let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["audit", "list"]).output().unwrap();
    let (stdout, _) = text(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("local:test-agent") && lines[0].contains("get-user") && lines[0].contains(" ok "),
        "{stdout}"
    );
    assert!(lines[1].contains("data-privacy-erase") && lines[1].contains("refused"), "{stdout}");
    assert!(lines[2].contains("error"), "{stdout}");
    assert!(!stdout.contains(&secret), "no secret in the audit log");
    let db = std::fs::read(dir.join("terapi.db")).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

/// The JSON-RPC answer with `id` in a streamable-HTTP response, which is
/// either plain JSON or a server-sent event stream.
fn rpc_answer(body: &str, id: u64) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = if body.trim_start().starts_with('{') {
        vec![serde_json::from_str(body).unwrap()]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    messages.into_iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer with id {id} in {body}"))
}

#[test]
fn mcp_over_streamable_http_on_loopback_only() {
    use std::io::BufRead;
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-http");

    let refused = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["mcp", "serve", "--connection", "acme", "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused).1.contains("loopback only"), "{}", text(&refused).1);

    let mut child = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["mcp", "serve", "--connection", "acme", "--http", "127.0.0.1:0", "--caller", "http-agent"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let url = stderr
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once(" at ").map(|(_, url)| url.trim().to_string()))
        .expect("the endpoint is printed");
    let served = tokio().block_on(async {
        let http = reqwest::Client::new();
        let post_text = |body: String, session: Option<String>, origin: Option<&str>| {
            let mut request = http
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body);
            if let Some(session) = session {
                request = request.header("mcp-session-id", session);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.send()
        };
        let post = |body: serde_json::Value, session: Option<String>| post_text(body.to_string(), session, None);
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "", "version": "1"}}});
        let answer = post(init, None).await.unwrap();
        let session = answer.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        assert!(rpc_answer(&answer.text().await.unwrap(), 1)["result"]["capabilities"]["tools"].is_object());
        let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        post(initialized, session.clone()).await.unwrap();

        // A page from elsewhere is refused, whatever it asks; one served
        // from loopback is not.
        let ping = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}).to_string();
        let foreign = post_text(ping.clone(), session.clone(), Some("https://evil.example")).await.unwrap();
        assert_eq!(foreign.status(), 403);
        let local = post_text(ping, session.clone(), Some("http://127.0.0.1:5173")).await.unwrap();
        assert_eq!(rpc_answer(&local.text().await.unwrap(), 3)["result"], serde_json::json!({}));

        // JSON-RPC's errors: not JSON is a 400 with -32700; wrong params
        // are answered like any request, with its id.
        let garbage = post_text("{not json".into(), session.clone(), None).await.unwrap();
        assert_eq!(garbage.status(), 400);
        let garbage: serde_json::Value = garbage.json().await.unwrap();
        assert_eq!((garbage["error"]["code"].as_i64(), garbage["id"].is_null()), (Some(-32700), true), "{garbage}");
        let bad = serde_json::json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 5}});
        let bad = post(bad, session.clone()).await.unwrap();
        assert_eq!(bad.status(), 200);
        let bad = rpc_answer(&bad.text().await.unwrap(), 4);
        assert_eq!(bad["error"]["code"], -32602, "{bad}");

        let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "get-user", "arguments": {"id": fixtures::user_id(1)}}});
        let answer = post(call, session).await.unwrap();
        rpc_answer(&answer.text().await.unwrap(), 2)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(served["result"]["isError"], false, "{served}");
    assert_eq!(served["result"]["structuredContent"]["email"], "user1@example.com", "{served}");

    let output = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["audit", "list"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.contains("local:http-agent") && stdout.contains("get-user") && stdout.contains(" ok "), "{stdout}");
}

#[test]
fn mcp_clients_hear_when_an_operator_approves_or_denies_a_tool() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-list-changed");
    let mut client = McpClient::start(mcp_serve(&dir));
    assert_eq!(client.initialized["result"]["capabilities"]["tools"]["listChanged"], true, "{}", client.initialized);
    assert!(!tool_names(&mut client).contains(&"upload-call".to_string()));

    // A client of MCP 2026-07-28 (no session) subscribes instead.
    let mut listener = McpClient::spawn(mcp_serve(&dir));
    let listen = listener.start_request(
        "subscriptions/listen",
        serde_json::json!({"notifications": {"toolsListChanged": true}, "_meta": meta_2026("listener")}),
    );
    listener.wait_for(|m| m["method"] == "notifications/subscriptions/acknowledged");

    // Another process approves a write: both hear of it, and it is listed.
    tool(&dir, "approve", "upload-call");
    client.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    let heard = listener.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    assert_eq!(heard["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], listen, "{heard}");
    assert!(tool_names(&mut client).contains(&"upload-call".to_string()));

    // Denied again: heard, and gone from the list.
    tool(&dir, "deny", "upload-call");
    client.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    assert!(!tool_names(&mut client).contains(&"upload-call".to_string()));
}

#[test]
fn the_caller_is_the_clients_name_on_every_protocol_version() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-caller");
    let arguments = serde_json::json!({"id": fixtures::user_id(1)});

    // 2025-06-18: the name comes once, in `initialize` ("test-agent").
    let mut client = McpClient::start(mcp_serve(&dir));
    let called = client.request("tools/call", serde_json::json!({"name": "get-user", "arguments": arguments}));
    assert_eq!(called["result"]["isError"], false, "{called}");
    drop(client);

    // 2026-07-28: no `initialize`; the name is in every request's `_meta`.
    let mut client = McpClient::spawn(mcp_serve(&dir));
    let params = serde_json::json!({"name": "get-user", "arguments": arguments, "_meta": meta_2026("agent-2026")});
    let called = client.request("tools/call", params);
    assert_eq!(called["result"]["isError"], false, "{called}");
    drop(client);

    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("local:test-agent") && lines[1].contains("local:agent-2026"), "{lines:?}");
}

#[test]
fn malformed_messages_get_json_rpc_error_codes_with_the_request_id() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-errors");
    let mut client = McpClient::start(mcp_serve(&dir));
    let error_of = |m: &serde_json::Value| (m["error"]["code"].as_i64(), m["id"].clone());

    client.send_line("this is not json{");
    let parse = client.wait_for(|m| m["error"]["code"] == -32700);
    assert_eq!(error_of(&parse), (Some(-32700), serde_json::Value::Null), "{parse}");

    client.send(serde_json::json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": 5}}));
    let params = client.wait_for(|m| m["id"] == 77);
    assert_eq!(error_of(&params), (Some(-32602), serde_json::json!(77)), "{params}");
    assert!(params["error"]["message"].as_str().unwrap().contains("invalid type"), "{params}");

    // `params` that is neither an object nor an array: an invalid request.
    client.send(serde_json::json!({"jsonrpc": "2.0", "id": 78, "method": "tools/list", "params": "x"}));
    let unstructured = client.wait_for(|m| m["id"] == 78);
    assert_eq!(error_of(&unstructured), (Some(-32600), serde_json::json!(78)), "{unstructured}");

    client.send(serde_json::json!({"id": "no-version", "method": "ping"}));
    let request = client.wait_for(|m| m["id"] == "no-version");
    assert_eq!(error_of(&request), (Some(-32600), serde_json::json!("no-version")), "{request}");

    let unknown = client.request("no/such-method", serde_json::json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    // Refusing a tool is an error of the request, with its id too.
    let refused = client.request("tools/call", serde_json::json!({"name": "upload-call", "arguments": {}}));
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // None of it upset the session.
    assert_eq!(client.request("ping", serde_json::json!({}))["result"], serde_json::json!({}));
}

#[test]
fn a_call_the_client_cancels_or_abandons_is_stopped_and_audited() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-cancel");
    gong.set_delay(Duration::from_secs(60));
    let answered_before = gong.requests().len(); // saving the connection verified it
    let arrived_before = gong.arrivals();
    let arguments = serde_json::json!({"id": fixtures::user_id(1)});
    let wait_for_arrivals = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while gong.arrivals() < arrived_before + n {
            assert!(Instant::now() < deadline, "the call never reached Gong");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // notifications/cancelled: the call stops at once (Gong sees the request
    // dropped) and the session goes on.
    let mut client = McpClient::start(mcp_serve(&dir));
    let id = client.start_request("tools/call", serde_json::json!({"name": "get-user", "arguments": arguments}));
    wait_for_arrivals(1);
    client.send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": "the user pressed stop"}}));
    let line = wait_for_audit(&dir, |l| l.contains("cancelled") && l.contains("the client cancelled it"));
    assert!(audited_millis(&line) < 30_000, "stopped, not waited out: {line}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while gong.abandoned() < 1 {
        assert!(Instant::now() < deadline, "the request to Gong was not dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.request("ping", serde_json::json!({}))["result"], serde_json::json!({}));

    // The client goes away mid-call: the call is stopped and audited, and
    // the server exits instead of waiting a minute for Gong.
    let started = Instant::now();
    client.start_request("tools/call", serde_json::json!({"name": "get-user", "arguments": arguments}));
    wait_for_arrivals(2);
    client.hang_up();
    let status = loop {
        if let Some(status) = client.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the server kept running after its client left");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let line = wait_for_audit(&dir, |l| l.contains("cancelled") && l.contains("the client went away"));
    assert!(audited_millis(&line) < 30_000, "{line}");
    assert_eq!(gong.requests().len(), answered_before, "Gong answered neither call: both were stopped");
    assert_eq!(gong.abandoned(), 2, "and Gong saw both requests dropped");
}

#[test]
fn the_audit_log_keeps_no_input_values() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-audit-values");
    let mut client = McpClient::start(mcp_serve(&dir));
    // Gong's answers repeat these: "User … not found", "No user found with email …".
    let unknown_id = "4242424242424242";
    let email = "alice.private@example.com";
    let missing =
        client.request("tools/call", serde_json::json!({"name": "get-user", "arguments": {"id": unknown_id}}));
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    let flows =
        client.request("tools/call", serde_json::json!({"name": "list-flows", "arguments": {"flowOwnerEmail": email}}));
    assert_eq!(flows["result"]["isError"], true, "{flows}");
    drop(client);

    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("error") && l.contains("not found")),
        "the kind of failure is kept: {lines:?}"
    );
    let db = std::fs::read(dir.join("terapi.db")).unwrap();
    for value in [unknown_id, email] {
        assert!(!lines.iter().any(|l| l.contains(value)), "{value} in {lines:?}");
        assert!(!db.windows(value.len()).any(|w| w == value.as_bytes()), "{value} is stored");
    }
}

/// SIGTERM while the client keeps stdin open (as an MCP client host does)
/// and a call is in flight: the server exits within seconds, the call
/// stopped and audited.
#[test]
fn sigterm_ends_the_stdio_server_with_its_client_still_attached() {
    let gong = gong(3);
    let dir = saved_connection(&gong, "mcp-sigterm");
    gong.set_delay(Duration::from_secs(60));
    let arrived_before = gong.arrivals();
    let mut client = McpClient::start(mcp_serve(&dir));
    client.start_request(
        "tools/call",
        serde_json::json!({"name": "get-user", "arguments": {"id": fixtures::user_id(1)}}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while gong.arrivals() < arrived_before + 1 {
        assert!(Instant::now() < deadline, "the call never reached Gong");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill").args(["-TERM", &client.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = client.child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(15), "still running after SIGTERM with stdin open");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.code().is_some(), "it exited on its own, not by the signal's default: {status}");
    // Fails the test unless the call was audited as cancelled.
    wait_for_audit(&dir, |l| l.contains("get-user") && l.contains("cancelled"));
}
