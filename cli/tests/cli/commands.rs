//! The everyday commands through the binary: verify, sync, actions, the proxy, saved connections, the master key, help, progress and logs.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

use crate::common::*;
use crate::*;

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
    let shipped = include_str!("../../../providers.yaml");
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
