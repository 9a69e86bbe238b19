//! One connection, from the TLS handshake (if any) to its close.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
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

use super::activity::{Activity, Counted, Expiry, Watched};
use super::slots::Slot;
use crate::drain::Watch;
use crate::tls::ServerTls;

/// How long an idle connection told to close gracefully (HTTP/2: GOAWAY) has to do so
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one connection is served with.
#[derive(Debug)]
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    /// Its time limits and requests in flight (see [`Activity`]).
    pub(super) activity: Arc<Activity>,
    /// Its place under the connection cap, freed when this connection ends.
    pub(super) slot: Slot,
}

/// Serves one accepted connection until it closes, runs out of time (see [`Activity`]) or,
/// once `watch` signals, until what is in flight on it has finished. The TLS handshake must
/// finish within the header-read timeout; a failed one is logged at debug and ends only this
/// connection.
pub(super) async fn serve(
    accepted: Accepted,
    tls: Option<ServerTls>,
    http: auto::Builder<TokioExecutor>,
    router: Router,
    mut watch: Watch,
) {
    let Accepted {
        stream,
        peer,
        activity,
        slot: _slot,
    } = accepted;
    // Responses go out as soon as they are written: with TLS records and HTTP/2 frames
    // written separately, Nagle's algorithm would hold some back for the peer's delayed ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let Some(tls) = tls else {
        let io = Watched::new(stream, Arc::clone(&activity));
        return serve_http(io, peer, &http, router, &activity, &mut watch).await;
    };
    let stream = tokio::select! {
        finished = tls.acceptor().accept(stream) => match finished {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "TLS handshake with {peer} failed: {error}");
                return;
            }
        },
        why = activity.expired() => {
            tracing::debug!(%peer, ?why, "TLS handshake with {peer} not done in time");
            return;
        }
        // Nothing is in flight before the handshake is done.
        () = watch.signalled() => return,
    };
    let io = Watched::new(stream, Arc::clone(&activity));
    serve_http(io, peer, &http, router, &activity, &mut watch).await;
}

/// HTTP/1.1 or HTTP/2 (as the client opens) on `io`, until it closes or its time runs out;
/// once `watch` signals, a graceful close.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    http: &auto::Builder<TokioExecutor>,
    router: Router,
    activity: &Arc<Activity>,
    watch: &mut Watch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = router.map_request(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let service = TowerToHyperService::new(Counted::new(router, Arc::clone(activity)));
    let mut connection = pin!(http.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut expired = pin!(activity.expired());
    // Shutdown has begun: the connection was told to finish.
    let mut signalled = false;
    // It ran out of time while idle and was told to close: dropped at `dropped_at`.
    let mut expiring = false;
    let mut dropped_at = pin!(tokio::time::sleep(CLOSE_GRACE));
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
                if !expiring {
                    connection.as_mut().graceful_shutdown();
                }
            }
            why = expired.as_mut(), if !expiring => {
                tracing::debug!(%peer, ?why, "closing the connection with {peer}: {why:?}");
                if why != Expiry::Idle {
                    // Nothing in flight, and a request half sent or none at all: just close.
                    return;
                }
                expiring = true;
                if !signalled {
                    connection.as_mut().graceful_shutdown();
                }
                dropped_at
                    .as_mut()
                    .reset(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            () = dropped_at.as_mut(), if expiring => return,
        }
    }
}
