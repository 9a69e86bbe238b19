//! [`InMemory`]: fake instances served as a `tower::Service`, without sockets, so a client
//! library's tests can run on paused time.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use tokio::sync::watch;

use crate::behaviour::{self, Outcome};
use crate::state::InstanceState;
use crate::{Behaviour, FakeRatings};

/// The registered instances by authority (`host:port`).
type Instances = Arc<Mutex<HashMap<String, Entry>>>;

/// A registered instance.
#[derive(Clone, Debug)]
struct Entry {
    state: Arc<InstanceState>,
    /// Closes (its sender is dropped) when the instance stops, ending the calls it holds.
    alive: watch::Receiver<()>,
}

/// A transport to fake instances held in memory: a `tower::Service` taking requests with an
/// absolute URI (`http://host:port/path?query`) and answering as the instance registered at
/// that address behaves. Clones share the instances.
///
/// - A request to an address where no instance is registered fails at once with
///   `io::ErrorKind::ConnectionRefused`.
/// - [`Behaviour::Raw`] fails with `io::ErrorKind::InvalidData` ("not an HTTP answer"), as
///   does a status code outside 100..=999.
/// - [`Behaviour::Hang`] never completes: only dropping the call's future (or stopping the
///   instance) ends it, and either counts it out of `in_flight`.
/// - [`Behaviour::Delay`] sleeps on tokio's clock, so on paused time a delayed answer arrives
///   exactly that much later.
///
/// ```
/// use bytes::Bytes;
/// use fake_ratings::{Behaviour, InMemory};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let transport = InMemory::new();
/// let one = transport.instance(1, Behaviour::Ratings);
/// let request = http::Request::get(format!("{}/ratings/widget", one.url))
///     .body(Bytes::new())
///     .unwrap();
/// let answer = transport.clone().oneshot(request).await.unwrap();
/// assert_eq!(answer.status(), 200);
/// assert_eq!(one.hits(), 1);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    instances: Instances,
}

/// Keeps an in-memory instance registered; dropping it removes the instance.
#[derive(Debug)]
pub(crate) struct Registration {
    instances: Instances,
    authority: String,
    state: Arc<InstanceState>,
    /// Dropped with the registration, which ends the calls the instance holds.
    _alive: watch::Sender<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut instances = lock(&self.instances);
        // Only if it is still this instance: another may have been registered at the address.
        if instances
            .get(&self.authority)
            .is_some_and(|entry| Arc::ptr_eq(&entry.state, &self.state))
        {
            instances.remove(&self.authority);
        }
    }
}

/// Locks `mutex`; a panic elsewhere while holding it leaves plain data that is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InMemory {
    /// A transport with no instances yet.
    pub fn new() -> InMemory {
        InMemory::default()
    }

    /// Registers instance `n`, behaving as `behaviour`, at `http://10.0.0.{n}:80` (the
    /// handle's `url`), replacing any instance registered there before. Dropping the handle,
    /// or [`FakeRatings::stop`], removes it again.
    pub fn instance(&self, n: u32, behaviour: Behaviour) -> FakeRatings {
        let authority = format!("10.0.0.{n}:80");
        let state = InstanceState::new(n, behaviour);
        let (alive, alive_rx) = watch::channel(());
        let entry = Entry {
            state: Arc::clone(&state),
            alive: alive_rx,
        };
        lock(&self.instances).insert(authority.clone(), entry);
        let registration = Registration {
            instances: Arc::clone(&self.instances),
            authority: authority.clone(),
            state: Arc::clone(&state),
            _alive: alive,
        };
        FakeRatings::in_memory(format!("http://{authority}"), state, registration)
    }
}

impl tower::Service<http::Request<Bytes>> for InMemory {
    type Response = http::Response<Bytes>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<http::Response<Bytes>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let instances = Arc::clone(&self.instances);
        Box::pin(async move {
            let authority = authority_of(request.uri())?;
            let entry = lock(&instances).get(&authority).cloned();
            let Some(Entry { state, mut alive }) = entry else {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no instance at {authority}"),
                ));
            };
            let traceparent = request
                .headers()
                .get("traceparent")
                .and_then(|value| value.to_str().ok());
            let (behaviour, _held) = state.receive(traceparent);
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |target| target.as_str());
            let answer = async {
                respond(behaviour::outcome(behaviour, state.instance(), target).await).await
            };
            tokio::select! {
                answer = answer => answer,
                // Nothing is ever sent: this ends only when the instance stops.
                _ = alive.changed() => Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("the instance at {authority} stopped"),
                )),
            }
        })
    }
}

/// `host:port` of an absolute URI (port 80 when it has none).
fn authority_of(uri: &http::Uri) -> io::Result<String> {
    let host = uri.host().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an absolute URI: {uri}"),
        )
    })?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

/// The HTTP answer for `outcome`, as a client's HTTP stack would have parsed it.
async fn respond(outcome: Outcome) -> io::Result<http::Response<Bytes>> {
    match outcome {
        Outcome::Answer(answer) => {
            let status = StatusCode::from_u16(answer.status).map_err(|_| not_http())?;
            let length = HeaderValue::from(answer.body.len());
            let mut response = http::Response::new(Bytes::from(answer.body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
            headers.insert(CONTENT_LENGTH, length);
            Ok(response)
        }
        Outcome::Raw(_) => Err(not_http()),
        Outcome::Hang => std::future::pending().await,
    }
}

fn not_http() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer")
}
