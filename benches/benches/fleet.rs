//! A fleet of workers on one PostgreSQL: sync throughput with 1, 2 and 3
//! workers against the fake Gong with rate limits off, and, with Gong's
//! limits on, how close the fleet gets to 3 requests a second per tenant.
//!
//! Needs a PostgreSQL server: TERAPI_TEST_DATABASE_URL (scripts/test.sh
//! starts one; `scripts/postgres.sh start` prints the variables to export).
//! Each worker is a platform of its own (its own runtime, pool and database
//! connections), as a worker process would be; they share the machine's two
//! cores with the fake and the database, so this measures the platform's
//! overhead per page, not a fleet spread over machines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fake_gong::{FakeGong, FakeGongConfig, fixtures};
use terapi_benches::connection;

use terapi_platform::{Platform, WorkerOptions};

fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--test")
}

/// Whether a criterion filter given on the command line (if any) names `group`.
fn wanted(group: &str) -> bool {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()))
}

fn database_url() -> Option<String> {
    std::env::var("TERAPI_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A fresh database for one benchmark; its URL.
async fn fresh_database(admin: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await.expect("PostgreSQL");
    tokio::spawn(connection);
    let database = format!("bench_{}_{name}", std::process::id());
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {database}")).await.expect("drop");
    client.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create");
    format!("{}/{database}", admin.rsplit_once('/').expect("a database URL").0)
}

async fn platform(url: &str, dir: &std::path::Path, rate_limits: bool) -> Platform {
    let key = terapi_store::MasterKey::from_env_or_file(dir).expect("key");
    let store = Arc::new(terapi_store_postgres::PostgresStore::open(url, key, 8).await.expect("store"));
    terapi_benches::gong_platform(store, dir, rate_limits)
}

/// Creates `connections` connections spread over `tenants`; their ids.
async fn connect_all(setup: &Platform, tenants: &[FakeGong], connections: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..connections {
        let mut connection = connection(&tenants[i % tenants.len()]);
        connection.id = format!("bench-{i}");
        setup.create_connection(&connection).await.expect("connection");
        ids.push(connection.id);
    }
    ids
}

/// Schedules every sync and runs `workers` workers until all are done.
async fn run_fleet(workers: &[Arc<Platform>], ids: &[String]) -> Duration {
    for id in ids {
        workers[0].schedule_sync(id, "users", None).await.expect("schedule");
    }
    let started = Instant::now();
    let options = WorkerOptions {
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        exit_when_idle: true,
        ..WorkerOptions::default()
    };
    let mut running = tokio::task::JoinSet::new();
    for worker in workers {
        running.spawn(worker.clone().run_worker(options.clone(), std::future::pending()));
    }
    while let Some(report) = running.join_next().await {
        let report = report.expect("worker").expect("worker ran");
        assert_eq!(report.failed, 0, "{report:?}");
    }
    started.elapsed()
}

fn throughput(c: &mut Criterion) {
    if !wanted("fleet_pages") && !wanted("fleet_limited") {
        return;
    }
    let Some(admin) = database_url() else {
        eprintln!("fleet: skipped, TERAPI_TEST_DATABASE_URL is not set (scripts/postgres.sh start)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let (connections, users): (usize, usize) = if quick() { (4, 150) } else { (20, 250) };
    let pages = (connections * users.div_ceil(100)) as u64;
    let mut group = c.benchmark_group("fleet_pages");
    group.sample_size(10).throughput(Throughput::Elements(pages));
    for workers in [1usize, 2, 3] {
        let dir = std::env::temp_dir().join(format!("terapi-bench-fleet-{}-{workers}", std::process::id()));
        let (tenants, fleet, ids) = rt.block_on(async {
            let url = fresh_database(&admin, &format!("w{workers}")).await;
            let config = FakeGongConfig { users: fixtures::users(users), ..FakeGongConfig::default() };
            let tenants = vec![FakeGong::start(config).await.expect("fake")];
            let mut fleet = Vec::new();
            for _ in 0..workers {
                fleet.push(Arc::new(platform(&url, &dir, false).await));
            }
            let ids = connect_all(&fleet[0], &tenants, connections).await;
            (tenants, fleet, ids)
        });
        group.bench_with_input(BenchmarkId::from_parameter(workers), &workers, |b, _| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += run_fleet(&fleet, &ids).await;
                    }
                    total
                })
            })
        });
        drop((tenants, fleet));
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();

    // Gong's limits on: two tenants, three workers; requests a second per
    // tenant over the run, against the 3 allowed.
    let dir = std::env::temp_dir().join(format!("terapi-bench-fleet-{}-limited", std::process::id()));
    rt.block_on(async {
        let url = fresh_database(&admin, "limited").await;
        let tenants: Vec<FakeGong> = {
            let mut tenants = Vec::new();
            for _ in 0..2 {
                let config = FakeGongConfig {
                    users: fixtures::users(if quick() { 150 } else { 250 }),
                    rate_limit_per_second: Some(3),
                    ..FakeGongConfig::default()
                };
                tenants.push(FakeGong::start(config).await.expect("fake"));
            }
            tenants
        };
        let mut fleet = Vec::new();
        for _ in 0..3 {
            fleet.push(Arc::new(platform(&url, &dir, true).await));
        }
        let ids = connect_all(&fleet[0], &tenants, if quick() { 4 } else { 12 }).await;
        run_fleet(&fleet, &ids).await;
        for (i, gong) in tenants.iter().enumerate() {
            let requests = gong.requests();
            let span = requests.last().expect("requests").at.duration_since(requests[0].at).as_secs_f64();
            let throttled = requests.iter().filter(|r| r.status == 429).count();
            println!(
                "fleet_limited/tenant_{i}: {} requests in {span:.1} s = {:.2} requests/s (limit 3), busiest second {}, {throttled} answered 429",
                requests.len(),
                (requests.len() - 1) as f64 / span.max(0.001),
                gong.busiest_second()
            );
        }
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// `n` fake Gong companies of `users` users, each keeping Gong's 3 requests a second.
async fn limited_tenants(n: usize, users: usize) -> Vec<FakeGong> {
    let mut tenants = Vec::new();
    for _ in 0..n {
        let config = FakeGongConfig {
            users: fixtures::users(users),
            rate_limit_per_second: Some(3),
            ..FakeGongConfig::default()
        };
        tenants.push(FakeGong::start(config).await.expect("fake"));
    }
    tenants
}

/// Fairness: four tenants at Gong's 3 requests a second, ten syncs each,
/// scheduled tenant by tenant (a big customer's connections all at once),
/// four slots. The tenants' limits allow the whole batch in the time the
/// busiest tenant needs at 3 a second; the figure is that time as a
/// percentage of the time taken (100%: no slot ever waited on a saturated
/// tenant while another sat idle).
fn fairness(_: &mut Criterion) {
    if !wanted("fleet_fairness") {
        return;
    }
    let Some(admin) = database_url() else {
        eprintln!("fleet fairness: skipped, TERAPI_TEST_DATABASE_URL is not set (scripts/postgres.sh start)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let (per_tenant, users) = if quick() { (2, 150) } else { (10, 250) };
    let dir = std::env::temp_dir().join(format!("terapi-bench-fairness-{}", std::process::id()));
    rt.block_on(async {
        let url = fresh_database(&admin, "fairness").await;
        let tenants = limited_tenants(4, users).await;
        let platform = Arc::new(platform(&url, &dir, true).await);
        let mut ids = Vec::new();
        for (t, tenant) in tenants.iter().enumerate() {
            for i in 0..per_tenant {
                let mut connection = connection(tenant);
                connection.id = format!("t{t}-c{i}");
                platform.create_connection(&connection).await.expect("connection");
                ids.push(connection.id);
            }
        }
        let started_at = Instant::now();
        for id in &ids {
            platform.schedule_sync(id, "users", None).await.expect("schedule");
            // Due one after another, tenant by tenant.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let options = WorkerOptions {
            concurrency: 4,
            poll_interval: Duration::from_millis(50),
            exit_when_idle: true,
            ..WorkerOptions::default()
        };
        let report = platform.clone().run_worker(options, std::future::pending()).await.expect("worker");
        let taken = started_at.elapsed();
        assert_eq!(report.failed, 0, "{report:?}");
        // What the limits allow: the busiest tenant's requests of this
        // batch, one every third of a second after the first.
        let busiest =
            tenants.iter().map(|t| t.requests().iter().filter(|r| r.at >= started_at).count()).max().unwrap_or(0);
        let allowed = Duration::from_secs_f64(busiest.saturating_sub(1) as f64 / 3.0);
        let throttled: usize = tenants.iter().map(|t| t.requests().iter().filter(|r| r.status == 429).count()).sum();
        println!(
            "fleet_fairness: 4 tenants at 3 requests/s x {per_tenant} syncs, 4 slots: {} runs in {:.1} s where the \
             limits allow {:.1} s = {:.0}% of the ideal; {throttled} answered 429",
            report.runs,
            taken.as_secs_f64(),
            allowed.as_secs_f64(),
            100.0 * allowed.as_secs_f64() / taken.as_secs_f64()
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Losing a worker: four tenants at Gong's 3 requests a second, four
/// workers (each a platform of its own, 8 slots, 2 runs per tenant across
/// the fleet), lease 15 s. In one pass nothing happens to them; in the
/// other the worker running the most syncs is killed (its task dropped: no
/// lease given back, as a SIGKILL on another machine) after a quarter of
/// the requests. The figure is the share of the tenants' 3 requests/s the
/// fleet used over the whole run.
fn worker_loss(_: &mut Criterion) {
    if !wanted("fleet_worker_loss") {
        return;
    }
    let Some(admin) = database_url() else {
        eprintln!("fleet worker loss: skipped, TERAPI_TEST_DATABASE_URL is not set (scripts/postgres.sh start)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let (per_tenant, users) = if quick() { (2, 150) } else { (12, 1000) };
    for kill in [false, true] {
        let dir = std::env::temp_dir().join(format!("terapi-bench-loss-{}-{kill}", std::process::id()));
        rt.block_on(async {
            let url = fresh_database(&admin, if kill { "loss_kill" } else { "loss_steady" }).await;
            let tenants = limited_tenants(4, users).await;
            let mut workers = Vec::new();
            for _ in 0..4 {
                workers.push(Arc::new(platform(&url, &dir, true).await.with_lease_ttl(Duration::from_secs(15))));
            }
            for (t, tenant) in tenants.iter().enumerate() {
                for i in 0..per_tenant {
                    let mut connection = connection(tenant);
                    connection.id = format!("t{t}-c{i}");
                    workers[0].create_connection(&connection).await.expect("connection");
                    workers[0].schedule_sync(&connection.id, "users", None).await.expect("schedule");
                }
            }
            let started_at = Instant::now();
            let options = WorkerOptions { concurrency: 8, exit_when_idle: true, ..WorkerOptions::default() };
            let running: Vec<_> = workers
                .iter()
                .map(|w| tokio::spawn(w.clone().run_worker(options.clone(), std::future::pending())))
                .collect();
            let pages = per_tenant * 4 * users.div_ceil(100);
            if kill {
                while tenants.iter().map(|t| t.requests().len()).sum::<usize>() < 4 * per_tenant + pages / 4 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let leases = workers[0].store().live_leases().await.expect("leases");
                let held = |w: &Platform| leases.iter().filter(|(_, _, owner)| owner.starts_with(w.owner())).count();
                let busiest = (0..workers.len()).max_by_key(|n| held(&workers[*n])).expect("workers");
                println!(
                    "fleet_worker_loss: runs held per worker when one is killed: {:?}",
                    workers.iter().map(|w| held(w)).collect::<Vec<_>>()
                );
                running[busiest].abort();
            }
            for worker in running {
                match worker.await {
                    Ok(report) => assert_eq!(report.expect("worker ran").failed, 0),
                    Err(e) => assert!(kill && e.is_cancelled(), "{e}"),
                }
            }
            let taken = started_at.elapsed().as_secs_f64();
            let answered: usize = tenants
                .iter()
                .map(|t| t.requests().iter().filter(|r| r.at >= started_at && r.status == 200).count())
                .sum();
            println!(
                "fleet_worker_loss ({}): 4 workers, 4 tenants x {per_tenant} syncs of {users} users: {answered} \
                 requests in {taken:.1} s = {:.0}% of the tenants' 3 requests/s",
                if kill { "one worker killed after a quarter" } else { "no worker lost" },
                100.0 * answered as f64 / (3.0 * 4.0 * taken)
            );
        });
        let _ = std::fs::remove_dir_all(dir);
    }
}

criterion::criterion_group!(benches, throughput, fairness, worker_loss);
criterion::criterion_main!(benches);
