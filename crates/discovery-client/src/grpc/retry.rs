//! [`Retries`]: an idempotent call sent again on another instance after an instance
//! failure, and hedged on another instance when slow.
//!
//! ```text
//!   buffer the request (≤ 64 KiB) ──▶ attempt ──▶ instance failure? ──▶ retry elsewhere
//!                                        │ no head after the hedge delay        │
//!                                        └──▶ hedge elsewhere, race ─▶ answer ◀─┘ no
//! ```
//!
//! Every attempt goes through the channel's [`Balancer`](crate::balance::Balancer)
//! carrying the call's [`Tried`] list, so that a retry or a hedge goes to an instance the
//! call has not used. An attempt's head is an instance failure when it is an error of the
//! stack that says so (`UNAVAILABLE`: a transport failure or an open breaker;
//! `DEADLINE_EXCEEDED`: the head timed out; `RESOURCE_EXHAUSTED`: pushed back) or an answer
//! whose status, given in its headers, is `UNAVAILABLE` or `RESOURCE_EXHAUSTED`. Every other
//! answer (`NOT_FOUND` included) is the call's. A call whose status comes in trailers
//! has been answered: it is never sent again.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use futures::{StreamExt, stream};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use tokio::time::Instant;
use tonic::Code;
use tonic::body::Body;

use super::GrpcConfig;
use super::instances::InstanceGates;
use super::shared::{Answer, Pick, SharedBalancer};
use crate::Hedging;
use crate::balance::Tried;
use crate::budget::RetryBudget;
use crate::client::LatencyEstimate;
use crate::telemetry::ServiceTelemetry;

/// The largest request buffered to be sent again; a larger one is sent once.
pub(super) const BUFFER_LIMIT: usize = 64 * 1024;

/// The retry and hedging rules of one channel, and what its calls share: the retry
/// budget, the latency estimate behind an adaptive hedge delay, instance ids for the logs.
pub(super) struct Retries {
    /// The paths of the methods whose calls may be sent again.
    idempotent: Vec<String>,
    /// Retries and hedges allowed after a call's first attempt.
    max_retries: u32,
    /// When a slow attempt is hedged.
    hedging: Hedging,
    /// The p99 of answered attempts' time to their head, for [`Hedging::Adaptive`].
    latency: LatencyEstimate,
    /// Retries allowed as a share of calls.
    budget: RetryBudget,
    /// Logs and counts retries and hedges.
    telemetry: ServiceTelemetry,
    /// The instances' gates by address, for their ids in the logs.
    gates: InstanceGates,
    /// How long a hedged-over attempt's body is read, so that its outcome is judged.
    timeout: Duration,
}

impl Retries {
    /// The rules `config` sets for `service`, logging as `telemetry`.
    pub(super) fn new(
        config: &GrpcConfig,
        telemetry: ServiceTelemetry,
        gates: InstanceGates,
    ) -> Self {
        Self {
            idempotent: config.idempotent.clone(),
            max_retries: config.max_retries,
            hedging: config.hedging,
            latency: LatencyEstimate::default(),
            budget: RetryBudget::new(
                Duration::from_secs(10),
                config.min_retries_per_sec,
                config.retry_budget,
            ),
            telemetry,
            gates,
            timeout: config.timeout,
        }
    }

    /// Whether calls to `path` may be sent again.
    pub(super) fn covers(&self, path: &str) -> bool {
        self.idempotent.iter().any(|p| p == path)
    }

    /// Sends `request`, an idempotent call, through `balancer`: buffered, then as the
    /// [module docs](self) say; a request over [`BUFFER_LIMIT`] is sent once.
    pub(super) async fn call(
        self: Arc<Self>,
        balancer: SharedBalancer,
        request: http::Request<Body>,
    ) -> Answer {
        let (parts, body) = request.into_parts();
        let body = match buffer(body).await {
            Ok(Buffered::Whole(body)) => body,
            Ok(Buffered::Large(body)) => {
                let request = http::Request::from_parts(parts, body);
                return balancer.call(request).await;
            }
            Err(status) => return Err(Box::new(status)),
        };
        self.budget.deposit_at(Instant::now());
        let mut call = Call {
            retries: &self,
            parts,
            body,
            tried: Tried::default(),
            sent: 0,
        };
        call.run(&balancer).await
    }
}

/// A request read to its end, or, past [`BUFFER_LIMIT`], put back together to be sent once.
enum Buffered {
    Whole(Bytes),
    Large(Body),
}

/// Reads `body` to its end, or until it is larger than [`BUFFER_LIMIT`].
async fn buffer(mut body: Body) -> Result<Buffered, tonic::Status> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    // Ends at the body's end, or once past the limit.
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // a request's trailers: gRPC sends none
        };
        size += data.len();
        chunks.push(data);
        if size > BUFFER_LIMIT {
            let read = stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
            let rest = BodyStream::new(body);
            return Ok(Buffered::Large(Body::new(StreamBody::new(
                read.chain(rest),
            ))));
        }
    }
    // One chunk (a unary call's one message) is the body as it is.
    if chunks.len() == 1 {
        return Ok(Buffered::Whole(chunks.swap_remove(0)));
    }
    let mut whole = BytesMut::with_capacity(size);
    chunks.iter().for_each(|c| whole.extend_from_slice(c));
    Ok(Buffered::Whole(whole.freeze()))
}

/// One attempt under way.
struct Attempt {
    /// Its answer's head, or why there is none.
    future: Pick,
    /// When it was sent.
    started: Instant,
    /// How many of the call's attempts had been given an instance before it: its own is
    /// the next one picked.
    picked_before: usize,
}

