//! [`run`]: serve the market on a bound listener until shutdown.

use std::future::Future;
use std::io;

use discovery_client::{FailureRate, RegistryDiscovery, ServiceClient, StaticDiscovery};
use serving::Server;

use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::routes::app;
use crate::state::AppState;

/// The ratings client `config` describes: registry discovery, or the `--static-ratings` list;
/// both it and the registry calls trust `--ca-file` besides the system's roots.
///
/// # Errors
///
/// [`discovery_client::Error::Config`] for settings the client refuses, a `--ca-file` that
/// cannot be read among them. Must be called inside a tokio runtime.
pub fn ratings_client(config: &Config) -> Result<ServiceClient, discovery_client::Error> {
    let tls = config
        .client_tls()
        .map_err(|e| discovery_client::Error::Config(e.to_string()))?;
    let builder = ServiceClient::builder(config.ratings_service.clone()).tls(tls.clone());
    let builder = match &config.static_ratings {
        Some(urls) => {
            tracing::info!(service = %config.ratings_service, "{}: using the static instances {}",
                config.ratings_service, urls.join(", "));
            builder.discovery(StaticDiscovery::new(urls.clone()))
        }
        None => {
            tracing::info!(service = %config.ratings_service, registry = %config.registry,
                "{}: discovering instances through the registry at {}",
                config.ratings_service, config.registry);
            let mut discovery = RegistryDiscovery::new(config.registry.clone()).tls(tls);
            if let Some(token) = &config.registry_token {
                discovery = discovery.token(token.as_str());
            }
            builder.discovery(discovery)
        }
    };
    let builder = match config.failure_rate {
        Some(ratio) => builder.failure_policy(FailureRate {
            ratio: ratio.get(),
            min_requests: config.failure_rate_min_requests,
            window: config.failure_rate_window,
        }),
        None => builder.failure_limit(config.failure_limit),
    };
    let builder = builder
        .timeout(config.timeout)
        .retest_delay(config.retest_delay)
        .cache_ttl(config.cache_ttl);
    match config.slow_start {
        Some(window) => builder.slow_start(window).build(),
        None => builder.build(),
    }
}

/// Serves the market on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
///
/// The caller binds and chooses plain HTTP (a `TcpListener`) or TLS (a [`serving::Server`]
/// with [`Config::server_tls`]'s settings, as the binary does); `--listen` and the TLS flags
/// are not read here.
///
/// # Errors
///
/// An [`io::ErrorKind::InvalidInput`] error with a clear message if `config` is invalid or the
/// ratings client cannot be built; otherwise whatever serving fails with.
pub async fn run(
    listener: impl Into<Server>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config.validate().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid configuration: {e}"),
        )
    })?;
    // The recorder first: the client takes its metric handles when it is built and as
    // instances arrive, and a handle taken before the recorder is installed records nothing.
    service_telemetry::prometheus::install();
    let ratings = ratings_client(&config).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot set up the ratings client: {e}"),
        )
    })?;
    let max_carts = usize::try_from(config.max_carts).unwrap_or(usize::MAX);
    let state = AppState::new(Catalog::standard(), ratings, CartStore::new(max_carts));
    let history = state.history.clone();
    let recording = tokio::spawn(
        history
            .clone()
            .run(state.ratings.clone(), state.shown.clone()),
    );
    // Open dashboards' streams end as shutdown begins, so they do not hold the drain up.
    let shutdown = async move {
        shutdown.await;
        history.close();
    };
    let served = listener.into().serve(app(state), shutdown).await;
    recording.abort();
    served?;
    tracing::info!("market stopped");
    Ok(())
}
