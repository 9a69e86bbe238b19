//! How a request reaches an instance: the transport under every attempt.
//!
//! A **transport** is any cloneable tower [`Service`] that takes an `http::Request<Bytes>`
//! whose URI is absolute (the instance's address joined with the call's path and query,
//! such as `http://127.0.0.1:8001/ratings/widget`) and answers an `http::Response<B>` for
//! any [`http_body::Body`] `B`. The client reads the whole body within the attempt's
//! timeout, so that the classifier and the decoder judge whole answers. Give one to
//! [`ServiceClientBuilder::transport`](crate::ServiceClientBuilder::transport); the default
//! is [`HttpClient`], hyper's pooled client: `http://` and `https://` (rustls, with the
//! roots and client certificate of a [`TlsConfig`]), HTTP/2 by ALPN or prior knowledge.
//!
//! A transport's errors are the instance's failures ([`Error::Http`](crate::Error::Http),
//! naming the instance): the breaker counts them and the call may be retried elsewhere.
//! To refuse a request that no instance could take, return this crate's
//! [`Error::InvalidRequest`](crate::Error::InvalidRequest) (boxed), which trips nothing.
//!
//! Because the transport is a seam, every rule above the wire (picking, timeouts,
//! breakers, retries, hedging, budgets, deadlines) can be tested on paused tokio time with a
//! scripted transport instead of sockets.
//!
//! For hand-built tower stacks, [`HttpEndpoint`] is the leaf for one instance: it joins the
//! instance's address with the request's path and sends through an [`HttpClient`].

mod base_url;
mod endpoint;
mod first_call;
mod http_client;
mod tls;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt};

pub(crate) use base_url::BaseUrl;
pub use endpoint::HttpEndpoint;
#[cfg(feature = "grpc")]
pub(crate) use http_client::https_connector;
pub use http_client::{HttpClient, HttpClientBuilder, ResponseFuture};
pub use tls::TlsConfig;
pub(crate) use tls::{ServerNames, tls_failure};

/// What a [`ServiceClient`](crate::ServiceClient) can send its attempts through: a cloneable
/// tower [`Service`] taking an `http::Request<Bytes>` with an absolute URI and answering an
/// `http::Response` of any [`http_body::Body`] (see the [module docs](self)). Implemented
/// for every service that fits; there is nothing to implement by hand.
pub trait Transport:
    Service<
        http::Request<Bytes>,
        Response = http::Response<Self::Body>,
        Future: Send,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The body of the answers.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> Transport for S
where
    S: Service<http::Request<Bytes>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

/// A transport as the client keeps it: any [`Transport`], its answers read whole, behind one
/// shared pointer. Cloning it is cheap.
#[derive(Clone)]
pub(crate) struct BoxTransport {
    send: Arc<dyn Send_>,
}

impl BoxTransport {
    /// Keeps `transport` as the client's.
    pub(crate) fn new(transport: impl Transport) -> Self {
        Self {
            send: Arc::new(Whole(transport)),
        }
    }

    /// Sends `request` and reads the whole answer, giving up at `until` (or, if the timer
    /// fires [`LATE`] or more past `until`, [`GRACE`] after it fires).
    #[inline]
    pub(crate) fn send(&self, request: http::Request<Bytes>, until: Instant) -> Sending {
        self.send.send(request, until)
    }
}

/// One request under way: its whole answer, or why there is none. One allocation, and
/// `Unpin`, so that a call can race two of them and hand one to a task of its own.
pub(crate) type Sending = BoxFuture<'static, Result<http::Response<Bytes>, SendError>>;

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The time allowed passed first.
    TimedOut,
    /// The transport failed.
    Failed(BoxError),
}

impl fmt::Debug for BoxTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

/// A timer firing this much past its deadline means the client was not running when it
/// was due (see [`StallMonitor`](crate::stall::StallMonitor)).
const LATE: Duration = Duration::from_millis(10);
/// How long an attempt whose timer fired [`LATE`] is still given: its answer may have come
/// while the client was not running, and be waiting in the socket for a task that has not
/// run yet (hyper reads answers in the connection's own task).
const GRACE: Duration = Duration::from_millis(20);

/// Sends one request and reads the whole answer by a deadline; object-safe, so that the
/// client can keep any transport behind one pointer.
trait Send_: Send + Sync + 'static {
    fn send(&self, request: http::Request<Bytes>, until: Instant) -> Sending;
}

/// A transport whose answers are read whole.
struct Whole<S>(S);

impl<T: Transport> Send_ for Whole<T> {
    fn send(&self, request: http::Request<Bytes>, until: Instant) -> Sending {
        let mut service = self.0.clone();
        let exchange = async move {
            let ready = service.ready().await.map_err(Into::into)?;
            let answer = ready.call(request).await.map_err(Into::into)?;
            let (parts, body) = answer.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            Ok::<_, BoxError>(http::Response::from_parts(parts, body))
        };
        Box::pin(async move {
            let mut exchange = pin!(exchange);
            let answer = match tokio::time::timeout_at(until, &mut exchange).await {
                Ok(answer) => answer,
                Err(_) if Instant::now().saturating_duration_since(until) < LATE => {
                    return Err(SendError::TimedOut);
                }
                Err(_) => match tokio::time::timeout(GRACE, exchange).await {
                    Ok(answer) => answer,
                    Err(_) => return Err(SendError::TimedOut),
                },
            };
            match answer {
                Ok(answer) => Ok(answer),
                // Failed, but past its deadline: out of time all the same. The connector's
                // own timeout (the client's default transport connects within the attempt's
                // timeout) fires at the same moment as the attempt's, and when both are
                // overdue (the client was frozen) either may be seen first: the attempt is
                // judged as timed out either way, which the stall rule can excuse.
                Err(_) if Instant::now() >= until => Err(SendError::TimedOut),
                Err(error) => Err(SendError::Failed(error)),
            }
        })
    }
}
