//! One connection, from the TLS handshake (if any) to its close.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::drain::Watch;
use crate::tls::ServerTls;

/// Longest a client may take to complete its TLS handshake. A connection that has not by
/// then (a client that connects and sends nothing, or too little) is closed, so it does not
/// hold a task and a file descriptor for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection until it closes or, once `watch` signals, until what is
/// in flight on it has finished. A failed TLS handshake is logged at debug and ends only
/// this connection.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<ServerTls>,
    http: auto::Builder<TokioExecutor>,
    router: Router,
    mut watch: Watch,
) {
    // Responses go out as soon as they are written: with TLS records and HTTP/2 frames
    // written separately, Nagle's algorithm would hold some back for the peer's delayed ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let Some(tls) = tls else {
        return serve_http(TokioIo::new(stream), peer, &http, router, &mut watch).await;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        finished = handshake => match finished {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake with {peer} failed: {error}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake with {peer} not done after {HANDSHAKE_TIMEOUT:?}");
                return;
            }
        },
        // Nothing is in flight before the handshake is done.
        () = watch.signalled() => return,
    };
    serve_http(TokioIo::new(stream), peer, &http, router, &mut watch).await;
}

/// HTTP/1.1 or HTTP/2 (as the client opens) on `io`, until it closes; once `watch`
/// signals, a graceful close.
async fn serve_http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    http: &auto::Builder<TokioExecutor>,
    router: Router,
    watch: &mut Watch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router.map_request(
        move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ));
    let mut connection = pin!(http.serve_connection_with_upgrades(io, service));
    let mut signalled = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::trace!(%peer, %error, "connection with {peer} failed: {error}");
                }
                return;
            }
            () = watch.signalled(), if !signalled => {
                signalled = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
