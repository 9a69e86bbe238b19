//! [`InstanceChannel`]: the leaf of a [`GrpcChannel`](super::GrpcChannel)'s stack, one
//! HTTP/2 connection per instance, which the instance's calls share.
//!
//! The connection is hyper's HTTP/2 client connection (`hyper::client::conn::http2`). A
//! call is handed straight to the connection's task, with no queue or task of its own in
//! between: tonic's `Channel` puts one in front of each connection, which the channel's
//! balancer does without. Like tonic's lazy channel, the leaf is ready at once: the first
//! call starts the connection, and the calls made while it is being made wait for it (the
//! per-attempt timeout above bounds the wait), so that a new instance takes its turn in
//! the rotation like the others. A connection that closed or broke is made again by the
//! next call; a failed attempt is that call's transport failure.
//!
//! Plain `http://` is HTTP/2 with prior knowledge; `https://` is TLS by hyper-rustls with
//! ALPN `h2`, checked with the crate's rustls settings, so no tonic TLS feature is needed.
//! Each request's URI gets the instance's scheme and authority (the call's `:scheme` and
//! `:authority`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tonic::body::Body;
use tower::{BoxError, Service};

use crate::transport::{ServerNames, https_connector};
use crate::{Error, Instance, TLS_SERVER_NAME};

/// Sends calls to one instance over one HTTP/2 connection (see the [module docs](self)).
/// An address that is not a gRPC one fails every call as a transport failure, so that
/// instance's breaker opens and the others serve.
pub(crate) struct InstanceChannel {
    /// The connection, or why there can be none.
    connection: Result<Connection, String>,
    /// The instance's address, named in errors.
    address: Arc<str>,
}

/// The instance's connection, and where its calls go.
struct Connection {
    /// Makes the connection.
    connector: Connector,
    /// Where the connection stands.
    state: State,
    /// The instance's scheme...
    scheme: Scheme,
    /// ...and authority, given to every call.
    authority: Authority,
}

/// Where an instance's connection stands.
enum State {
    /// None yet, or the last one closed or failed: the next call makes one.
    Idle,
    /// Being made; the calls made meanwhile wait for it.
    Connecting(Connecting),
    /// Made.
    Connected(SendRequest<Body>),
}

/// A connection being made, which every call waiting for it shares.
type Connecting = Shared<BoxFuture<'static, Result<SendRequest<Body>, ConnectError>>>;

impl InstanceChannel {
    /// A lazily connected channel to `instance`, giving up a connection attempt (TCP, TLS
    /// and HTTP/2 handshakes) after `connect_timeout`; an `https://` instance is checked
    /// with `tls`.
    pub(crate) fn new(
        instance: &Instance,
        connect_timeout: Duration,
        tls: &rustls::ClientConfig,
    ) -> Self {
        Self {
            connection: Connection::new(instance, connect_timeout, tls)
                .map_err(|e| format!("not a gRPC address: {e}")),
            address: Arc::from(instance.address.as_str()),
        }
    }
}

impl Connection {
    fn new(
        instance: &Instance,
        connect_timeout: Duration,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, String> {
        let target: Uri = instance.address.parse().map_err(|e| format!("{e}"))?;
        let scheme = match target.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => scheme.clone(),
            _ => return Err("the scheme must be http:// or https://".to_owned()),
        };
        let authority = target.authority().ok_or("no host")?.clone();
        let names = ServerNames::default();
        if let Some(name) = instance.metadata.get(TLS_SERVER_NAME) {
            names
                .insert(&instance.address, name)
                .map_err(|e| e.to_string())?;
        }
        // No ALPN in `tls`: hyper-rustls offers `h2` only. The connect timeout below
        // bounds the TLS and HTTP/2 handshakes too.
        let https = https_connector(tls.clone(), names, None, true);
        Ok(Self {
            connector: Connector {
                https,
                target,
                timeout: connect_timeout,
            },
            state: State::Idle,
            scheme,
            authority,
        })
    }

    /// Ready once the connection, if any, can take a call; a closed or broken one is
    /// dropped and the next call makes another.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Idle => return Poll::Ready(()),
                State::Connecting(connecting) => match connecting.peek() {
                    Some(Ok(sender)) => self.state = State::Connected(sender.clone()),
                    Some(Err(_)) => self.state = State::Idle,
                    // Calls made now wait for it.
                    None => return Poll::Ready(()),
                },
                State::Connected(sender) => match sender.poll_ready(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(()),
                    Poll::Ready(Err(_)) => self.state = State::Idle,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }

