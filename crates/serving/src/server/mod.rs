//! [`Server`]: a bound listener, plain or TLS, and the loop that accepts its connections.
//!
//! Each accepted connection gets a task of its own ([`connection`]), so a slow TLS
//! handshake or a slow client never holds up the next accept. On shutdown the loop stops
//! accepting and closes the listener; every open connection is told to finish (HTTP/1.1:
//! close once the request in flight has been answered, at once if idle; HTTP/2: GOAWAY,
//! then the streams in flight finish; a TLS handshake under way is dropped), and
//! [`Server::serve`] returns once every connection has closed. It sets no time limit of
//! its own on that: a caller that wants one races `serve` with a timer.

mod accept;
mod connection;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::drain::Drain;
use crate::tls::ServerTls;

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
        }
    }

    /// Serves TLS with `tls` instead.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
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
    /// None: a failed accept is logged and retried (after 1 s if it is not about one
    /// connection, such as running out of file descriptors), and a failed handshake or
    /// connection ends only that connection.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let Self { listener, tls } = self;
        let http = auto::Builder::new(TokioExecutor::new());
        let drain = Drain::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = accept::next(&listener) => accepted,
                () = &mut shutdown => break,
            };
            tokio::spawn(connection::serve(
                stream,
                peer,
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
