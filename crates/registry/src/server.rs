//! Serving the API on a bound listener until told to stop.

use std::future::Future;
use std::io;
use std::sync::Arc;

use serving::Server;

use crate::config::Config;
use crate::http::{AppState, app};
use crate::store::{self, Store};
use crate::sweeper;

/// Serves the registry on `listener` until `shutdown` completes, then shuts down
/// gracefully: blocking queries answer at once, in-flight requests finish, and the lease
/// sweeper has stopped before this returns.
///
/// The caller binds (so tests can pass a `127.0.0.1:0` listener), chooses plain HTTP (a
/// `TcpListener`) or TLS (a [`serving::Server`] with [`Config::server_tls`]'s settings, as
/// the binary does) and validates `config` ([`Config::validate`]); `config.listen` and the
/// TLS flags are not used here. The store is the one
/// `config.store` names, opened here; an etcd store that cannot be opened is an error of
/// kind `Other` (use [`run_with_store`] to open it first, as the binary does).
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
    listener: impl Into<Server>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let store = store::open(&config).await.map_err(io::Error::other)?;
    run_with_store(listener, config, store, shutdown).await
}

/// As [`run`], serving `store` (from [`store::open`], or any other [`Store`]).
pub async fn run_with_store(
    listener: impl Into<Server>,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let state = AppState::with_store(&config, store);
    let signal = state.shutdown().clone();
    let sweeper = sweeper::spawn(
        Arc::clone(state.store()),
        config.sweep_interval,
        signal.clone(),
    );

    // Handlers get the peer address (`ConnectInfo`) from the server, for the per-client
    // blocking-query cap.
    let served = listener
        .into()
        .serve(app(state), {
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
