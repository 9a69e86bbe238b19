//! [`Gate`]: the one way a request to an instance is let through its breaker and its outcome
//! recorded, for the tower middleware and [`ServiceClient`](crate::ServiceClient) alike.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Breaker, Permit, PushBack};
use crate::classify::Outcome;
use crate::error::retry_after_of;
use crate::stall::StallMonitor;
use crate::telemetry::InstanceTelemetry;

/// One instance's breaker and its reporting. Asking for a permit and recording an outcome
/// both go through here, so every transition is logged (`OPEN breaker on [...]`, `RETEST
/// ...`, `CLOSE ...`), published and counted, and every judged attempt lands in the metrics
/// and the instance's figures, whoever made the attempt. It also keeps until when the
/// instance is avoided after it pushed back. Cheap to clone (three `Arc`s).
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    /// The instance's breaker, kept by address across discovery refreshes.
    breaker: Arc<Breaker>,
    /// Log lines, events, metrics and figures for the instance.
    telemetry: Arc<InstanceTelemetry>,
    /// Until when the instance is avoided after it pushed back, kept with the breaker.
    push_back: Arc<PushBack>,
    /// The client's record of its own stalls, when it keeps one: a timeout during which
    /// the client was not running is not the instance's failure.
    stalls: Option<StallMonitor>,
}

impl Gate {
    pub(crate) fn new(
        breaker: Arc<Breaker>,
        telemetry: Arc<InstanceTelemetry>,
        push_back: Arc<PushBack>,
    ) -> Self {
        Self {
            breaker,
            telemetry,
            push_back,
            stalls: None,
        }
    }

    /// The same gate, reporting through `telemetry`.
    pub(crate) fn with_telemetry(self, telemetry: Arc<InstanceTelemetry>) -> Self {
        Self { telemetry, ..self }
    }

    /// The same gate, judging timeouts with the client's record of its own stalls.
    pub(crate) fn with_stalls(self, stalls: Option<StallMonitor>) -> Self {
        Self { stalls, ..self }
    }

    /// The instance's breaker.
    pub(crate) fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// The instance's reporting (its address, id and figures).
    pub(crate) fn telemetry(&self) -> &Arc<InstanceTelemetry> {
        &self.telemetry
    }

    /// The instance's address.
    pub(crate) fn address(&self) -> &str {
        self.telemetry.address()
    }

    /// Asks the breaker for a permit at `now`, reporting the transition this causes (an Open
    /// breaker whose delay has passed moves to Retest).
    #[inline]
    pub(crate) fn acquire(&self, now: Instant) -> Option<Permit> {
        let (permit, transition) = self.breaker.try_acquire(now);
        if let Some(t) = transition {
            self.telemetry.transition(&self.breaker, t);
        }
        permit
    }

    /// Logs `{service} using instance {id}: {address}` for an attempt about to be sent.
    #[inline]
    pub(crate) fn sending(&self) {
        self.telemetry.using();
    }

    /// Keeps the client's stall monitor (if it has one) awake from `now` until `deadline`,
    /// an attempt's: until then a timeout may need to know whether the client was running.
    #[inline]
    pub(crate) fn watch_stalls_until(&self, now: Instant, deadline: Instant) {
        if let Some(stalls) = &self.stalls {
            stalls.watch_until(now, deadline);
        }
    }

    /// Counts a request the breaker turned away.
    pub(crate) fn rejected(&self) {
        self.telemetry.rejected();
    }

    /// Records the outcome of the attempt sent at `started` under `permit`: the metrics and
    /// figures, then the breaker, reporting the transition this causes. Returns the moment
    /// it was recorded at.
    ///
    /// [`Outcome::Overloaded`] is neither a success nor a failure for the breaker: a push-back
    /// says nothing of the instance's health, so the permit is dropped unrecorded.
    #[inline]
    pub(crate) fn record(&self, permit: Permit, outcome: Outcome, started: Instant) -> Instant {
        let now = self.count(outcome, started);
        if outcome == Outcome::Overloaded {
            return now;
        }
        if let Some(t) = permit.record(outcome != Outcome::Failure, now) {
            self.telemetry.transition(&self.breaker, t);
        }
        now
    }

    /// After an attempt that could not connect was recorded: if that left the breaker open,
    /// the instance may be gone, so the service's discovery is asked to look again.
    pub(crate) fn connect_failed(&self) {
        if self.breaker.state() == super::BreakerState::Open {
            self.telemetry.unreachable();
        }
    }

    /// Avoids the instance from `now` for what it asked in `answer`, which pushed back: its
    /// `Retry-After` (see [`push_back`](Self::push_back)), if there is an answer to read
    /// rather than an error.
    pub(crate) fn push_back_by<B, E>(&self, now: Instant, answer: &Result<http::Response<B>, E>) {
        let headers = answer.as_ref().ok().map(http::Response::headers);
        self.push_back(now, headers.and_then(retry_after_of));
    }

    /// Avoids the instance from `now` for what it `asked` when it pushed back (its
    /// `Retry-After`, capped; a short default if it did not say), and logs it.
    pub(crate) fn push_back(&self, now: Instant, asked: Option<Duration>) {
        let wait = self.push_back.push_back(now, asked);
        self.telemetry.pushed_back(asked, wait);
    }

    /// How much longer the instance is avoided at `now` after it pushed back; `None` if it
    /// is not.
    #[inline]
    pub(crate) fn avoided_for(&self, now: Instant) -> Option<Duration> {
        self.push_back.remaining(now)
    }

    /// Counts the outcome of the attempt sent at `started` in the metrics and figures only,
    /// for an attempt whose permit is dropped unrecorded (the breaker is not told). Returns
    /// the moment it was counted at.
    #[inline]
    pub(crate) fn count(&self, outcome: Outcome, started: Instant) -> Instant {
        let now = Instant::now();
        self.telemetry
            .request(outcome, now.saturating_duration_since(started));
        now
    }

    /// Whether the client itself was running for less than nine tenths of `limit` since
    /// `started` (see [`StallMonitor`]): then an attempt sent at `started` that timed out
    /// after `limit` says nothing about the instance, and its permit is dropped unrecorded.
    /// Logs it when so.
    pub(crate) fn client_stalled(&self, started: Instant, limit: Duration) -> bool {
        let Some(stalls) = &self.stalls else {
            return false;
        };
        let now = Instant::now();
        let ran = stalls.running_within(started, limit, now);
        let (service, id) = (self.telemetry.service(), self.telemetry.id());
        let (ran_ms, late_ms) = (
            ran.as_millis(),
            (now - started).saturating_sub(limit).as_millis(),
        );
        let excused = StallMonitor::excuses_running(ran, limit);
        if excused {
            tracing::debug!(service = %service, instance = %id, ran_ms, late_ms,
                "{service} attempt on instance {id} timed out while the client ran {ran_ms} ms of its limit: not held against the instance");
        } else {
            tracing::debug!(service = %service, instance = %id, ran_ms, late_ms,
                "{service} attempt on instance {id} timed out while the client ran {ran_ms} ms of its limit (judged {late_ms} ms after it): held against the instance");
        }
        excused
    }
}
