//! How the services (registry, ratings, market) accept connections and serve their axum
//! routers: over plain TCP or TLS, HTTP/1.1 or HTTP/2, until a graceful shutdown.
//!
//! - [`server`]: [`Server`], a bound listener (plain, or TLS with [`Server::tls`]) and
//!   [`Server::serve`], the accept loop: each connection in a task of its own, served by
//!   hyper's automatic HTTP/1.1-or-HTTP/2 connection, the peer's address given to handlers
//!   as axum's [`ConnectInfo`](axum::extract::ConnectInfo); on shutdown it stops accepting,
//!   lets every request in flight finish, and returns once every connection has closed.
//!   A header-read timeout, an idle timeout and a cap on open connections close clients
//!   that hold a connection without using it (slowloris, idle), so they cannot exhaust the
//!   process's file descriptors.
//! - [`flags`]: parsing the connection-limit flags the three binaries share.
//! - [`listen`]: [`listen::bind`], a listener with a backlog for bursts of connections.
//! - [`tls`]: [`ServerTls`], the certificate chain and key a TLS server presents
//!   (`--tls-cert` / `--tls-key`), with errors that name the file at fault ([`TlsError`]).
//!
//! Which protocol a connection speaks: over TLS, what ALPN agreed (`h2` or `http/1.1`);
//! over plain TCP, HTTP/1.1, or HTTP/2 when the client opens with HTTP/2's preface (h2c
//! with prior knowledge). A TLS handshake that fails is logged at debug and closes only
//! that connection.
//!
//! The caller binds, so `main` binds the configured address and tests bind port 0:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//!
//! let tls = serving::ServerTls::from_pem_files(Path::new("server.pem"), Path::new("server.key"))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = serving::Server::new(listener).tls(tls);
//! println!("listening on {}", server.url()?);
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
//! server
//!     .serve(app, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod burst_log;
mod drain;
pub mod flags;
pub mod listen;
pub mod server;
pub mod tls;

pub use server::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Server,
};
pub use tls::{ServerTls, TlsError};
