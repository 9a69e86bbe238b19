//! Serving: register, answer requests until shutdown, deregister, drain.

use std::future::Future;
use std::io;
use std::time::Duration;

use discovery_client::registration::Registration;
use serving::Server;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::routes::app;
use crate::state::AppState;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` resolves.
///
/// The caller binds and chooses plain HTTP (a `TcpListener`) or TLS (a [`serving::Server`]
/// with [`Config::server_tls`]'s settings, as the binary does); `--listen` and the TLS flags
/// are not read here.
///
/// Registers in the background (unless `--no-register`) under the address actually bound,
/// `https://` when serving TLS, so `--listen 127.0.0.1:0` works; the service answers even
/// while the registry is down.
/// When `shutdown` resolves it deregisters first (so clients stop picking this instance),
/// then stops accepting and gives in-flight requests up to 5 s to finish.
///
/// Errors: an invalid `config` (including a `--ca-file` that cannot be read) or a
/// non-loopback listener without `--allow-remote` (`InvalidInput`), bad embedded ratings data (`InvalidData`), or a failure of the
/// listener.
pub async fn run(
    listener: impl Into<Server>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config.validate().map_err(invalid_input)?;
    let server = listener.into();
    let bound = server.local_addr()?;
    config.check_bind_address(bound).map_err(invalid_input)?;
    let state = AppState::from_config(&config)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let instance = config.instance;
    warn_about_risky_settings(&config, bound);

    let registration = match config.no_register {
        true => None,
        false => {
            let address = config.advertise_url(&server.url()?);
            Some(Registration::start(
                config.registration(address).map_err(invalid_input)?,
            ))
        }
    };

    let (drain_started, drain_begun) = oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        tracing::info!(instance, "instance {instance} shutting down");
        if let Some(registration) = registration {
            if let Err(error) = registration.deregister().await {
                tracing::warn!(instance, %error, "instance {instance} could not deregister");
            }
        }
        let _ = drain_started.send(());
    };
    let server = server.serve(app(state), graceful);
    let drain_limit = async {
        match drain_begun.await {
            Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
            // The server ended on its own; it wins the race below.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = drain_limit => {
            tracing::warn!(
                instance,
                "instance {instance} stopped with requests still in flight after {DRAIN_TIMEOUT:?}"
            );
            Ok(())
        }
    }
}

fn invalid_input(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}

/// Warns about settings that work but are probably not what was meant.
fn warn_about_risky_settings(config: &Config, bound: std::net::SocketAddr) {
    let instance = config.instance;
    if config.admin_token.is_some() && !config.admin {
        tracing::warn!(instance, "--admin-token has no effect without --admin");
    }
    if config.admin && config.admin_token.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(instance, %bound, "admin endpoint is reachable remotely without a token");
    }
    if bound.ip().is_unspecified() && config.advertise.is_none() && !config.no_register {
        tracing::warn!(
            instance,
            %bound,
            "advertising an unspecified address; pass --advertise with a reachable URL"
        );
    }
}
