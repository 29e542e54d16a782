//! `terapi serve` against hostile clients, through the real binary: idle
//! and trickling connections under the file limit a systemd unit gets,
//! made-up methods against `/metrics`.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use crate::common::*;

/// `terapi serve` with its open-files limit at 1,024 (soft and hard, as a
/// unit without `LimitNOFILE` gets), its URL and a secret key.
fn serve_limited(dir: &std::path::Path, extra: &[&str]) -> (ChildGuard, String, String) {
    let key = terapi(None).env("TERAPI_DATA_DIR", dir).args(["key", "create", "--label", "ops"]).output().unwrap();
    assert!(key.status.success(), "{}", text(&key).1);
    let key = text(&key).0.trim().to_string();
    let mut command = terapi(None);
    command.env("TERAPI_DATA_DIR", dir).args(["serve", "--bind", "127.0.0.1:0", "--concurrency", "0"]).args(extra);
    // SAFETY: setrlimit is async-signal-safe, and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let url = listening_url(&mut child).expect("the address is printed");
    (ChildGuard(child), url.trim_end_matches('/').to_string(), key)
}

/// This test process opens over a thousand sockets: its soft limit goes up
/// to its hard one.
fn raise_own_file_limit() {
    // SAFETY: reads and writes only the struct given.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        assert!(limit.rlim_max >= 2048, "this test needs 2,048 open files; the hard limit is {}", limit.rlim_max);
    }
}

#[test]
fn idle_and_slowloris_connections_do_not_lock_out_a_normal_client() {
    raise_own_file_limit();
    let dir = data_dir("serve-idle-connections");
    let (_server, url, _key) = serve_limited(&dir, &["--header-timeout", "3"]);
    let address = url.trim_start_matches("http://").to_string();

    let idle: Vec<std::net::TcpStream> =
        (0..1_100).filter_map(|_| std::net::TcpStream::connect(&address).ok()).collect();
    assert!(idle.len() >= 1_000, "the test opened only {} connections", idle.len());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<std::thread::JoinHandle<()>> = (0..100)
        .map(|_| {
            let (address, stop) = (address.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut stream) = std::net::TcpStream::connect(&address) else { return };
                let _ = stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n");
                // One header byte every 300 ms, never the end of the headers.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if stream.write_all(b"X").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // A normal client, a new connection each time, is answered within a second.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for attempt in 0..10 {
        let answer = tokio()
            .block_on(async { client.get(format!("{url}/health/live")).timeout(Duration::from_secs(1)).send().await });
        let answer = answer.unwrap_or_else(|e| panic!("attempt {attempt}: no answer within a second: {e}"));
        assert_eq!(answer.status(), 200, "attempt {attempt}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Connections that never finish their headers are closed by the server.
    let mut survivor = idle.into_iter().last().expect("an idle connection");
    survivor.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buffer = [0u8; 64];
    assert!(matches!(survivor.read(&mut buffer), Ok(0) | Err(_)), "an idle connection is closed, not kept");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in slow {
        let _ = thread.join();
    }
}

#[test]
fn made_up_methods_do_not_grow_metrics() {
    let dir = data_dir("serve-metrics-methods");
    let (_server, url, key) = serve_limited(&dir, &[]);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    tokio().block_on(async {
        for n in 0..300 {
            let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
            let _ = client.request(method, format!("{url}/health/live")).send().await.unwrap();
        }
        let metrics =
            client.get(format!("{url}/metrics")).bearer_auth(&key).send().await.unwrap().text().await.unwrap();
        assert!(!metrics.contains("MADEUP"), "a made-up method became a label");
        let methods: std::collections::BTreeSet<&str> =
            metrics.match_indices("method=\"").map(|(i, _)| metrics[i + 8..].split('"').next().unwrap()).collect();
        assert!(
            methods.iter().all(|m| ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"].contains(m))
        );
        assert!(methods.contains("other"), "{methods:?}");
        assert!(metrics.len() < 64 * 1024, "the scrape is {} bytes", metrics.len());
    });
}

/// Another process (a backup, `sqlite3`, a second terapi) holding the SQLite
/// write lock makes store calls wait up to the busy timeout. They wait off
/// the async workers: the server keeps answering what needs no store.
#[test]
fn a_held_sqlite_write_lock_does_not_stall_the_server() {
    let dir = data_dir("serve-sqlite-lock");
    let (_server, url, key) = serve_limited(&dir, &[]);
    let client = reqwest::Client::new();
    let runtime = tokio();

    let locker = rusqlite::Connection::open(dir.join("terapi.db")).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // More waiting writers than the server has worker threads.
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let request = client
                .post(format!("{url}/connect/sessions"))
                .bearer_auth(&key)
                .json(&serde_json::json!({"end_user": {"id": format!("u-{n}")}}))
                .timeout(Duration::from_secs(30));
            runtime.spawn(async move { request.send().await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(writers.iter().all(|w| !w.is_finished()), "the writers wait for the lock");

    let live = runtime
        .block_on(async { client.get(format!("{url}/health/live")).timeout(Duration::from_secs(5)).send().await })
        .expect("/health/live answers while store calls wait for the lock");
    assert_eq!(live.status(), 200);
    assert!(writers.iter().all(|w| !w.is_finished()), "the lock was still held when /health/live answered");

    locker.execute_batch("ROLLBACK").unwrap();
    for writer in writers {
        let answer = runtime.block_on(writer).unwrap().expect("the writer is answered once the lock is gone");
        assert_eq!(answer.status(), 200, "a writer that waited saves its session");
    }
}
