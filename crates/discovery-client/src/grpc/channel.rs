//! [`channel`] and the [`GrpcChannel`] it builds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tonic::body::Body;
use tower::util::BoxService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use super::GrpcConfig;
use super::instances::InstanceGates;
use super::leaf::InstanceChannel;
use super::retry::Retries;
use super::shared::{Answer, SharedBalancer};
use super::status::status_of;
use crate::balance::{Balancer, Roster};
use crate::breaker::{Breakers, JudgedBody};
use crate::discovery::InstanceStream;
use crate::telemetry::ServiceTelemetry;
use crate::timeout::TimeoutLayer;
use crate::{Discovery, Error, InstanceStatus};

/// The body of a [`GrpcChannel`]'s answers: tonic's, passed on as it arrives, recording
/// the call's outcome on the instance's breaker when its trailers arrive.
pub type ResponseBody = JudgedBody<Body>;

/// A tonic client's transport over every instance of a service: cheap to clone (clones
/// share the instances, their breakers and connections). Made by [`channel`].
///
/// A [`tower::Service`] of `http::Request<tonic::body::Body>`, as generated tonic clients
/// take (`RatingsClient::new(channel)`). Its errors are [`tonic::Status`]es (see
/// [`status_of`](super::status_of)).
#[derive(Clone)]
pub struct GrpcChannel {
    /// The balancer over the instances, which the clones share.
    balancer: SharedBalancer,
    /// When calls are sent again, and what their retries share.
    retries: Arc<Retries>,
    /// The balancer's endpoints and loads, for [`instances`](Self::instances).
    roster: Roster,
    /// The instances' gates, for [`instances`](Self::instances).
    gates: InstanceGates,
    /// The service's name.
    service: Arc<str>,
}

/// A [`GrpcChannel`] to the instances of `service` that `discovery` finds, configured by
/// `config`. Must be called inside a tokio runtime: discovery runs as a task on it.
///
/// # Errors
///
/// [`Error::Config`] outside a tokio runtime, or with a zero hedge delay.
pub fn channel(
    service: &str,
    discovery: impl Discovery,
    config: GrpcConfig,
) -> Result<GrpcChannel, Error> {
    tokio::runtime::Handle::try_current()
        .map_err(|_| Error::Config("a gRPC channel must be made inside a tokio runtime".into()))?;
    config.hedging.validate().map_err(Error::Config)?;
    let mut breakers = Breakers::new(service, config.breaker.clone());
    let mut instances = InstanceStream::new(service, discovery)?;
    if let Some(events) = &config.events {
        breakers = breakers.events(events.clone());
        instances = instances.events(events.clone());
    }
    let timeout = config.timeout;
    let tls = config.tls.client_config(&[])?;
    let gates = InstanceGates::default();
    let telemetry = ServiceTelemetry::new(service, config.events.clone());
    let retries = Arc::new(Retries::new(&config, telemetry, gates.clone()));
    let known = gates.clone();
    let endpoints = instances.endpoints(move |instance| {
        let breaker = breakers.layer(instance);
        known.insert(breaker.gate());
        ServiceBuilder::new()
            .layer(breaker.streamed())
            .layer(TimeoutLayer::new(&instance.address, timeout))
            .service(InstanceChannel::new(instance, timeout, &tls))
    });
    let mut balancer = Balancer::new(service, endpoints).balance(config.balance);
    if let Some(events) = config.events {
        balancer = balancer.events(events);
    }
    let roster = balancer.roster();
    let balancer = balancer.map_err(|error| -> BoxError { Box::new(status_of(error)) });
    Ok(GrpcChannel {
        balancer: SharedBalancer::new(BoxService::new(balancer)),
        retries,
        roster,
        gates,
        service: Arc::from(service),
    })
}

impl GrpcChannel {
    /// The service this channel calls.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instances known right now, by id, with their breaker states and what the
    /// channel has seen of their calls (requests, failures, recent latency, the answer
    /// time and share the balancer weighs them by), as
    /// [`ServiceClient::instances`](crate::ServiceClient::instances) reports its own.
    ///
    /// ```no_run
    /// use discovery_client::grpc::{self, GrpcConfig};
    /// use discovery_client::StaticDiscovery;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), discovery_client::Error> {
    /// let discovery = StaticDiscovery::new(["http://127.0.0.1:50051"]);
    /// let channel = grpc::channel("ratings", discovery, GrpcConfig::default())?;
    /// for status in channel.instances() {
    ///     println!("{} {}: {}", status.id, status.address, status.state.as_str());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn instances(&self) -> Vec<InstanceStatus> {
        self.gates.status(&self.roster)
    }
}

impl Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Answer>;

    /// Always ready: a call waits for the balancer in its own future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let deadline = grpc_timeout(request.headers());
        let call = if self.retries.covers(request.uri().path()) {
            let retries = Arc::clone(&self.retries);
            retries.call(self.balancer.clone(), request).boxed()
        } else {
            self.balancer.call(request).boxed()
        };
        match deadline {
            None => call,
            Some(limit) => within(limit, call).boxed(),
        }
    }
}

/// The call's own deadline, from its `grpc-timeout` header (set by tonic's
/// `Request::set_timeout`): digits, then a unit (`H`, `M`, `S`, `m`, `u` or `n`). A value
/// that is not one is ignored, as gRPC servers ignore it.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    // gRPC allows at most 8 digits.
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(count * 3600),
        "M" => Duration::from_secs(count * 60),
        "S" => Duration::from_secs(count),
        "m" => Duration::from_millis(count),
        "u" => Duration::from_micros(count),
        "n" => Duration::from_nanos(count),
        _ => return None,
    })
}

/// `call`, failed with `DEADLINE_EXCEEDED` if it has no answer within `limit`: the whole
/// call, every attempt, retry and hedge included, as the caller asked. The attempts under
/// way are dropped; their instances are not blamed for the caller's deadline.
async fn within(limit: Duration, call: BoxFuture<'static, Answer>) -> Answer {
    match tokio::time::timeout(limit, call).await {
        Ok(answer) => answer,
        Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
            "no answer within the call's grpc-timeout of {limit:?}"
        )))),
    }
}

impl fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannel")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeout_is_read_in_every_unit() {
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout_of("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout_of("150m"), Some(Duration::from_millis(150)));
        assert_eq!(
            timeout_of("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(timeout_of("7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn a_malformed_grpc_timeout_is_ignored() {
        for value in ["", "m", "150", "150x", "123456789m", "-1S", "1.5S", "١S"] {
            assert_eq!(timeout_of(value), None, "{value:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
