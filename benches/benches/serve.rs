//! `terapi serve` at scale, with bounded loops (figures in docs/performance.md):
//! - records listing over HTTP with 100,000 stored records: latency p50/p99
//!   of a 100-record page, at the start and deep into the cursor walk;
//! - the scheduler with 1,000 connections x 10 syncs (the real component
//!   against the fake Gong, rate limits off): lag between when each sync was
//!   due and when it started, and the host's peak memory;
//! - what an operator waits for: the dashboard page and a `/metrics` scrape
//!   with 500 connections x 10 syncs (a run each of one, one failed),
//!   latency p50/p99 and page size.
//!
//! `cargo bench -p terapi-benches --bench serve`; `cargo test --benches`
//! runs it small, so it never rots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_gong::{FakeGong, FakeGongConfig, fixtures};
use terapi_benches::connection;
use terapi_host::SyncRecord;
use terapi_platform::{Platform, WorkerOptions};
use terapi_serve::{ServeConfig, ServeState};

fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--test")
}

fn platform(dir: &std::path::Path) -> Platform {
    let store = Arc::new(terapi_store::SqliteStore::open_in(dir).expect("store"));
    terapi_benches::gong_platform(store, dir, false)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("terapi-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// `terapi serve` on `platform` (no scheduler), on a free port; its URL.
async fn start_serve(platform: Arc<Platform>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state = ServeState::new(
        platform,
        ServeConfig {
            public_url: format!("{base}/").parse().expect("url"),
            webhooks: None,
            worker_concurrency: 0,
            connect_session_ttl: Duration::from_secs(60),
            frame_ancestors: Vec::new(),
            connect_page: Default::default(),
            connections: Default::default(),
        },
    );
    tokio::spawn(terapi_serve::serve(state, listener, std::future::pending()));
    base
}

async fn records_listing(stored: usize) {
    let requests = if quick() { 20 } else { 2_000 };
    let fake = FakeGong::start(FakeGongConfig::default()).await.expect("fake");
    let dir = scratch(&format!("records-{stored}"));
    let platform = Arc::new(platform(&dir));
    let mut conn = connection(&fake);
    conn.id = "bench".into();
    platform.create_connection(&conn).await.expect("connection");
    for chunk in (0..stored).collect::<Vec<_>>().chunks(5_000) {
        let records: Vec<SyncRecord> = chunk
            .iter()
            .map(|&i| SyncRecord { id: format!("{i}"), modified_at: None, json: fixtures::user(i).to_string() })
            .collect();
        platform.store().upsert_records("bench", "GongUser", &records).await.expect("records");
    }
    let key = terapi_serve::auth::new_secret_key().expect("key");
    platform.store().create_api_key(&terapi_serve::auth::sha256_hex(&key), "bench").await.expect("key");
    let base = start_serve(platform).await;
    let http = reqwest::Client::new();
    let page = |cursor: Option<String>| {
        let mut url = format!("{base}/records?model=GongUser&limit=100");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        http.get(url).bearer_auth(&key).header("Connection-Id", "bench").header("Provider-Config-Key", "gong").send()
    };
    // Cursors spread over the whole table, so deep pages are measured too.
    let mut cursors = vec![None];
    let mut cursor = None;
    let walk = Instant::now();
    loop {
        let body: serde_json::Value = page(cursor.clone()).await.expect("page").json().await.expect("json");
        match body["next_cursor"].as_str() {
            Some(next) => {
                cursor = Some(next.to_string());
                cursors.push(cursor.clone());
            }
            None => break,
        }
    }
    let walked = walk.elapsed();
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        let cursor = cursors[(i * 7919) % cursors.len()].clone();
        let start = Instant::now();
        let response = page(cursor).await.expect("page");
        assert!(response.status().is_success());
        response.bytes().await.expect("body");
        latencies.push(start.elapsed());
    }
    latencies.sort();
    println!(
        "records listing, {stored} stored, 100 per page over HTTP ({requests} requests): p50 {:.2} ms, p99 {:.2} ms; \
         whole cursor walk ({} pages) {:.2} s = {:.0} records/s",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        cursors.len(),
        walked.as_secs_f64(),
        stored as f64 / walked.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn scheduler() {
    let connections = if quick() { 10 } else { 2_000 };
    let window = Duration::from_secs(if quick() { 2 } else { 60 });
    let fake = FakeGong::start(FakeGongConfig { users: fixtures::users(3), extras: 2, ..Default::default() })
        .await
        .expect("fake");
    let dir = scratch("scheduler");
    let platform = Arc::new(platform(&dir));
    let syncs: Vec<String> =
        platform.describe("gong").await.expect("describe").syncs.iter().map(|s| s.name.clone()).collect();
    let mut due = std::collections::HashMap::new();
    let total = connections * syncs.len();
    let rss_before = peak_rss_mib();
    let t0 = terapi_host::limits::unix_ms() + 2_000;
    for i in 0..connections {
        let mut conn = connection(&fake);
        conn.id = format!("c{i}");
        platform.create_connection(&conn).await.expect("connection");
        for (j, sync) in syncs.iter().enumerate() {
            // Due times spread evenly over the window, as schedules drift apart.
            let at = t0 + ((i * syncs.len() + j) as u64 * window.as_millis() as u64) / total as u64;
            let (model, _) = (platform.describe("gong").await.expect("describe").syncs[j].model.clone(), ());
            platform.store().set_schedule(&conn.id, sync, &model, 86_400, false, Some(at)).await.expect("schedule");
            due.insert((conn.id.clone(), sync.clone()), at);
        }
    }
    let (runs_tx, mut runs_rx) = tokio::sync::mpsc::unbounded_channel();
    let options = WorkerOptions {
        concurrency: 8,
        poll_interval: Duration::from_millis(100),
        finished_runs: Some(runs_tx),
        ..WorkerOptions::default()
    };
    let all_done = async move {
        let mut finished = 0;
        while finished < total && runs_rx.recv().await.is_some() {
            finished += 1;
        }
    };
    let started = Instant::now();
    let report = platform.clone().run_worker(options, all_done).await.expect("worker");
    let elapsed = started.elapsed();
    let mut lags = Vec::with_capacity(total);
    for i in 0..connections {
        let id = format!("c{i}");
        for run in platform.store().sync_runs(&id).await.expect("runs") {
            if let Some(at) = due.get(&(id.clone(), run.sync.clone())) {
                lags.push(Duration::from_millis(run.started_at_ms.saturating_sub(*at)));
            }
        }
    }
    lags.sort();
    println!(
        "scheduler, {connections} connections x {} syncs due over {:?} (8 at once): {} runs ({} failed, {} pages) in {:.1} s; \
         lag p50 {} ms, p99 {} ms, max {} ms; peak RSS {:.0} MiB ({:.0} MiB before the fleet)",
        syncs.len(),
        window,
        report.runs,
        report.failed,
        report.pages,
        elapsed.as_secs_f64(),
        percentile(&lags, 0.5).as_millis(),
        percentile(&lags, 0.99).as_millis(),
        lags.last().map(|l| l.as_millis()).unwrap_or(0),
        peak_rss_mib(),
        rss_before,
    );
    assert_eq!(report.runs as usize, total, "every scheduled sync ran once");
    let _ = std::fs::remove_dir_all(dir);
}

async fn operator_pages() {
    let connections = if quick() { 10 } else { 500 };
    let requests = if quick() { 5 } else { 200 };
    let fake = FakeGong::start(FakeGongConfig::default()).await.expect("fake");
    let dir = scratch("operator");
    let platform = Arc::new(platform(&dir));
    let syncs = platform.describe("gong").await.expect("describe").syncs.clone();
    let store = platform.store().clone();
    let now = terapi_host::limits::unix_ms();
    for i in 0..connections {
        let mut conn = connection(&fake);
        conn.id = format!("c{i}");
        platform.create_connection(&conn).await.expect("connection");
        for (j, sync) in syncs.iter().enumerate() {
            store
                .set_schedule(&conn.id, &sync.name, &sync.model, 3_600, false, Some(now + j as u64 * 1_000))
                .await
                .expect("schedule");
        }
        let lease = terapi_store::SyncLease {
            connection_id: conn.id.clone(),
            sync: "users".into(),
            owner: format!("bench:{i}"),
            ttl: Duration::from_secs(60),
            claimed: false,
        };
        store.begin_sync(&lease, "GongUser", false).await.expect("begin");
        let records =
            (0..10).map(|r| SyncRecord { id: format!("{r}"), modified_at: None, json: fixtures::user(r).to_string() });
        let page = terapi_host::SyncPage {
            records: records.collect(),
            next_checkpoint: None,
            done: true,
            total_records: None,
        };
        store.commit_page(&lease, "GongUser", &page).await.expect("page");
        let outcome = if i % 10 == 0 {
            terapi_store::RunOutcome::Failed("unauthorized: Gong rejected the credential; check the access key")
        } else {
            terapi_store::RunOutcome::Done
        };
        store.finish_sync(&lease, outcome, None).await.expect("finish");
    }
    let key = terapi_serve::auth::new_secret_key().expect("key");
    store.create_api_key(&terapi_serve::auth::sha256_hex(&key), "bench").await.expect("key");
    let base = start_serve(platform).await;
    let http = reqwest::Client::new();
    for path in ["/dashboard", "/metrics"] {
        let mut latencies = Vec::with_capacity(requests);
        let mut size = 0;
        for _ in 0..requests {
            let start = Instant::now();
            let response = http.get(format!("{base}{path}")).bearer_auth(&key).send().await.expect("page");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            size = response.bytes().await.expect("body").len();
            latencies.push(start.elapsed());
        }
        latencies.sort();
        println!(
            "{path}, {connections} connections x {} syncs ({requests} requests): p50 {:.1} ms, p99 {:.1} ms, {} KiB",
            syncs.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            size / 1024
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("records") {
        if quick() {
            runtime.block_on(records_listing(2_000));
        } else {
            runtime.block_on(records_listing(100_000));
            runtime.block_on(records_listing(1_000_000));
        }
    }
    if wanted("scheduler") {
        runtime.block_on(scheduler());
    }
    if wanted("operator") {
        runtime.block_on(operator_pages());
    }
}
