//! Stopping on SIGINT (Ctrl-C) and SIGTERM (what systemd, docker and
//! Kubernetes send): the first asks the work to stop cleanly (a sync gives
//! its lease up and keeps its checkpoint, so a rerun may start at once);
//! a second stops the process at once.

use tokio_util::sync::CancellationToken;

/// Exit status after a stop by signal (128 + SIGINT), as shells expect.
pub const INTERRUPTED: u8 = 130;

/// A token cancelled by the first SIGINT or SIGTERM. `what` says on stderr
/// what the first signal does.
pub fn stop_on_signal(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        signal().await;
        eprintln!("\n{what}; a second Ctrl-C or SIGTERM stops at once");
        stop.cancel();
        signal().await;
        eprintln!("stopped at once");
        std::process::exit(i32::from(INTERRUPTED));
    });
    token
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
