//! `ratings-service`: parse the config, set up logging, bind, serve (HTTP or HTTPS) until
//! Ctrl-C/SIGTERM.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ratings_service::{Config, run};
use serving::Server;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // Read and checked before anything is bound, like the rest of the configuration.
    let tls = match config.validate().and_then(|()| config.server_tls()) {
        Ok(tls) => tls,
        Err(error) => Config::command()
            .error(clap::error::ErrorKind::ValueValidation, error)
            .exit(),
    };

    // RUST_LOG (default info), colour only when stdout is a terminal.
    // With the `otlp` feature it also exports spans; the guard flushes them on exit.
    let _logging = service_telemetry::logging::init("ratings");

    let addr = config.listen_addr();
    let listener = match serving::listen::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%addr, "cannot listen on {addr}: {error}");
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
        Err(error) => {
            tracing::error!("cannot read the bound address: {error}");
            return ExitCode::FAILURE;
        }
    }

    match run(server, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("ratings-service failed: {error}");
            ExitCode::FAILURE
        }
    }
}
