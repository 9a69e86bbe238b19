//! Accepting the next connection, riding out accept errors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to wait after an accept error that is not about one connection (such as
/// running out of file descriptors), so that the loop does not spin while the process has
/// none to give.
const AFTER_ACCEPT_ERROR: Duration = Duration::from_secs(1);

/// The next connection. An error about one connection (reset or aborted before it was
/// accepted) is skipped; any other is logged and retried after [`AFTER_ACCEPT_ERROR`].
pub(super) async fn next(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) if is_about_one_connection(&error) => {}
            Err(error) => {
                tracing::error!(%error, "accept error: {error}");
                tokio::time::sleep(AFTER_ACCEPT_ERROR).await;
            }
        }
    }
}

fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
