//! [`run`]: serve the market on a bound listener until shutdown.

use std::future::Future;
use std::io;

use discovery_client::discovery::Discovery;
use discovery_client::events::EventBus;
use discovery_client::grpc::{self, GrpcChannel, GrpcConfig};
use discovery_client::{
    DnsDiscovery, FailureRate, RegistryDiscovery, ServiceClient, StaticDiscovery,
};
use serving::Server;

use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::config::{Config, RatingsDiscovery, RatingsProtocol};
use crate::routes::app;
use crate::state::AppState;

/// Events the gRPC channel's bus holds for a slow reader (the status history), as many as
/// the HTTP client's.
const GRPC_EVENTS: usize = 1024;

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
    let builder = ServiceClient::builder(config.ratings_service.clone())
        .tls(tls)
        .discovery(ratings_discovery(config)?);
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

/// The gRPC channel to ratings that `config` describes (`--ratings-protocol grpc`): the
/// same discovery, breaker and TLS settings (`--ca-file`) as [`ratings_client`]. A
/// `--failure-rate` policy applies to the HTTP client only; the channel opens on
/// `--failure-limit`. `GetRating` is marked idempotent: its calls are retried and hedged on
/// another instance, as the HTTP client's GETs are. Its events go to `events`.
///
/// # Errors
///
/// As [`ratings_client`]. Must be called inside a tokio runtime.
pub fn ratings_grpc_channel(
    config: &Config,
    events: &EventBus,
) -> Result<GrpcChannel, discovery_client::Error> {
    let tls = config
        .client_tls()
        .map_err(|e| discovery_client::Error::Config(e.to_string()))?;
    let settings = GrpcConfig::default()
        .tls(tls)
        .timeout(config.timeout)
        .failure_limit(config.failure_limit)
        .retest_delay(config.retest_delay)
        .idempotent(ratings_api::GET_RATING_PATH)
        .events(events.clone());
    let service = config.ratings_service.as_str();
    tracing::info!(service, "{service}: calling ratings over gRPC");
    grpc::channel(service, ratings_discovery(config)?, settings)
}

/// Where `config` says the ratings instances are found: DNS (`--discovery dns:`/`srv:`),
/// the `--static-ratings` list, or the registry (trusting `--ca-file` besides the system's
/// roots); logged.
fn ratings_discovery(config: &Config) -> Result<Box<dyn Discovery>, discovery_client::Error> {
    let service = &config.ratings_service;
    Ok(match (&config.static_ratings, &config.discovery) {
        (_, RatingsDiscovery::Dns { name, port }) => {
            Box::new(dns_discovery(config, DnsDiscovery::a(name.clone(), *port)))
        }
        (_, RatingsDiscovery::Srv { name }) => {
            Box::new(dns_discovery(config, DnsDiscovery::srv(name.clone())))
        }
        (Some(urls), RatingsDiscovery::Registry) => {
            tracing::info!(service = %service, "{service}: using the static instances {}",
                urls.join(", "));
            Box::new(StaticDiscovery::new(urls.clone()))
        }
        (None, RatingsDiscovery::Registry) => {
            tracing::info!(service = %service, registry = %config.registry,
                "{service}: discovering instances through the registry at {}", config.registry);
            let tls = config
                .client_tls()
                .map_err(|e| discovery_client::Error::Config(e.to_string()))?;
            let mut discovery = RegistryDiscovery::new(config.registry.clone()).tls(tls);
            if let Some(token) = &config.registry_token {
                discovery = discovery.token(token.as_str());
            }
            Box::new(discovery)
        }
    })
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
    let mut state = AppState::new(Catalog::standard(), ratings, CartStore::new(max_carts));
    if config.ratings_protocol == RatingsProtocol::Grpc {
        let events = EventBus::new(GRPC_EVENTS);
        let channel = ratings_grpc_channel(&config, &events).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot set up the ratings gRPC channel: {e}"),
            )
        })?;
        state = state.with_grpc(channel, events);
    }
    let history = state.history.clone();
    let recording = tokio::spawn(
        history
            .clone()
            .run(state.status_source.clone(), state.shown.clone()),
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

/// `discovery` asking `--dns-server` if given (else /etc/resolv.conf's name servers), logged.
fn dns_discovery(config: &Config, discovery: DnsDiscovery) -> DnsDiscovery {
    let servers = config.dns_server.map_or_else(
        || "the name servers of /etc/resolv.conf".to_string(),
        |server| format!("the name server at {server}"),
    );
    tracing::info!(service = %config.ratings_service, discovery = %config.discovery,
        "{}: discovering instances in DNS ({}) through {servers}",
        config.ratings_service, config.discovery);
    match config.dns_server {
        Some(server) => discovery.name_servers([server]),
        None => discovery,
    }
}
