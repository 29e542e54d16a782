//! What ships for deployment: the systemd unit and the Dockerfile, run as written.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

/// `terapi ARGS` (a deployment's command, its bind address moved to a
/// free port, its data in `dir`) serves, is ready, and exits 0 on SIGTERM.
pub(crate) fn serves_and_stops_on_sigterm(args: &[String], dir: &std::path::Path) {
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
    let unit = include_str!("../../../deploy/terapi.service");
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
    let text = include_str!("../../../Dockerfile");
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
    let rust = include_str!("../../../Cargo.toml")
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
    assert!(include_str!("../../../.dockerignore").lines().any(|l| l.trim() == "target"));
    let dir = data_dir("docker-cmd");
    serves_and_stops_on_sigterm(&cmd, &dir);
}
