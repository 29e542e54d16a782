//! What the CLI test binaries share: the fake Gong, the `terapi` binary
//! with a clean environment, data dirs, and a minimal MCP client.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

pub fn tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
}

pub fn gong(users: usize) -> FakeGong {
    let config = FakeGongConfig { users: fixtures::users(users), ..FakeGongConfig::default() };
    tokio().block_on(FakeGong::start(config)).unwrap()
}

/// `terapi` with a clean environment: only what the test gives it, and a
/// data dir of its own (a test that shares one between commands sets it).
pub fn terapi(gong: Option<&FakeGong>) -> Command {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let own = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_terapi"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The fake Gong is on loopback, which the default egress policy refuses.
        .env("TERAPI_ALLOW_PRIVATE_EGRESS", "1")
        .env("TERAPI_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-component-cache"))
        .env("TERAPI_DATA_DIR", data_dir(&format!("auto-{}-{own}", std::process::id())));
    if let Some(gong) = gong {
        cmd.env("GONG_ACCESS_KEY", &gong.config().access_key)
            .env("GONG_ACCESS_KEY_SECRET", &gong.config().access_key_secret)
            .env("GONG_BASE_URL", gong.base_url());
    }
    cmd
}

pub fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

pub fn data_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh data dir named `name` holding the saved connection `acme` to `gong`.
pub fn saved_connection(gong: &FakeGong, name: &str) -> PathBuf {
    let dir = data_dir(name);
    let output =
        terapi(Some(gong)).env("TERAPI_DATA_DIR", &dir).args(["connection", "create", "acme"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    dir
}

/// A minimal MCP client over stdio: newline-delimited JSON-RPC, as the
/// protocol's stdio transport defines it. A thread reads the server's
/// lines, so a test can wait for a message with a time limit.
pub struct McpClient {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Messages read while waiting for another one.
    held: Vec<serde_json::Value>,
    next_id: u64,
    /// The answer to `initialize` (null without a session).
    pub initialized: serde_json::Value,
}

/// How long a test waits for one message from the server.
pub const MCP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl McpClient {
    /// Starts the server and initializes a session (protocol 2025-06-18).
    pub fn start(command: Command) -> McpClient {
        let mut client = McpClient::spawn(command);
        let init = client.request(
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test-agent", "version": "1.0"}}),
        );
        assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
        client.initialized = init;
        client.send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        client
    }

    /// Starts the server without a session (protocol 2026-07-28 has none).
    pub fn spawn(mut command: Command) -> McpClient {
        use std::io::BufRead;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let message =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON-RPC on stdout ({e}): {line}"));
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        McpClient { child, stdin, messages, held: Vec::new(), next_id: 1, initialized: serde_json::Value::Null }
    }

    pub fn send(&mut self, message: serde_json::Value) {
        self.send_line(&message.to_string());
    }

    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin, as a client that goes away does.
    pub fn hang_up(&mut self) {
        self.stdin = None;
    }

    /// Sends a request and waits for its answer.
    pub fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.start_request(method, params);
        self.wait_for(|m| m["id"] == id && m.get("method").is_none())
    }

    /// Sends a request without waiting; returns its id.
    pub fn start_request(&mut self, method: &str, params: serde_json::Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The first message (read before, or arriving within `MCP_WAIT`) that
    /// `wanted` accepts; the others are kept for later waits.
    pub fn wait_for(&mut self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        if let Some(at) = self.held.iter().position(&wanted) {
            return self.held.remove(at);
        }
        let deadline = std::time::Instant::now() + MCP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no such message from the server ({e}); it sent {:?}", self.held));
            if wanted(&message) {
                return message;
            }
            self.held.push(message);
        }
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL a server child (spawned with stderr piped) prints as
/// "listening on URL"; stderr is drained from then on, so the server never
/// blocks on a full pipe. `None` if it ended without printing one.
pub fn listening_url(child: &mut std::process::Child) -> Option<String> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take()?).lines().map_while(Result::ok);
    let url = lines.find_map(|line| {
        line.split_once("listening on ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
    })?;
    std::thread::spawn(move || lines.for_each(drop));
    Some(url)
}

/// Kills the child when the test ends, passed or not.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