/// The state of one idempotent call.
struct Call<'r> {
    /// The channel's rules.
    retries: &'r Retries,
    /// What every attempt sends: the request's head...
    parts: http::request::Parts,
    /// ...and its body.
    body: Bytes,
    /// The instances the call's attempts were given.
    tried: Tried,
    /// Attempts sent.
    sent: u32,
}

impl Call<'_> {
    async fn run(&mut self, balancer: &SharedBalancer) -> Answer {
        let mut attempt = self.send(balancer);
        // Each turn sends one more attempt, and no more than max_retries + 1 are sent.
        loop {
            let (answer, started) = self.wait_or_hedge(balancer, attempt).await;
            if !is_instance_failure(&answer) {
                self.learn(&answer, started);
                return answer;
            }
            let retries = self.retries;
            // Also over when an attempt found no instance left to try.
            let out_of_instances = self.tried.len() < self.sent as usize;
            if self.sent > retries.max_retries
                || out_of_instances
                || !retries.budget.withdraw_at(Instant::now())
            {
                return answer;
            }
            retries.telemetry.retried();
            attempt = self.send(balancer);
        }
    }

    /// Sends one attempt through `balancer`.
    fn send(&mut self, balancer: &SharedBalancer) -> Attempt {
        let mut request = http::Request::new(Body::new(Full::new(self.body.clone())));
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = self.parts.uri.clone();
        *request.version_mut() = self.parts.version;
        *request.headers_mut() = self.parts.headers.clone();
        *request.extensions_mut() = self.parts.extensions.clone();
        request.extensions_mut().insert(self.tried.clone());
        self.sent += 1;
        // Counted before the call: a balancer that is ready picks inside it.
        let picked_before = self.tried.len();
        Attempt {
            started: Instant::now(),
            future: balancer.call(request),
            picked_before,
        }
    }

    /// Waits for `first`; if it has no head after the hedge delay, and `max_retries` and
    /// the budget allow, races it with a hedge on another instance. The first head that is
    /// not an instance failure wins and the other attempt is left to finish in a task of
    /// its own, so that its outcome is recorded on its breaker; if the first to end failed,
    /// the other is waited for. Returns the answer and when its attempt was sent.
    async fn wait_or_hedge(
        &mut self,
        balancer: &SharedBalancer,
        mut first: Attempt,
    ) -> (Answer, Instant) {
        let retries = self.retries;
        let Some(delay) = retries.hedging.delay(&retries.latency) else {
            return (first.future.await, first.started);
        };
        let timer = std::pin::pin!(tokio::time::sleep_until(first.started + delay));
        if let Either::Left((answer, _)) = select(&mut first.future, timer).await {
            return (answer, first.started);
        }
        // Boxed: the rare path keeps the future of every call small.
        Box::pin(self.hedge(balancer, first, delay)).await
    }

    /// [`wait_or_hedge`](Self::wait_or_hedge) once `first` has had no head for `delay`.
    async fn hedge(
        &mut self,
        balancer: &SharedBalancer,
        mut first: Attempt,
        delay: Duration,
    ) -> (Answer, Instant) {
        let retries = self.retries;
        if self.sent > retries.max_retries || !retries.budget.withdraw_at(Instant::now()) {
            return (first.future.await, first.started);
        }
        let mut hedge = self.send(balancer);
        // The hedge's instance, for the log, once the balancer has picked it; a hedge
        // that found none has ended already.
        let picked = std::pin::pin!(self.tried.picked_more_than(hedge.picked_before));
        let ended = match select(picked, &mut hedge.future).await {
            Either::Left(((), _)) => None,
            Either::Right((answer, _)) => Some(answer),
        };
        let Some(quick) = self.tried.get(hedge.picked_before) else {
            // No instance for the hedge: the first attempt is the call's only one.
            return (first.future.await, first.started);
        };
        let ids = &retries.gates;
        let slow = self.tried.get(first.picked_before).unwrap_or_default();
        retries
            .telemetry
            .hedging(&ids.id(&slow), delay, &ids.id(&quick));
        let (answer, winner, loser, hedge_won) = match ended {
            Some(answer) => (answer, hedge.started, first, true),
            None => match select(&mut first.future, &mut hedge.future).await {
                Either::Left((answer, _)) => (answer, first.started, hedge, false),
                Either::Right((answer, _)) => (answer, hedge.started, first, true),
            },
        };
        if !is_instance_failure(&answer) {
            retries.telemetry.hedged(hedge_won);
            self.detach(loser);
            return (answer, winner);
        }
        let last = loser.future.await;
        retries
            .telemetry
            .hedged(!hedge_won && !is_instance_failure(&last));
        (last, loser.started)
    }

    /// Lets a hedged-over attempt run to its end in a task of its own, reading its body
    /// (for at most the attempt timeout), so that its breaker judges it.
    fn detach(&self, loser: Attempt) {
        let timeout = self.retries.timeout;
        tokio::spawn(async move {
            if let Ok(answer) = loser.future.await {
                let body = answer.into_body().collect();
                let _ = tokio::time::timeout(timeout, body).await;
            }
        });
    }

    /// Takes an answered attempt's time to its head into the latency estimate.
    fn learn(&self, answer: &Answer, started: Instant) {
        if answer.is_ok() && self.retries.hedging.is_adaptive() {
            self.retries.latency.record(started.elapsed());
        }
    }
}

/// Whether an attempt's head says its instance failed (see the [module docs](self)).
fn is_instance_failure(answer: &Answer) -> bool {
    match answer {
        Ok(response) => tonic::Status::from_header_map(response.headers()).is_some_and(|status| {
            matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
        }),
        // The stack's own errors: a DEADLINE_EXCEEDED here is the head's timeout.
        Err(error) => error.downcast_ref::<tonic::Status>().is_some_and(|status| {
            matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
            )
        }),
    }
}
