//! [`InstanceChannel`]: the leaf of a [`GrpcChannel`](super::GrpcChannel)'s stack, one
//! tonic `Channel` (one HTTP/2 connection) per instance.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use crate::{Error, Instance};

/// Sends calls to one instance over one HTTP/2 connection, made when the first call needs
/// it and remade after it breaks (tonic's lazy `Channel`). An address tonic cannot parse
/// fails every call as a transport failure, so that instance's breaker opens and the
/// others serve.
#[derive(Debug, Clone)]
pub(crate) struct InstanceChannel {
    /// The connection, or why there is none.
    channel: Result<Channel, String>,
    /// The instance's address, named in errors.
    address: String,
}

impl InstanceChannel {
    /// A lazily connected channel to `instance`, giving up a connection attempt after
    /// `connect_timeout`.
    pub(crate) fn new(instance: &Instance, connect_timeout: Duration) -> Self {
        let channel = Endpoint::from_shared(instance.address.clone())
            .map(|endpoint| endpoint.connect_timeout(connect_timeout).connect_lazy())
            .map_err(|e| format!("not a gRPC address: {e}"));
        Self {
            channel,
            address: instance.address.clone(),
        }
    }
}

impl Service<http::Request<Body>> for InstanceChannel {
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Self::Response, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.channel {
            Ok(channel) => channel
                .poll_ready(cx)
                .map_err(|e| Error::from_transport(e.into(), &self.address)),
            Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let address = self.address.clone();
        match &mut self.channel {
            Ok(channel) => {
                let call = channel.call(request);
                async move {
                    call.await
                        .map_err(|e| Error::from_transport(e.into(), &address))
                }
                .boxed()
            }
            Err(message) => {
                let error = Error::Http {
                    address,
                    message: message.clone(),
                };
                futures::future::ready(Err(error)).boxed()
            }
        }
    }
}
