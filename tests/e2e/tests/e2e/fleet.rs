//! Beyond one machine: the platform on a real PostgreSQL server
//! (`scripts/test.sh` starts one), several platforms sharing it the way
//! hosts of a fleet do.

use std::time::Duration;

use terapi_e2e::fake_gong::{FakeGongConfig, fixtures};
use terapi_e2e::terapi_host::{Credentials, Providers, Secret, SyncPage};
use terapi_e2e::terapi_platform::{Platform, StoredSyncOptions, ToolDecision, WorkerOptions};
use terapi_e2e::terapi_store::{StoreError, SyncLease, SyncRunRecord};
use terapi_e2e::*;

async fn platform(url: &str, dir: &std::path::Path) -> Platform {
    postgres_platform(url, dir, providers().clone(), loopback_runtime()).await
}

fn nothing(_: &SyncPage) {}

#[test]
fn the_postgres_store_keeps_connections_syncs_and_secrets_like_sqlite() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(450), ..FakeGongConfig::default() }).await;
        let url = fresh_database("round_trip").await;
        let dir = fresh_dir("pg-round-trip");
        let platform = platform(&url, &dir).await;
        let connection = connection(&gong);
        let id = connection.id.as_str();
        let wrong = connection_with_secret(&gong, "wrong-secret-for-postgres");
        assert!(platform.create_connection(&wrong).await.is_err());
        platform.create_connection(&connection).await.unwrap();
        assert!(matches!(
            platform.create_connection(&connection).await,
            Err(terapi_e2e::terapi_platform::PlatformError::Store(StoreError::ConnectionExists(_)))
        ));

        gong.fail_after(2);
        let error = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut nothing).await.unwrap_err();
        assert!(error.to_string().contains("500"), "{error}");
        let state = &platform.store().sync_states(id).await.unwrap()[0];
        assert_eq!((state.status.as_str(), state.records), ("failed", 200));
        gong.recover();
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut nothing).await.unwrap();
        assert!(done.resumed);
        assert_eq!(stored_ids(&platform, id, "GongUser").await, (0..450).map(fixtures::user_id).collect::<Vec<_>>());
        let runs = platform.store().sync_runs(id).await.unwrap();
        assert_eq!(
            runs.iter().map(|r| (r.status.as_str(), r.records)).collect::<Vec<_>>(),
            [("failed", 200), ("done", 250)]
        );

        // The secret is sealed in the database, and opens only with the key.
        let (client, conn) =
            terapi_e2e::tokio_postgres::connect(&url, terapi_e2e::tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let sealed: Vec<u8> = client.query_one("SELECT sealed_credentials FROM connections", &[]).await.unwrap().get(0);
        let secret = gong.config().access_key_secret.as_bytes();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        let other_key =
            terapi_e2e::terapi_store::MasterKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
        let refused = terapi_e2e::terapi_store_postgres::PostgresStore::open(&url, other_key, 1).await;
        assert!(matches!(refused, Err(StoreError::WrongKey)));
        let Credentials::Basic { password, .. } = platform.store().connection(id).await.unwrap().credentials else {
            panic!()
        };
        assert_eq!(password, Secret::new(gong.config().access_key_secret.clone()));

        // A user gone from Gong is found deleted by the next full pass.
        gong.remove_users(&[fixtures::user_id(7)]);
        let done = platform.run_sync(id, "users", &StoredSyncOptions::default(), &mut nothing).await.unwrap();
        assert_eq!((done.run.records, done.deleted), (449, 1));
        assert!(!stored_ids(&platform, id, "GongUser").await.contains(&fixtures::user_id(7)));

        // The tool policy: decisions read back in one query, and a watcher
        // hears a decision at once.
        let platform = std::sync::Arc::new(platform);
        let local = terapi_e2e::terapi_platform::Caller::Local("operator".into());
        let mut approved = platform.watch_visible_tools(id, &local, std::time::Duration::from_secs(60)).await.unwrap();
        assert!(approved.borrow().contains("get-user") && !approved.borrow().contains("upload-call"));
        let (approve, deny) = (ToolDecision::Approve, ToolDecision::Deny);
        platform.decide_tools(id, &["upload-call".into(), "get-user".into()], approve).await.unwrap();
        platform.decide_tools(id, &["get-user".into()], deny).await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            approved.wait_for(|tools| !tools.contains("get-user")),
        )
        .await
        .expect("the watcher hears the decision without waiting for its poll")
        .unwrap();
        assert!(approved.borrow().contains("upload-call"));

        platform.delete_connection(id).await.unwrap();
        assert!(platform.store().sync_states(id).await.unwrap().is_empty());
        assert!(stored_ids(&platform, id, "GongUser").await.is_empty());
    });
}

