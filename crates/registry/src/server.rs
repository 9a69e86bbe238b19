//! Serving the API on a bound listener until told to stop.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, app};
use crate::sweeper;

/// Serves the registry on `listener` until `shutdown` completes, then shuts down
/// gracefully: blocking queries answer at once, in-flight requests finish, and the lease
/// sweeper has stopped before this returns.
///
/// The caller binds (so tests can pass a `127.0.0.1:0` listener) and validates `config`
/// ([`Config::validate`]); `config.listen` is not used here.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// registry::run(listener, registry::Config::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let state = AppState::new(&config);
    let signal = state.shutdown().clone();
    let sweeper = sweeper::spawn(
        Arc::clone(state.store()),
        config.sweep_interval,
        signal.clone(),
    );

    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown({
            let signal = signal.clone();
            async move {
                tokio::select! {
                    () = shutdown => tracing::info!("shutting down"),
                    () = signal.triggered() => {}
                }
                signal.trigger();
            }
        })
        .await;

    // Also reached when serving failed: stop the sweeper either way.
    signal.trigger();
    if let Err(error) = sweeper.await {
        tracing::error!(%error, "lease sweeper failed");
    }
    served
}
