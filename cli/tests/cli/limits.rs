//! Gong's limits kept across processes: 3 requests a second and the daily budget.

use std::path::PathBuf;

use fake_gong::{FakeGong, FakeGongConfig, fixtures};

use crate::common::*;

pub(crate) fn gong_limited(users: usize) -> FakeGong {
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
    std::fs::write(&providers, include_str!("../../../providers.yaml").replacen("per_day: 10000", "per_day: 5", 1))
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