/// No two runs of one sync overlapped: each started after the one before it
/// ended, or, for a run whose worker died, after its last sign of life.
fn assert_never_concurrent(runs: &[SyncRunRecord]) {
    for pair in runs.windows(2) {
        let end = pair[0].finished_at_ms.unwrap_or(pair[0].last_beat_ms);
        assert!(pair[1].started_at_ms >= end, "runs overlapped: {pair:?}");
    }
}

#[test]
fn workers_claim_each_due_sync_once_and_take_over_a_dead_workers_sync() {
    block_on(async {
        let gong = start_gong(FakeGongConfig { users: fixtures::users(250), ..FakeGongConfig::default() }).await;
        let url = fresh_database("workers").await;
        let dir = fresh_dir("pg-workers");
        let setup = platform(&url, &dir).await;
        let mut ids = Vec::new();
        for _ in 0..12 {
            let connection = connection(&gong);
            setup.create_connection(&connection).await.unwrap();
            setup.schedule_sync(&connection.id, "users", None).await.unwrap();
            ids.push(connection.id);
        }
        // A worker claims one sync, commits a page, and dies.
        let store = setup.store().clone();
        let dead = SyncLease {
            connection_id: String::new(),
            sync: "users".into(),
            owner: "dead-worker".into(),
            ttl: Duration::from_millis(1500),
            claimed: true,
        };
        let (claimed, _) = store.claim_due_sync(&dead.owner, dead.ttl, &[]).await.unwrap().unwrap();
        let dead = SyncLease { connection_id: claimed.clone(), ..dead };
        store.begin_sync(&dead, "GongUser", false).await.unwrap();
        let session = setup.session(&claimed).await.unwrap();
        let page = session.run_sync_page(
            "users",
            None,
            &terapi_e2e::terapi_host::SyncOptions { modified_since: None, backfill_days: None },
        );
        store.commit_page(&dead, "GongUser", &page.await.unwrap()).await.unwrap();
        // What /metrics reports of the queue: the dead worker's sync runs
        // (its lease holds), the others have waited since they were due.
        let queue = store.sync_queue().await.unwrap();
        assert_eq!((queue.waiting, queue.running), (11, 1), "{queue:?}");
        assert!(queue.lag_ms > 0 && queue.lag_ms < 60_000, "{queue:?}");

        let worker = || async {
            let platform = std::sync::Arc::new(platform(&url, &dir).await.with_lease_ttl(Duration::from_millis(1500)));
            // All twelve connections are one Gong company: with the default
            // cap of 2 runs per company, whichever worker frees a slot first
            // takes the next, and one worker may rightly do it all. The cap
            // is tested by the fairness tests; here it is above what three
            // workers run at once, so every worker has work.
            let options = WorkerOptions {
                concurrency: 3,
                poll_interval: Duration::from_millis(100),
                exit_when_idle: true,
                per_tenant: 9,
                ..WorkerOptions::default()
            };
            platform.run_worker(options, std::future::pending()).await.unwrap()
        };
        let (one, two, three) = tokio::join!(worker(), worker(), worker());
        let reports = [one, two, three];
        assert_eq!(reports.iter().map(|r| r.runs).sum::<u64>(), 12, "{reports:?}");
        assert!(reports.iter().filter(|r| r.runs > 0).count() >= 2, "the work was shared: {reports:?}");

        for id in &ids {
            assert_eq!(stored_ids(&setup, id, "GongUser").await, (0..250).map(fixtures::user_id).collect::<Vec<_>>());
            let runs = store.sync_runs(id).await.unwrap();
            assert_eq!(runs.iter().filter(|r| r.status == "done").count(), 1, "{runs:?}");
            assert_never_concurrent(&runs);
            assert_eq!(store.sync_states(id).await.unwrap()[0].status, "done");
        }
        // The dead worker's sync resumed after its page: 2 pages, not 3.
        let runs = store.sync_runs(&claimed).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].owner.as_str(), runs[0].pages, runs[0].finished_at_ms), ("dead-worker", 1, None));
        assert_eq!((runs[1].pages, runs[1].records), (2, 150));
        assert_eq!(store.due_now().await.unwrap(), 0);
    });
}

