//! [`Server`]: a bound listener, plain or TLS, and the loop that accepts its connections.
//!
//! Each accepted connection gets a task of its own ([`connection`]), so a slow TLS
//! handshake or a slow client never holds up the next accept.
//!
//! Clients that hold a connection without using it are closed, so they cannot exhaust the
//! process's file descriptors ([`activity`] has the exact rules):
//!
//! - **header-read timeout** ([`Server::header_read_timeout`], default
//!   [`DEFAULT_HEADER_READ_TIMEOUT`]): the TLS handshake and the first request's headers,
//!   and on a keep-alive connection each later request's headers from its first byte, must
//!   arrive within it (slowloris, or a client that connects and sends nothing);
//! - **idle timeout** ([`Server::idle_timeout`], default [`DEFAULT_IDLE_TIMEOUT`]): a
//!   keep-alive connection (HTTP/1.1, or HTTP/2 with no stream open) with no request begun
//!   for this long is closed (HTTP/2 with a GOAWAY);
//! - **connection cap** ([`Server::max_connections`], default [`DEFAULT_MAX_CONNECTIONS`]):
//!   at the cap, a new connection takes the place of the longest-idle one; if every open
//!   connection has a request in flight, it waits up to 250 ms for one to finish and is
//!   closed if none does ([`slots`]). Either way it never hangs.
//!
//! A request in flight is never cut by these limits (a registry blocking query may wait
//! a minute). Closing at the cap and accept errors (such as `Too many open files`) are
//! logged once per burst with a count, not once per connection. On shutdown the loop stops
//! accepting and closes the listener; every open connection is told to finish (HTTP/1.1:
//! close once the request in flight has been answered, at once if idle; HTTP/2: GOAWAY,
//! then the streams in flight finish; a TLS handshake under way is dropped), and
//! [`Server::serve`] returns once every connection has closed. It sets no time limit of
//! its own on that: a caller that wants one races `serve` with a timer.

mod accept;
mod activity;
mod connection;
mod slots;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::time::Instant;

use self::accept::Acceptor;
use self::activity::{Activity, Timeouts};
use self::connection::Accepted;
use self::slots::{Admission, Slots};
use crate::burst_log::BurstLog;
use crate::drain::Drain;
use crate::tls::ServerTls;

/// Default of [`Server::header_read_timeout`]: long enough for a slow mobile link to send a
/// request's headers, short enough that a slowloris client holds its descriptor briefly.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`Server::idle_timeout`]: nginx's keep-alive timeout, so clients that pool
/// connections for 30 to 90 s (this workspace's client: 30 s and 90 s) reuse them.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Default of [`Server::max_connections`]: three quarters of the common soft limit of 1024
/// file descriptors, leaving room for the process's own outgoing connections (registry,
/// instances, etcd), its files, and the one connection being admitted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 768;

/// The shortest time between two log lines about the same kind of trouble (closing at the
/// connection cap, accept errors): a burst gives one line with a count.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// A bound listener and how to speak on it: plain TCP by default, TLS with
/// [`tls`](Self::tls).
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = serving::Server::new(listener);
/// println!("listening on {}", server.url()?);
/// server
///     .serve(axum::Router::new(), async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    /// Where connections arrive; bound by the caller.
    listener: TcpListener,
    /// With it, every connection must complete a TLS handshake first.
    tls: Option<ServerTls>,
    /// How long a connection may take over its headers, or sit idle.
    timeouts: Timeouts,
    /// Most connections open at once.
    max_connections: usize,
}

impl From<TcpListener> for Server {
    /// As [`Server::new`]: plain TCP.
    fn from(listener: TcpListener) -> Self {
        Self::new(listener)
    }
}

impl Server {
    /// Serves plain TCP on `listener`.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            tls: None,
            timeouts: Timeouts {
                header_read: DEFAULT_HEADER_READ_TIMEOUT,
                idle: DEFAULT_IDLE_TIMEOUT,
            },
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Serves TLS with `tls` instead.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long a new connection has to finish its TLS handshake and send its first
    /// request's headers, and a keep-alive connection to send the rest of a request's headers
    /// once its first byte has arrived (default [`DEFAULT_HEADER_READ_TIMEOUT`]). A
    /// connection that has not by then is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.header_read = timeout;
        self
    }

    /// How long a connection with no request in flight, after its first, may wait for the
    /// next one before it is closed (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.idle = timeout;
        self
    }

    /// Most connections open at once (default [`DEFAULT_MAX_CONNECTIONS`]; at least 1). At
    /// the cap a new connection takes the place of the longest-idle one, or, when every
    /// connection has a request in flight, waits up to 250 ms for one to finish and is
    /// closed if none does.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The base URL clients reach this server at: `http://ADDR` or `https://ADDR` (an IPv6
    /// address in brackets).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn url(&self) -> io::Result<String> {
        let scheme = if self.is_tls() { "https" } else { "http" };
        Ok(format!("{scheme}://{}", self.local_addr()?))
    }

    /// Serves `router` until `shutdown` completes, then shuts down gracefully (see the
    /// [module docs](self)) and returns once every connection has closed.
    ///
    /// Handlers can extract the peer's address as
    /// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo).
    ///
    /// # Errors
    ///
    /// None: a failed accept is logged (once per burst) and retried (after a short pause
    /// if it is not about one connection, such as running out of file descriptors), and a
    /// failed handshake or connection ends only that connection.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let Self {
            listener,
            tls,
            timeouts,
            max_connections,
        } = self;
        let http = auto::Builder::new(TokioExecutor::new());
        let drain = Drain::new();
        let slots = Slots::new(max_connections);
        let mut acceptor = Acceptor::new(LOG_WINDOW);
        let mut evictions = BurstLog::new(LOG_WINDOW);
        let mut refusals = BurstLog::new(LOG_WINDOW);
        let mut shutdown = pin!(shutdown);
        loop {
            let admitted = async {
                let (stream, peer) = acceptor.next(&listener).await;
                let activity = Activity::new(timeouts);
                (stream, peer, slots.admit(&activity).await, activity)
            };
            let (stream, peer, admission, activity) = tokio::select! {
                admitted = admitted => admitted,
                () = &mut shutdown => break,
            };
            let slot = match admission {
                Admission::Free(slot) => slot,
                Admission::Evicted(slot) => {
                    if let Some(count) = evictions.event(Instant::now()) {
                        tracing::warn!(
                            max_connections,
                            count,
                            "at the connection cap ({max_connections} open): closed the \
                             longest-idle connection to admit a new one ({count} since the last \
                             such line)"
                        );
                    }
                    slot
                }
                Admission::Refused => {
                    if let Some(count) = refusals.event(Instant::now()) {
                        tracing::warn!(
                            max_connections,
                            count,
                            "at the connection cap ({max_connections} open, each with a \
                             request in flight): refused a new connection ({count} since the \
                             last such line)"
                        );
                    }
                    drop(stream);
                    continue;
                }
            };
            let accepted = Accepted {
                stream,
                peer,
                activity,
                slot,
            };
            tokio::spawn(connection::serve(
                accepted,
                tls.clone(),
                http.clone(),
                router.clone(),
                drain.watch(),
            ));
        }
        drop(listener);
        drain.finish().await;
        Ok(())
    }
}
