//! Signals and crashes mid-sync: runs resume from their checkpoint and are taken over at once.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::FakeGong;

use crate::common::*;

/// Sends `signal` (TERM, INT, KILL) to `child` once `gong` has answered
/// `after` requests, so the run is mid-sync with pages committed.
pub(crate) fn signal_mid_run(child: &std::process::Child, gong: &FakeGong, after: usize, signal: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gong.requests().len() < after {
        assert!(std::time::Instant::now() < deadline, "the run never got under way");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// A slow Gong (each answer 200 ms late) with 1,000 users: ten pages.
pub(crate) fn slow_gong() -> FakeGong {
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
