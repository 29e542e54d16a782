//! Accepting connections so that clients who send nothing cannot lock the
//! server: every connection must finish its request headers within
//! `header_timeout`, a keep-alive connection with no request in flight is
//! closed after `idle_timeout`, and at most `max_connections` are open at
//! once. At the cap, the connection idle the longest is closed to make
//! room (an idle or trickling client never keeps a working one out); with
//! every connection busy, a new one is answered 503 and closed.
//!
//! Without this, 1,100 idle TCP connections under the usual 1,024 file
//! limit left `accept` failing and `/health/live` timing out for as long
//! as the attacker liked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How `terapi serve` treats its TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; `None`: from the process's file limit
    /// (raised to its hard limit at start), less room for the store, the
    /// providers and logs.
    pub max_connections: Option<usize>,
    /// Time to send a request's headers, from connecting or from the end of
    /// the previous response.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// File descriptors kept for everything but client connections.
const RESERVED_FDS: u64 = 128;

impl ConnectionLimits {
    /// The cap in force: given, or the file limit less `RESERVED_FDS`.
    pub fn resolved_max(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = raise_file_limit();
            usize::try_from(limit.saturating_sub(RESERVED_FDS).clamp(16, 1 << 20)).unwrap_or(1 << 20)
        })
    }
}

/// Raises the soft limit on open files to the hard one (as Go's runtime and
/// most servers do: the soft 1,024 is a default for programs that select(),
/// which this one does not); the soft limit now in force.
fn raise_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every unix
        u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// One open connection, as the accept loop and the sweeper see it.
struct Tracked {
    /// Requests being answered (a response body still streaming counts).
    in_flight: Arc<AtomicUsize>,
    /// Milliseconds since `epoch` when the connection last went idle.
    idle_since_ms: Arc<AtomicU64>,
    /// Whether a request was ever answered on it.
    served: Arc<std::sync::atomic::AtomicBool>,
    close: CancellationToken,
}

#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Tracked>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tracked>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for one more at the cap: closes the connection idle the
    /// longest. False when every connection is busy.
    fn make_room(&self, max: usize) -> bool {
        let open = self.lock();
        if open.len() < max {
            return true;
        }
        let oldest_idle = open
            .values()
            .filter(|t| t.in_flight.load(Ordering::Acquire) == 0 && !t.close.is_cancelled())
            .min_by_key(|t| t.idle_since_ms.load(Ordering::Acquire));
        match oldest_idle {
            Some(tracked) => {
                tracked.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes connections idle past their deadline.
    fn sweep(&self, now_ms: u64, limits: &ConnectionLimits) {
        for tracked in self.lock().values() {
            if tracked.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let allowed =
                if tracked.served.load(Ordering::Acquire) { limits.idle_timeout } else { limits.header_timeout };
            let idle = now_ms.saturating_sub(tracked.idle_since_ms.load(Ordering::Acquire));
            if idle > allowed.as_millis() as u64 {
                tracked.close.cancel();
            }
        }
    }
}

/// Decrements a connection's requests in flight when dropped (the end of
/// the response body, or the request abandoned).
struct InFlight {
    in_flight: Arc<AtomicUsize>,
    idle_since_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.idle_since_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` under `limits` (`terapi serve`, `terapi
/// webhooks serve`) until `shutdown` is cancelled; then stops accepting,
/// lets requests in flight finish (up to 10 s) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let max = limits.resolved_max();
    tracing::info!(
        "accepting at most {max} connections (headers within {:?}, idle for at most {:?})",
        limits.header_timeout,
        limits.idle_timeout
    );
    let registry = Arc::new(Registry::default());
    let epoch = Instant::now();
    let sweeper = {
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => registry.sweep(epoch.elapsed().as_millis() as u64, &limits),
                    () = shutdown.cancelled() => return,
                }
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(limits.idle_timeout));
    let builder = Arc::new(builder);
    let connections = tokio_util::task::TaskTracker::new();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        if !registry.make_room(max) {
            connections.spawn(refuse(stream));
            continue;
        }
        next_id += 1;
        let id = next_id;
        let tracked = Tracked {
            in_flight: Arc::new(AtomicUsize::new(0)),
            idle_since_ms: Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64)),
            served: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            close: CancellationToken::new(),
        };
        let (in_flight, idle_since_ms, served, close) =
            (tracked.in_flight.clone(), tracked.idle_since_ms.clone(), tracked.served.clone(), tracked.close.clone());
        registry.lock().insert(id, tracked);
        let (router, builder, registry, shutdown) =
            (router.clone(), builder.clone(), registry.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                in_flight.fetch_add(1, Ordering::AcqRel);
                served.store(true, Ordering::Release);
                let guard = InFlight { in_flight: in_flight.clone(), idle_since_ms: idle_since_ms.clone(), epoch };
                let router = router.clone();
                async move {
                    let response = match router.oneshot(request.map(Body::new)).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    // The request counts as in flight until its body is sent.
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _ = &guard;
                            frame
                        }))
                    }))
                }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = close.cancelled() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), connection.as_mut()).await;
                }
            }
            registry.lock().remove(&id);
        });
    }
    sweeper.abort();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The answer to a connection past the cap while every open one is busy.
async fn refuse(mut stream: tokio::net::TcpStream) {
    crate::metrics_refused_connection();
    let body = r#"{"error":{"code":"too_many_connections","message":"this server has as many connections open as it allows, all busy; retry shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}
