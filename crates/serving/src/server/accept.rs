//! Accepting the next connection, riding out accept errors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::burst_log::BurstLog;

/// The first pause after an accept error that is not about one connection (such as
/// running out of file descriptors); it doubles on each error in a row, up to
/// [`LONGEST_PAUSE`], so the loop neither spins nor stays deaf long once descriptors free up.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// The longest pause between accepts after errors in a row.
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// The accept errors of one listener: their pause and their log.
#[derive(Debug)]
pub(super) struct Acceptor {
    /// The pause after the next error.
    pause: Duration,
    /// One `accept error` line per burst of them.
    log: BurstLog,
}

impl Acceptor {
    /// No error yet; at most one log line per `log_window`.
    pub(super) fn new(log_window: Duration) -> Self {
        Self {
            pause: FIRST_PAUSE,
            log: BurstLog::new(log_window),
        }
    }

    /// The next connection. An error about one connection (reset or aborted before it was
    /// accepted) is skipped; any other is logged (once per burst, with a count) and
    /// retried after a pause that grows while errors continue.
    pub(super) async fn next(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => {
                    self.pause = FIRST_PAUSE;
                    return accepted;
                }
                Err(error) if is_about_one_connection(&error) => {}
                Err(error) => {
                    if let Some(count) = self.log.event(Instant::now()) {
                        tracing::error!(
                            %error,
                            count,
                            "accept error: {error} ({count} since the last such line; retrying)"
                        );
                    }
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
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
