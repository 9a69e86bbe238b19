//! The `registry` binary: parse configuration, set up logging, bind, serve until Ctrl-C
//! or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use registry::Config;
use serving::Server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Exits with a usage message (status 2) on malformed flags or environment.
    let config = Config::parse();
    if let Err(error) = config.validate() {
        eprintln!("registry: {error}");
        return ExitCode::from(2);
    }
    // Read and checked before anything is bound, like the rest of the configuration.
    let tls = match config.server_tls() {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("registry: {error}");
            return ExitCode::from(2);
        }
    };

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already installed, which nothing here does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout)
        .try_init();

    // Opened before binding, so a wrong --etcd-endpoints fails before anything listens.
    let store = match registry::store::open(&config).await {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "cannot open the store");
            eprintln!("registry: {error}");
            return ExitCode::FAILURE;
        }
    };

    let listener = match serving::listen::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %config.listen, %error, "cannot listen");
            eprintln!("registry: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let server = match tls {
        Some(tls) => Server::new(listener).tls(tls),
        None => Server::new(listener),
    };
    let server = config.limit_connections(server);
    // Installed before `listening on`: a SIGTERM sent on reading that line shuts down cleanly.
    let shutdown = service_telemetry::shutdown::signal();
    match server.url() {
        Ok(url) => tracing::info!("listening on {url}"),
        Err(error) => tracing::warn!(%error, "listening, but the local address is unknown"),
    }

    match registry::run_with_store(server, config, store, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
