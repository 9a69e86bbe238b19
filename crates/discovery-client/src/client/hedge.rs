//! Attempts, and hedging: racing a slow attempt with one more on another instance.
//!
//! Unless [`Hedging::Off`](super::Hedging::Off) is chosen, an idempotent attempt that has
//! not answered after the hedge delay gets one hedge: a second attempt on another
//! instance, taken from the retry budget and counted against `max_retries`. The first of the
//! two to end without failing is the call's answer ("The Tail at Scale", Dean and Barroso).
//!
//! The attempt that loses the race is not cancelled: it is handed to a task of its own,
//! still holding its breaker permit and its place in the instance's in-flight count, and runs
//! to its own end, which its per-attempt timeout (and the call's deadline) bounds. Its
//! outcome is recorded on its breaker, so a paused instance's breaker still opens when the
//! attempt times out, and the picker keeps counting it in flight until then. The detached
//! attempt is judged by the classifier without the call's body check (the check borrows the
//! caller, who has its answer already): a 2xx body that would not decode counts as a success.
//! If the caller's own future is dropped while both attempts are under way, both are dropped
//! with it, as a single attempt would be.

use bytes::Bytes;
use futures::future::{Either, select};
use http::Response;
use tokio::time::{Duration, Instant};
use tower::{Service, ServiceExt};

use super::{Inner, Slot};
use crate::Error;
use crate::balance::InFlightGuard;
use crate::breaker::{BodyCheck, Classified};
use crate::classify::Outcome;
use crate::timeout::Timeout;
use crate::transport::HttpEndpoint;

/// The future of the timeout and HTTP layers of an instance's stack.
type StackFuture = <Timeout<HttpEndpoint> as Service<http::Request<Bytes>>>::Future;

/// One attempt under way on one instance.
pub(super) struct Attempt<K> {
    /// Index of the instance in the call's endpoints.
    pub(super) index: usize,
    /// The judged attempt; boxed inside, so it can be moved to a task of its own.
    future: Classified<std::pin::Pin<Box<StackFuture>>, K>,
    /// Counts the attempt in the instance's requests in flight until it ends.
    in_flight: InFlightGuard,
    /// When it started.
    started: Instant,
}

/// An attempt that ended.
pub(super) struct Finished {
    /// Index of the instance in the call's endpoints.
    pub(super) index: usize,
    /// What it gave.
    pub(super) result: Result<Response<Bytes>, Error>,
    /// How the classifier judged it (already recorded on the breaker).
    pub(super) outcome: Outcome,
    /// When it started (its duration is read only where it is used: adaptive hedging).
    pub(super) started: Instant,
}

impl Finished {
    fn new(
        index: usize,
        started: Instant,
        (result, outcome): (Result<Response<Bytes>, Error>, Outcome),
    ) -> Self {
        Finished {
            index,
            result,
            outcome,
            started,
        }
    }
}

impl<K: BodyCheck> Attempt<K> {
    /// Waits for the attempt's end.
    pub(super) async fn finish(self) -> Finished {
        let output = self.future.await;
        drop(self.in_flight);
        Finished::new(self.index, self.started, output)
    }
}

impl<K> Attempt<K> {
    /// Lets the attempt run to its own end in a task, without the body check, recording its
    /// outcome on the breaker and keeping its place in the in-flight count until then.
    fn detach(self, service: &str, slot: &Slot) {
        let future = self.future.detach();
        let in_flight = self.in_flight;
        let (service, id) = (service.to_string(), slot.instance.id.clone());
        tokio::spawn(async move {
            let (_, outcome) = future.await;
            drop(in_flight);
            tracing::debug!(service = %service, instance = %id, outcome = ?outcome,
                "{service} hedged-over attempt on instance {id} ended: {outcome:?}");
        });
    }
}

/// What a hedge needs besides the first attempt.
pub(super) struct Hedge<'a, R, K> {
    /// The call's endpoints.
    pub(super) endpoints: &'a [Slot],
    /// Makes the hedge's request.
    pub(super) request: R,
    /// The call's body check, if any.
    pub(super) checker: Option<K>,
    /// How long the first attempt may go unanswered before the hedge is sent.
    pub(super) delay: Duration,
    /// The call's overall deadline, if any.
    pub(super) deadline: Option<Instant>,
}

