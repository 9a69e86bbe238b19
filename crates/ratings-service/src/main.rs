//! `ratings-service`: parse the config, set up logging, bind, serve until Ctrl-C/SIGTERM.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ratings_service::{Config, run};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(error) = config.validate() {
        Config::command()
            .error(clap::error::ErrorKind::ValueValidation, error)
            .exit();
    }

    // RUST_LOG (default info), colour only when stdout is a terminal.
    // With the `otlp` feature it also exports spans; the guard flushes them on exit.
    let _logging = service_telemetry::logging::init("ratings");

    let addr = config.listen_addr();
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%addr, "cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => tracing::info!("listening on http://{bound}"),
        Err(error) => {
            tracing::error!("cannot read the bound address: {error}");
            return ExitCode::FAILURE;
        }
    }

    match run(listener, config, service_telemetry::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("ratings-service failed: {error}");
            ExitCode::FAILURE
        }
    }
}
