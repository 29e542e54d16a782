//! The `terapi` binary as a user runs it, against a fake Gong on loopback.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

fn tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
}

fn gong(users: usize) -> FakeGong {
    let config = FakeGongConfig { users: fixtures::users(users), ..FakeGongConfig::default() };
    tokio().block_on(FakeGong::start(config)).unwrap()
}

/// `terapi` with a clean environment: only what the test gives it.
fn terapi(gong: Option<&FakeGong>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_terapi"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERAPI_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-component-cache"));
    if let Some(gong) = gong {
        cmd.env("GONG_ACCESS_KEY", &gong.config().access_key)
            .env("GONG_ACCESS_KEY_SECRET", &gong.config().access_key_secret)
            .env("GONG_BASE_URL", gong.base_url());
    }
    cmd
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

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
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("error: unauthorized: Gong rejected the credential"), "{stderr}");
    assert!(stderr.contains("check the access key and secret"), "{stderr}");
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
fn action_run_prints_the_output_json() {
    let gong = gong(4);
    let id = fixtures::user_id(2);
    let output = terapi(Some(&gong)).args(["action", "run", "get-user", "--input", &format!(r#"{{"id":"{id}"}}"#)]).output().unwrap();
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
    let output = terapi(None).arg("--providers").arg(&file).args(["providers", "list"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    let line = shipped.lines().position(|l| l.contains("auth_mode: OAUTH2")).unwrap() + 1;
    assert!(stderr.contains(&format!("broken-providers.yaml, line {line}")), "{stderr}");
    assert!(stderr.contains("auth_mode") && stderr.contains("OAUTH3"), "{stderr}");
}

#[test]
fn help_lists_every_command_and_never_shows_secret_values() {
    let output = terapi(None).env("GONG_ACCESS_KEY_SECRET", "env-secret-value").args(["verify", "--help"]).output().unwrap();
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
}