    /// Sends `request` on the connection, made first if there is none.
    fn call(&mut self, mut request: http::Request<Body>) -> Sent {
        if let Err(e) = self.address(&mut request) {
            return Sent::Refused(Some(Box::new(e)));
        }
        let connecting = match &mut self.state {
            State::Connected(sender) => {
                return Sent::OnConnection(Box::pin(sender.send_request(request)));
            }
            State::Connecting(connecting) => connecting.clone(),
            State::Idle => {
                let connecting = self.connector.connect();
                self.state = State::Connecting(connecting.clone());
                connecting
            }
        };
        Sent::AfterConnecting(Box::pin(connecting.then(|connected| async move {
            match connected {
                Ok(mut sender) => Ok(sender.send_request(request).await?),
                Err(e) => Err(Box::new(e) as BoxError),
            }
        })))
    }

    /// `request`'s URI with the instance's scheme and authority.
    fn address(&self, request: &mut http::Request<Body>) -> Result<(), http::Error> {
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(uri)?;
        Ok(())
    }
}

/// Makes the HTTP/2 connection to an instance: TCP, TLS for `https://`, the HTTP/2
/// handshake, within the connect timeout; the connection's task is spawned.
struct Connector {
    https: HttpsConnector<HttpConnector>,
    target: Uri,
    timeout: Duration,
}

impl Connector {
    fn connect(&mut self) -> Connecting {
        let connecting = self.https.call(self.target.clone());
        let timeout = self.timeout;
        let connect = async move {
            let io = connecting.await?;
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await?;
            // Runs until the connection closes: the last sender dropped, or broken.
            tokio::spawn(connection);
            Ok::<_, BoxError>(sender)
        };
        async move {
            match tokio::time::timeout(timeout, connect).await {
                Ok(connected) => connected.map_err(|e| ConnectError(Arc::from(e))),
                Err(_) => {
                    let message = format!("no connection within {timeout:?}");
                    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, message);
                    Err(ConnectError(Arc::new(error)))
                }
            }
        }
        .boxed()
        .shared()
    }
}

/// Why a connection could not be made, given to every call that waited for it.
#[derive(Debug, Clone)]
struct ConnectError(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Service<http::Request<Body>> for InstanceChannel {
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.connection {
            Ok(connection) => connection.poll_ready(cx).map(Ok),
            Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let sent = match &mut self.connection {
            Ok(connection) => connection.call(request),
            Err(message) => Sent::Refused(Some(Box::new(Error::Http {
                address: self.address.to_string(),
                message: message.clone(),
            }))),
        };
        Answer {
            sent,
            address: Arc::clone(&self.address),
        }
    }
}

impl std::fmt::Debug for InstanceChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceChannel")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The head of one call's answer from an instance, or the transport's failure.
pub(crate) struct Answer {
    /// The call under way, or why it was not sent.
    sent: Sent,
    /// The instance's address, named in errors.
    address: Arc<str>,
}

/// Where one call stands on its instance's connection.
enum Sent {
    /// Sent on the connection.
    OnConnection(BoxFuture<'static, Result<http::Response<Incoming>, hyper::Error>>),
    /// Waiting for the connection, then sent on it.
    AfterConnecting(BoxFuture<'static, Result<http::Response<Incoming>, BoxError>>),
    /// Not sent: the error, until it is taken.
    Refused(Option<BoxError>),
}

impl Future for Answer {
    type Output = Result<http::Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answer = match &mut this.sent {
            Sent::OnConnection(sent) => ready!(sent.as_mut().poll(cx)).map_err(BoxError::from),
            Sent::AfterConnecting(sent) => ready!(sent.as_mut().poll(cx)),
            // Polled again after it failed: it has nothing more to give.
            Sent::Refused(error) => match error.take() {
                Some(error) => Err(error),
                None => return Poll::Pending,
            },
        };
        Poll::Ready(match answer {
            Ok(response) => Ok(response.map(Body::new)),
            Err(e) => Err(Error::from_transport(e, &this.address)),
        })
    }
}
