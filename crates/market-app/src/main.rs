//! The `market` binary: parse configuration, set up logging, bind, serve until Ctrl-C or
//! SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use market_app::Config;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Exits with a usage message (status 2) on malformed or inconsistent flags or environment.
    let config = Config::parse_and_validate();

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already installed, which nothing here does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout)
        .try_init();

    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %config.listen, %error, "cannot listen");
            eprintln!("market: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on http://{addr}"),
        Err(error) => tracing::warn!(%error, "listening, but the local address is unknown"),
    }

    match market_app::run(listener, config, market_app::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "market failed");
            eprintln!("market: {error}");
            ExitCode::FAILURE
        }
    }
}
