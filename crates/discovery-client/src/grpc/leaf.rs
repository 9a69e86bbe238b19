//! [`InstanceChannel`]: the leaf of a [`GrpcChannel`](super::GrpcChannel)'s stack, one
//! tonic `Channel` (one HTTP/2 connection) per instance.
//!
//! An `https://` instance is reached through hyper-rustls (ALPN `h2`, the crate's own
//! rustls settings) as tonic's connector, so tonic's TLS features are not needed. tonic is
//! given the instance as `http://` with the `https://` origin, because with any of its TLS
//! features turned on (by another crate in the build) it refuses an `https://` endpoint
//! that has no tonic TLS settings.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use tonic::body::Body;
use tonic::transport::channel::ResponseFuture;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use crate::transport::tls::ServerNames;
use crate::{Error, Instance, TLS_SERVER_NAME};

/// Sends calls to one instance over one HTTP/2 connection, made when the first call needs
/// it and remade after it breaks (tonic's lazy `Channel`). An address tonic cannot parse
/// fails every call as a transport failure, so that instance's breaker opens and the
/// others serve.
#[derive(Debug, Clone)]
pub(crate) struct InstanceChannel {
    /// The connection, or why there is none.
    channel: Result<Channel, String>,
    /// The instance's address, named in errors.
    address: Arc<str>,
}

impl InstanceChannel {
    /// A lazily connected channel to `instance`, giving up a connection attempt after
    /// `connect_timeout`; an `https://` instance is checked with `tls`.
    pub(crate) fn new(
        instance: &Instance,
        connect_timeout: Duration,
        tls: &rustls::ClientConfig,
    ) -> Self {
        let channel = if instance.address.starts_with("https://") {
            over_tls(instance, connect_timeout, tls)
        } else {
            Endpoint::from_shared(instance.address.clone())
                .map(|endpoint| endpoint.connect_timeout(connect_timeout).connect_lazy())
                .map_err(|e| format!("not a gRPC address: {e}"))
        };
        Self {
            channel,
            address: Arc::from(instance.address.as_str()),
        }
    }
}

/// A lazy channel to an `https://` instance: TCP, then TLS with ALPN `h2` by hyper-rustls.
fn over_tls(
    instance: &Instance,
    connect_timeout: Duration,
    tls: &rustls::ClientConfig,
) -> Result<Channel, String> {
    let target: Uri = instance
        .address
        .parse()
        .map_err(|e| format!("not a gRPC address: {e}"))?;
    let authority = target
        .authority()
        .ok_or_else(|| "not a gRPC address: no host".to_owned())?
        .clone();
    let names = ServerNames::default();
    if let Some(name) = instance.metadata.get(TLS_SERVER_NAME) {
        names
            .insert(&instance.address, name)
            .map_err(|e| e.to_string())?;
    }
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    // No ALPN in `tls`: hyper-rustls offers `h2`, the only protocol enabled.
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .with_server_name_resolver(move |uri: &Uri| names.resolve(uri))
        .enable_http2()
        .wrap_connector(tcp);
    // Whatever URI tonic asks for, the connection is to the instance, over TLS.
    let connector = tower::service_fn(move |_: Uri| {
        let mut https = https.clone();
        https.call(target.clone())
    });
    let origin = Uri::builder()
        .scheme("https")
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("not a gRPC address: {e}"))?;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| format!("not a gRPC address: {e}"))?
        .origin(origin)
        .connect_timeout(connect_timeout);
    Ok(endpoint.connect_with_connector_lazy(connector))
}

impl Service<http::Request<Body>> for InstanceChannel {
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.channel {
            Ok(channel) => channel
                .poll_ready(cx)
                .map_err(|e| Error::from_transport(e.into(), &self.address)),
            Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = match &mut self.channel {
            Ok(channel) => State::Sent(channel.call(request)),
            Err(message) => State::Failed(Some(Error::Http {
                address: self.address.to_string(),
                message: message.clone(),
            })),
        };
        Answer {
            state,
            address: Arc::clone(&self.address),
        }
    }
}

/// The head of one call's answer from an instance, or the transport's failure.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The call under way, or why it was not sent.
    state: State,
    /// The instance's address, named in errors.
    address: Arc<str>,
}

/// Where an [`Answer`] stands.
#[derive(Debug)]
enum State {
    /// Sent on the instance's connection.
    Sent(ResponseFuture),
    /// Not sent: the error, until it is taken.
    Failed(Option<Error>),
}

impl Future for Answer {
    type Output = Result<http::Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.state {
            State::Sent(sent) => Pin::new(sent)
                .poll(cx)
                .map_err(|e| Error::from_transport(Box::new(e), &this.address)),
            // Polled again after it failed: it has nothing more to give.
            State::Failed(error) => error.take().map_or(Poll::Pending, |e| Poll::Ready(Err(e))),
        }
    }
}
