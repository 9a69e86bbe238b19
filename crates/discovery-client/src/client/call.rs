//! One call, start to end.
//!
//! ```text
//!        ┌────────────────── retry: another instance ◀──────────────┐
//!        ▼                                                          │ failed, pushed back
//!      pick ──▶ attempt (timeout, classify, record) ──▶ ended? ─────┤
//!                  │ not answered after the hedge delay             │ answered
//!                  └──▶ hedge: one more attempt elsewhere, race ────┴──▶ answer
//! ```
//!
//! 1. **Pick.** The endpoints discovery knows (the first call waits at most one timeout for
//!    discovery's first answer; if discovery failed before finding anything, the call is
//!    [`Error::Discovery`]). The client's [`Balance`](crate::Balance) rule chooses among the
//!    instances not tried yet in this call, not avoided after pushing back, whose breaker
//!    grants a permit. None: [`Error::Overloaded`] at once if some instance is being
//!    avoided, else `all services are down` and [`Error::AllInstancesDown`] (or, after a
//!    failed attempt, that attempt's error).
//! 2. **Attempt.** The request goes to that instance through the transport, logged
//!    (`ratings using instance 1: ...`) and bounded by the per-attempt timeout (the client's
//!    or the request's, or what is left of the deadline). The whole answer is judged: a 2xx
//!    body the caller's decoder refuses is [`Error::Decode`] (the instance's failure if the
//!    body is malformed or cut short; the caller's own, never retried, if it is valid JSON
//!    of another type); then the classifier decides, and the outcome is recorded on the
//!    instance's breaker (whose transitions are logged as `OPEN breaker on [...]`, `RETEST
//!    ...`, `CLOSE ...`), in the metrics and in the instance's figures. Only the call's
//!    first timeout is recorded on a breaker: a call that times out on every instance it
//!    tries is more likely slow by nature than its instances sick, so it opens at most one
//!    breaker (its later timeouts, a hedged-over one included, are counted in the metrics
//!    and figures only). An instance that pushed back (429, or 503 with `Retry-After`:
//!    [`Outcome::Overloaded`]) is busy, not sick: no breaker counts it, it is avoided by
//!    every call for the time it asked (capped by
//!    [`max_retry_after`](crate::ServiceClientBuilder::max_retry_after); 1 s if it did not
//!    say), and the call goes on as after a failure.
//! 3. **Hedge.** An attempt of an idempotent request (by its method, by
//!    [`RequestBuilder::idempotent`](crate::RequestBuilder::idempotent), or any request with
//!    `retry_non_idempotent`) that has not ended after the hedge delay
//!    ([`Hedging`](crate::Hedging)) gets one more attempt on another instance, taken from
//!    the retry budget and counted against `max_retries` (or the request's `retries`). The
//!    first of the two to end without failing is the answer; the other is not cancelled but
//!    handed to a task of its own, still counted in flight, and judged when it ends, so a
//!    paused instance's breaker still opens when its attempt times out. If the first to end
//!    failed or pushed back, the call waits for the other.
//! 4. **Retry.** After a failed attempt, or one that pushed back, an idempotent request
//!    tries an instance not tried yet, while its retries, the retry budget and its deadline
//!    allow. A request that is not retried is not retried after a push-back either: a 429
//!    or 503 does not promise that nothing was done.
//! 5. **Answer.** The first attempt that neither failed nor pushed back (a 4xx other than
//!    429 is the caller's answer: it is returned, never retried); or, when every try
//!    failed, the last failure, which is [`Error::Overloaded`] if the last try pushed back
//!    (carrying how long until the first avoided instance may be called again).
//!
//! The state of one call is one [`Call`]; dropping the call's future drops its attempts,
//! whose permits are then recorded as neither success nor failure.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use tokio::time::Instant;

