//! The `market` binary: parse configuration, set up logging, bind, serve (HTTP or HTTPS)
//! until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use market_app::Config;
use serving::Server;

#[tokio::main]
async fn main() -> ExitCode {
    // Exits with a usage message (status 2) on malformed or inconsistent flags or environment.
    let config = Config::parse_and_validate();
    // Read and checked before anything is bound, like the rest of the configuration.
    let tls = match config.server_tls() {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("market: {error}");
            return ExitCode::from(2);
        }
    };

    // RUST_LOG (default info), colour only when stdout is a terminal.
    // With the `otlp` feature it also exports spans; the guard flushes them on exit.
    let _logging = service_telemetry::logging::init("market");

    let listener = match serving::listen::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %config.listen, %error, "cannot listen");
            eprintln!("market: cannot listen on {}: {error}", config.listen);
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

    match market_app::run(server, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "market failed");
            eprintln!("market: {error}");
            ExitCode::FAILURE
        }
    }
}