#[test]
fn platforms_on_one_database_keep_gongs_rate_and_daily_budget_together() {
    block_on(async {
        let config =
            FakeGongConfig { rate_limit_per_second: Some(3), users: fixtures::users(5), ..FakeGongConfig::default() };
        let gong = start_gong(config).await;
        let url = fresh_database("budgets").await;
        let dir = fresh_dir("pg-budgets");
        let text = PROVIDERS_YAML.replacen("per_day: 10000", "per_day: 14", 1);
        let providers = Providers::parse(&text, "providers.yaml").unwrap();
        let a = postgres_platform(&url, &dir, providers.clone(), loopback_runtime()).await;
        let b = postgres_platform(&url, &dir, providers, loopback_runtime()).await;
        let (first, second) = (connection(&gong), connection(&gong));
        a.create_connection(&first).await.unwrap();
        b.create_connection(&second).await.unwrap();
        let (a, b) = (a.session(&first.id).await.unwrap(), b.session(&second.id).await.unwrap());
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..14 {
            let session = if i % 2 == 0 { a.clone() } else { b.clone() };
            let input = format!(r#"{{"id":"{}"}}"#, fixtures::user_id(i % 5));
            calls.spawn(async move { session.run_action("get-user", &input).await });
        }
        let mut spent = 0;
        while let Some(result) = calls.join_next().await {
            match result.unwrap() {
                Ok(_) => {}
                Err(e) if e.to_string().contains("daily budget of 14 requests") => spent += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(spent, 2, "2 verifies and 12 of the 14 calls fit in the day's 14");
        let statuses: Vec<u16> = gong.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200; 14], "none answered 429");
        assert_eq!(gong.busiest_second(), 3);
    });
}

/// Four workers of eight slots each on one store, with four tenants whose
/// syncs may run two at a time: each worker runs about its share (two),
/// not one worker everything, so losing one stalls only its share.
#[test]
fn workers_share_out_the_runs_the_tenant_cap_allows() {
    block_on(async {
        let url = fresh_database("share").await;
        let dir = fresh_dir("pg-share");
        let mut tenants = Vec::new();
        for _ in 0..4 {
            let gong = start_gong(FakeGongConfig { users: fixtures::users(300), ..FakeGongConfig::default() }).await;
            gong.set_delay(Duration::from_millis(300));
            tenants.push(gong);
        }
        let mut workers = Vec::new();
        for _ in 0..4 {
            workers.push(std::sync::Arc::new(platform(&url, &dir).await));
        }
        for tenant in &tenants {
            for _ in 0..4 {
                let connection = connection(tenant);
                workers[0].create_connection(&connection).await.unwrap();
                workers[0].schedule_sync(&connection.id, "users", None).await.unwrap();
            }
        }
        // Polling every second, as deployed: a worker over its share waits a
        // poll and a half before claiming anyway, time enough for idle ones
        // even on a loaded machine.
        let options = WorkerOptions { concurrency: 8, exit_when_idle: true, ..WorkerOptions::default() };
        let running: Vec<_> = workers
            .iter()
            .map(|w| tokio::spawn(w.clone().run_worker(options.clone(), std::future::pending())))
            .collect();
        let mut most = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut seen_full = false;
        while !running.iter().all(|r| r.is_finished()) {
            assert!(std::time::Instant::now() < deadline, "the fleet did not finish");
            let leases = workers[0].store().live_leases().await.unwrap();
            let held: Vec<usize> = workers
                .iter()
                .map(|w| leases.iter().filter(|(_, _, owner)| owner.starts_with(w.owner())).count())
                .collect();
            if leases.len() >= 6 {
                seen_full = true;
                most = most.max(*held.iter().max().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for worker in running {
            assert_eq!(worker.await.unwrap().unwrap().failed, 0);
        }
        assert!(seen_full, "the fleet never ran most of the 8 runs the cap allows at once");
        // Its share is 2 of the 8 the cap allows; without sharing, one
        // worker held all 8. A slow idle worker may leave it one or two more.
        assert!(most <= 4, "one worker held {most} of the runs at once; its share is 2");
    });
}