impl Inner {
    /// Picks an instance not in `tried` whose breaker admits a request at `now` (preferring
    /// fewer requests in flight, as the client's [`Balance`](crate::balance::Balance) says)
    /// and starts the request that `request` makes on it; `None` if there is none.
    pub(super) async fn start_attempt<K: BodyCheck>(
        &self,
        endpoints: &[Slot],
        tried: &[usize],
        request: impl FnOnce() -> Result<http::Request<Bytes>, Error>,
        checker: Option<K>,
        now: Instant,
    ) -> Result<Option<Attempt<K>>, Error> {
        let pending = |index: usize| self.balance.load(&endpoints[index].in_flight);
        let picked = self
            .picker
            .pick_by(self.balance, endpoints.len(), pending, |index| {
                if tried.contains(&index) {
                    return None;
                }
                endpoints[index].service.acquire(now)
            });
        let Some((index, permit)) = picked else {
            return Ok(None);
        };
        let slot = &endpoints[index];
        // In flight until this attempt ends, however it ends (the call may be dropped).
        let in_flight = slot.in_flight.start();
        let request = request()?;
        let mut service = slot.service.clone();
        // The timeout and HTTP layers are always ready; tower asks that we check.
        service.ready().await?;
        let future = service.call_detachable(permit, request, checker, now);
        Ok(Some(Attempt {
            index,
            future,
            in_flight,
            started: now,
        }))
    }

    /// The error of a failed attempt on `slot`, logged.
    pub(super) fn failed(&self, slot: &Slot, result: Result<Response<Bytes>, Error>) -> Error {
        let (service, id, address) = (
            self.telemetry.service(),
            &slot.instance.id,
            &slot.instance.address,
        );
        let error = match result {
            Ok(answer) => Error::Status {
                address: address.clone(),
                status: answer.status().as_u16(),
            },
            Err(e) => e,
        };
        tracing::debug!(service = %service, instance = %id, address = %address, error = %error,
            "{service} attempt on instance {id} failed: {error}");
        error
    }

    /// Waits for `first`; if it has not ended after the hedge delay, and the retry budget,
    /// `max_retries` (`attempts` so far) and the deadline allow, races it with a hedge on an
    /// instance not in `tried`. The first attempt to end without failing wins and the other
    /// is detached; if both fail, the last failure is returned (the other is logged).
    pub(super) async fn hedged<R, K>(
        &self,
        mut first: Attempt<K>,
        hedge: Hedge<'_, R, K>,
        tried: &mut Vec<usize>,
        attempts: &mut u32,
    ) -> Result<Finished, Error>
    where
        R: FnOnce() -> Result<http::Request<Bytes>, Error>,
        K: BodyCheck + Copy,
    {
        let fire_at = Instant::now() + hedge.delay;
        if hedge.deadline.is_some_and(|d| fire_at >= d) {
            return Ok(first.finish().await);
        }
        let sleep = std::pin::pin!(tokio::time::sleep_until(fire_at));
        if let Either::Left((output, _)) = select(&mut first.future, sleep).await {
            return Ok(Finished::new(first.index, first.started, output));
        }
        let now = Instant::now();
        if *attempts > self.max_retries || !self.budget.withdraw_at(now) {
            return Ok(first.finish().await);
        }
        let Some(mut second) = self
            .start_attempt(hedge.endpoints, tried, hedge.request, hedge.checker, now)
            .await?
        else {
            return Ok(first.finish().await);
        };
        *attempts += 1;
        tried.push(second.index);
        let service = self.telemetry.service();
        tracing::info!(service = %service,
            instance = %hedge.endpoints[first.index].instance.id,
            hedge = %hedge.endpoints[second.index].instance.id,
            "{service} instance {} has not answered in {:?}: hedging on instance {}",
            hedge.endpoints[first.index].instance.id, hedge.delay,
            hedge.endpoints[second.index].instance.id);
        let hedge_index = second.index;
        let raced = select(&mut first.future, &mut second.future).await;
        let (ended, output, other) = match raced {
            Either::Left((output, _)) => (first, output, second),
            Either::Right((output, _)) => (second, output, first),
        };
        let done = Finished::new(ended.index, ended.started, output);
        // The ended attempt leaves its instance's in-flight count now, not when the other ends.
        drop(ended);
        if done.outcome != Outcome::Failure {
            self.telemetry.hedged(done.index == hedge_index);
            let slot = &hedge.endpoints[other.index];
            other.detach(service, slot);
            return Ok(done);
        }
        let _ = self.failed(&hedge.endpoints[done.index], done.result);
        let last = other.finish().await;
        self.telemetry
            .hedged(last.index == hedge_index && last.outcome != Outcome::Failure);
        Ok(last)
    }
}
