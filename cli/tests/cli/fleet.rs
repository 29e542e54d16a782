//! A fleet on a real PostgreSQL: workers, a killed worker, a database restart, metrics and readiness.

use std::path::PathBuf;
use std::process::Command;

use fake_gong::FakeGong;

use crate::common::*;
use crate::*;

/// A new, empty database on the test PostgreSQL server (`scripts/test.sh`
/// starts one and sets TERAPI_TEST_DATABASE_URL).
pub(crate) fn fresh_database(name: &str) -> (String, tokio_postgres::Client) {
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

pub(crate) fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
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
    save_and_schedule(&tenants, 50, fleet);

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

    assert_fleet_invariants(&db, &tenants, 50);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sync_state WHERE status = 'done' AND due_at IS NULL"), 50);
    // The victim's runs were cut off, and taken over.
    assert!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM sync_runs WHERE owner LIKE '%:{victim}:%' AND finished_at_ms IS NULL")
        ) >= 1
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sync_runs WHERE status = 'done'"), 50, "one finished run per sync");
}

/// `count` connections spread over `tenants` (`acme-0`, …), each with its
/// users sync due now, saved through the binary as `fleet` sets it up.
pub(crate) fn save_and_schedule(tenants: &[FakeGong], count: usize, fleet: impl Fn(&mut Command)) {
    for i in 0..count {
        let mut create = terapi(Some(&tenants[i % tenants.len()]));
        fleet(&mut create);
        let output = create.args(["connection", "create", &format!("acme-{i}")]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
    }
    let mut schedule = terapi(None);
    fleet(&mut schedule);
    let output = schedule.args(["sync", "schedule", "users", "--all"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
}

/// What must hold after any fleet run of `syncs` syncs of 250 users in 3
/// pages, whatever was killed, paused or restarted on the way.
pub(crate) fn assert_fleet_invariants(db: &tokio_postgres::Client, tenants: &[FakeGong], syncs: i64) {
    // Every record stored exactly once, for every connection; every sync done.
    assert_eq!(count(db, "SELECT COUNT(*) FROM records"), syncs * 250);
    assert_eq!(count(db, "SELECT COUNT(*) FROM (SELECT DISTINCT connection_id, id FROM records) r"), syncs * 250);
    assert_eq!(count(db, "SELECT COUNT(*) FROM sync_state WHERE status = 'done'"), syncs);
    // A taken-over sync resumed from its checkpoint: no page was committed twice.
    let doubled = runs_where(
        db,
        "connection_id IN (SELECT connection_id FROM sync_runs GROUP BY connection_id HAVING SUM(pages) > 3)",
    );
    assert!(doubled.is_empty(), "pages committed twice:\n{}", doubled.join("\n"));
    assert_eq!(count(db, "SELECT SUM(pages)::bigint FROM sync_runs"), syncs * 3);
    // No sync ran concurrently with itself: each run started after the one
    // before it ended (or, for a killed one, after its last sign of life).
    let overlapping = "SELECT COUNT(*) FROM sync_runs a JOIN sync_runs b
         ON a.connection_id = b.connection_id AND a.sync = b.sync AND a.id < b.id
         WHERE b.started_at_ms < COALESCE(a.finished_at_ms, a.last_beat_ms)";
    assert_eq!(count(db, overlapping), 0);
    // No tenant saw more than 3 requests in any second. The one request a
    // worker holds when it is frozen goes out when it wakes, into a second
    // the others may have used up: Gong may refuse that one with 429 (the
    // host waits and retries it). Nothing else may go over the rate.
    for gong in tenants {
        let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).filter(|s| *s != 200).collect();
        assert!(statuses.iter().all(|s| *s == 429) && statuses.len() <= 1, "answers other than 200: {statuses:?}");
        assert!(gong.busiest_second() <= 3 + statuses.len(), "{}", gong.busiest_second());
    }
}

/// A PostgreSQL server of the test's own (it restarts it), removed on drop.
pub(crate) struct OwnPostgres {
    url: String,
    data: String,
}

pub(crate) fn postgres_script(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
    let output = Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(output.status.success(), "postgres.sh {args:?}: {}", text(&output).1);
    text(&output).0
}

impl OwnPostgres {
    pub(crate) fn start() -> OwnPostgres {
        let out = postgres_script(&["start"]);
        let var = |name: &str| {
            out.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().trim().to_string()
        };
        OwnPostgres { url: var("TERAPI_TEST_DATABASE_URL"), data: var("TERAPI_TEST_PGDATA") }
    }

    /// Stops the server (cutting every connection), leaves it down for
    /// `down_secs`, and starts it again on the same port.
    pub(crate) fn restart(&self, down_secs: u32) {
        postgres_script(&["restart", &self.data, &down_secs.to_string()]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let _ = Command::new("bash").arg(script).args(["stop", &self.data]).output();
    }
}

pub(crate) fn signal(pid: u32, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap().success());
}

/// Deliveries as the app's endpoint received them: (event id, body).
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// The app's webhook endpoint: every delivery's event id and body, answered 200.
pub(crate) fn webhook_receiver() -> (String, Deliveries) {
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
    save_and_schedule(&tenants, syncs, fleet);

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
    assert_fleet_invariants(&db, &tenants, syncs);
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
pub(crate) fn runs_where(db: &tokio_postgres::Client, condition: &str) -> Vec<String> {
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