use super::Inner;
use super::attempt::{Judged, Sent};
use super::decode::Decode;
use super::endpoints::Endpoint;
use super::response::Answer;
use crate::Error;
use crate::classify::Outcome;
use crate::transport::SendError;

/// What every attempt of a call sends, and the rules for this call (the client's, or the
/// request's own overrides).
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: Method,
    /// Path and query, sent to each instance after its address's own path.
    pub(super) path: PathAndQuery,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// Per-attempt timeout.
    pub(super) timeout: Duration,
    /// Overall deadline, across attempts.
    pub(super) deadline: Option<Duration>,
    /// Retries (and hedges) allowed after the first attempt.
    pub(super) max_retries: u32,
    /// Whether a failed attempt may be retried and a slow one hedged.
    pub(super) retryable: bool,
}

impl Request {
    /// A GET of `path` with `headers` under the client's rules: what the shortcuts
    /// (`get_json`, ...) send, built without a [`RequestBuilder`](crate::RequestBuilder)'s
    /// copies.
    pub(super) fn get(client: &Inner, path: &str, headers: &HeaderMap) -> Result<Self, Error> {
        Ok(Self {
            method: Method::GET,
            path: Self::parse_path(path)?,
            headers: headers.clone(),
            body: Bytes::new(),
            timeout: client.timeout,
            deadline: client.deadline,
            max_retries: client.max_retries,
            retryable: true,
        })
    }

    /// `path` (which must start with `/`), parsed.
    pub(super) fn parse_path(path: &str) -> Result<PathAndQuery, Error> {
        if !path.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "path {path:?} must start with '/'"
            )));
        }
        PathAndQuery::try_from(path)
            .map_err(|e| Error::InvalidRequest(format!("path {path:?}: {e}")))
    }

    /// The request one attempt sends to `endpoint`.
    fn to(&self, endpoint: &Endpoint) -> Result<http::Request<Bytes>, Error> {
        let uri = endpoint.base.join(Some(&self.path))?;
        let mut request = http::Request::new(self.body.clone());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        if !self.headers.is_empty() {
            *request.headers_mut() = self.headers.clone();
        }
        Ok(request)
    }
}

/// The state of one call.
struct Call<'c, D> {
    /// The client's settings and shared state.
    client: &'c Inner,
    /// What each attempt sends.
    request: &'c Request,
    /// What a 2xx body becomes.
    decode: D,
    /// The endpoints this call picks from (discovery's set when it started).
    endpoints: Arc<[Endpoint]>,
    /// Endpoints tried, or under way, in this call (indexes into `endpoints`).
    tried: Vec<usize>,
    /// Attempts sent, the first and a hedge included.
    attempts: u32,
    /// When the whole call must end, if there is a deadline.
    deadline: Option<Instant>,
    /// Whether a failed attempt may be retried, and a slow one hedged.
    retryable: bool,
    /// How long an attempt may go unanswered before it is hedged; `None`: never.
    hedge_after: Option<Duration>,
    /// The error of the last failed attempt.
    last_error: Option<Error>,
    /// Whether an attempt has timed out: only the first timeout is recorded on a breaker.
    timed_out: bool,
}

/// Whether an attempt with this outcome is the call's answer: anything but a failure or a
/// push-back, after which another instance is tried.
fn answered(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Success | Outcome::CallerError)
}

/// Sends `request` as the [module docs](self) say, decoding a 2xx answer with `decode`.
pub(super) async fn call<D: Decode>(
    client: &Inner,
    request: &Request,
    decode: D,
) -> Result<Answer<D::Output>, Error> {
    let started = Instant::now();
    client.budget.deposit_at(started);
    // The first attempt starts when the call did, unless discovery had to be waited for.
    let (endpoints, now) = match client.known_endpoints()? {
        Some(endpoints) => (endpoints, started),
        None => (client.first_endpoints().await?, Instant::now()),
    };
    let retryable = request.retryable;
    let call = Call {
        client,
        request,
        decode,
        endpoints,
        tried: Vec::new(),
        attempts: 0,
        deadline: request.deadline.map(|d| started + d),
        retryable,
        hedge_after: retryable
            .then(|| client.hedging.delay(&client.latency))
            .flatten(),
        last_error: None,
        timed_out: false,
    };
    call.run(now).await
}

