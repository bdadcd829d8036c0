//! What the project's binaries share: usage errors as one line (exit 2), any error folded into
//! one line (exit 1), and for the servers (`tinykv-server`, `tinykv-scheduler`) the shutdown
//! signal and a graceful stop bounded by a grace period. The scheduler's binary uses it;
//! `tinykv-server`, `tinykv-ctl` and `tinykv-bench` reach it through `kvserver::config`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use slog::{info, Logger};

/// `s` with its lines trimmed and joined by spaces: one line for stderr.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the command line of binary `name`; on bad usage prints one line (and where to get
/// help) on stderr and exits with status 2. `--help` and `--version` print and exit 0.
pub fn parse_args_or_exit<T: clap::Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let text = e.to_string();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("{} (see {name} --help)", one_line(&kept.join("\n")));
            std::process::exit(2);
        }
    }
}

/// Ends a binary named `name`: on an error, prints it as one line on stderr and exits with 1.
pub fn exit_on_error<E: std::fmt::Display>(name: &str, result: Result<(), E>) {
    if let Err(e) = result {
        eprintln!("{name}: error: {}", one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// Handles SIGINT and SIGTERM from now on (call it before the slow parts of a start, so that a
/// signal then stops the server cleanly instead of killing it); the future completes on the
/// first of them, logging which. Needs a tokio runtime.
pub fn shutdown_signal(
    logger: Logger,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        info!(logger, "signal received; shutting down"; "signal" => name);
    })
}

/// How long in-flight calls get to finish after the shutdown signal; then the connections still
/// open (long-lived streams: other stores' raft streams, the stores' heartbeat streams) are
/// closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A future that completes when a server should begin its graceful stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs the server `serve` builds around a stop signal (it stops gracefully once the signal
/// completes) until it ends, or until [`SHUTDOWN_GRACE`] after `shutdown` completed: a graceful
/// stop waits for every open stream, and a peer's long-lived stream never ends by itself.
/// `None`: the grace ran out.
pub async fn serve_with_grace<T, Fut>(
    shutdown: impl Future<Output = ()> + Send + 'static,
    serve: impl FnOnce(StopSignal) -> Fut,
) -> Option<T>
where
    Fut: Future<Output = T>,
{
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = Box::pin(async move {
        shutdown.await;
        let _ = signalled_tx.send(());
    });
    tokio::select! {
        r = serve(signal) => Some(r),
        _ = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => None,
    }
}
