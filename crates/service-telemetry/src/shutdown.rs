//! The shutdown signal every service binary passes to its `run`: Ctrl-C or SIGTERM.

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
///
/// The signal handlers are installed when this is called, not when the future is first
/// polled: call it before logging `listening on`, so that a supervisor (or a test) that
/// sends SIGTERM as soon as it reads that line gets a clean shutdown, not the default
/// action of the signal. Must be called inside a tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait =
                |name: &'static str, installed: std::io::Result<tokio::signal::unix::Signal>| async move {
                    match installed {
                        Ok(mut signal) => {
                            signal.recv().await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot listen for {name}");
                            std::future::pending::<()>().await;
                        }
                    }
                };
            tokio::select! {
                () = wait("Ctrl-C", interrupt) => tracing::info!("Ctrl-C: shutting down"),
                () = wait("SIGTERM", terminate) => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C: shutting down");
        }
    }
}