impl<D: Decode> Call<'_, D> {
    async fn run(mut self, mut now: Instant) -> Result<Answer<D::Output>, Error> {
        loop {
            // Pick, and send (a retry only if the budget allows).
            let retry = self.attempts > 0;
            let Some(first) = self.send_next(now, retry)? else {
                break;
            };
            if retry {
                self.client.telemetry.retried();
            }
            // Wait for it, hedging if it is slow.
            let judged = match self.hedge_after {
                Some(delay) => self.wait_or_hedge(first, delay).await?,
                None => self.finish(first).await,
            };
            if answered(judged.outcome) {
                return self.answer(judged);
            }
            self.failed(judged);
            // Retry?
            now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return Err(self.deadline_exceeded());
            }
            if !self.retryable || self.attempts > self.request.max_retries {
                break;
            }
        }
        let now = Instant::now();
        Err(match self.last_error.take() {
            Some(Error::Overloaded { .. }) => self.overloaded(now),
            Some(error) => error,
            None if self.avoided_for(now).is_some() => self.overloaded(now),
            None => self.client.telemetry.all_down(),
        })
    }

    /// Picks an endpoint not tried yet, not avoided after it pushed back, whose breaker grants
    /// a permit at `now` and sends the request there; `None` if there is none, or if
    /// `from_budget` (a retry or a hedge) and the retry budget has no room.
    fn send_next(&mut self, now: Instant, from_budget: bool) -> Result<Option<Sent>, Error> {
        let (client, endpoints, tried) = (self.client, &self.endpoints, &self.tried);
        let picked = client.picker.pick(
            client.balance,
            endpoints.len(),
            |i| &endpoints[i].load,
            now,
            |i| {
                let gate = &endpoints[i].gate;
                if tried.contains(&i) || gate.avoided_for(now).is_some() {
                    return None;
                }
                gate.acquire(now)
            },
        );
        let Some((index, permit)) = picked else {
            return Ok(None);
        };
        // Not sent: the permit is dropped unrecorded (a probe's slot is freed).
        if from_budget && !client.budget.withdraw_at(now) {
            return Ok(None);
        }
        let endpoint = &self.endpoints[index];
        let request = self.request.to(endpoint)?;
        let limit = match self.deadline {
            Some(d) => self.request.timeout.min(d.saturating_duration_since(now)),
            None => self.request.timeout,
        };
        self.tried.push(index);
        self.attempts += 1;
        let transport = &client.transport;
        Ok(Some(Sent::start(
            index, endpoint, permit, transport, request, limit, now,
        )))
    }

    /// Waits for `sent` to end and judges it.
    async fn finish(&mut self, mut sent: Sent) -> Judged<D::Output> {
        let answer = (&mut sent.response).await;
        self.judge(sent, answer)
    }

    fn judge(
        &mut self,
        sent: Sent,
        answer: Result<http::Response<Bytes>, SendError>,
    ) -> Judged<D::Output> {
        let gate = &self.endpoints[sent.index].gate;
        let classifier = &*self.client.classifier;
        sent.judge(answer, gate, classifier, self.decode, &mut self.timed_out)
    }

    /// Waits for `first`; if it has not ended after `delay`, and `max_retries`, the retry
    /// budget and the deadline allow, races it with a hedge on an endpoint not tried yet. The
    /// first attempt to end without failing wins and the other is detached; if the first to
    /// end failed, the other is waited for.
    async fn wait_or_hedge(
        &mut self,
        mut first: Sent,
        delay: Duration,
    ) -> Result<Judged<D::Output>, Error> {
        let fire_at = first.started + delay;
        if self.deadline.is_some_and(|d| fire_at >= d) {
            return Ok(self.finish(first).await);
        }
        let timer = pin!(tokio::time::sleep_until(fire_at));
        if let Either::Left((answer, _)) = select(&mut first.response, timer).await {
            return Ok(self.judge(first, answer));
        }
        if self.attempts > self.request.max_retries {
            return Ok(self.finish(first).await);
        }
        let Some(mut hedge) = self.send_next(Instant::now(), true)? else {
            return Ok(self.finish(first).await);
        };
        let (slow, quick) = (first.index, hedge.index);
        let id = |index: usize| &self.endpoints[index].instance.id;
        self.client.telemetry.hedging(id(slow), delay, id(quick));
        let (ended, answer, other) = match select(&mut first.response, &mut hedge.response).await {
            Either::Left((answer, _)) => (first, answer, hedge),
            Either::Right((answer, _)) => (hedge, answer, first),
        };
        let judged = self.judge(ended, answer);
        if answered(judged.outcome) {
            self.client.telemetry.hedged(judged.index == quick);
            let classifier = Arc::clone(&self.client.classifier);
            let endpoint = &self.endpoints[other.index];
            other.detach(endpoint, classifier, self.decode.check(), self.timed_out);
            return Ok(judged);
        }
        self.failed(judged);
        let last = self.finish(other).await;
        let won = last.index == quick && answered(last.outcome);
        self.client.telemetry.hedged(won);
        Ok(last)
    }

    /// What an attempt that did not fail gives the caller: its answer, or an error that is
    /// the caller's own (such as a request no instance could take).
    fn answer(&self, judged: Judged<D::Output>) -> Result<Answer<D::Output>, Error> {
        let (response, value) = judged.result?;
        if self.client.hedging.is_adaptive() {
            self.client.latency.record(judged.elapsed);
        }
        Ok(Answer {
            response,
            value,
            instance: Arc::clone(&self.endpoints[judged.index].instance),
        })
    }

    /// Keeps the error of a failed attempt (a failing answer becomes [`Error::Status`]) or
    /// one that pushed back ([`Error::Overloaded`]; the push-back was logged as it was
    /// judged).
    fn failed(&mut self, judged: Judged<D::Output>) {
        if judged.outcome == Outcome::Overloaded {
            let retry_after = self.avoided_for(Instant::now());
            self.last_error = Some(Error::Overloaded {
                service: self.client.telemetry.service().to_string(),
                retry_after,
            });
            return;
        }
        let instance = &self.endpoints[judged.index].instance;
        let error = match judged.result {
            Ok((answer, _)) => Error::status(
                &instance.address,
                answer.status(),
                answer.headers(),
                answer.body(),
            ),
            Err(error) => error,
        };
        let (service, id) = (self.client.telemetry.service(), &instance.id);
        tracing::debug!(service = %service, instance = %id, address = %instance.address,
            error = %error, "{service} attempt on instance {id} failed: {error}");
        self.last_error = Some(error);
    }

    /// How long until the first of the call's endpoints avoided at `now` (after pushing
    /// back) may be called again; `None` if none is avoided.
    fn avoided_for(&self, now: Instant) -> Option<Duration> {
        let endpoints = self.endpoints.iter();
        endpoints.filter_map(|e| e.gate.avoided_for(now)).min()
    }

    /// The call's end when its last attempt pushed back, or when every instance it could
    /// use is avoided: [`Error::Overloaded`], logged and counted.
    fn overloaded(&self, now: Instant) -> Error {
        self.client.telemetry.overloaded(self.avoided_for(now))
    }

    fn deadline_exceeded(&self) -> Error {
        Error::DeadlineExceeded {
            service: self.client.telemetry.service().to_string(),
            deadline: self.request.deadline.unwrap_or_default(),
        }
    }
}
