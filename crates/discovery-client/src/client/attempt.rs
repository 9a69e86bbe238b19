//! One attempt: a request sent to one instance under its breaker's permit, then judged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::decode::{Check, Decode, Refused};
use super::endpoints::Endpoint;
use crate::Error;
use crate::balance::InFlightGuard;
use crate::breaker::{Gate, Permit};
use crate::classify::{self, Classify, Outcome};
use crate::transport::{BoxTransport, SendError, Sending};

/// An attempt under way on one instance.
pub(super) struct Sent {
    /// The instance, as an index into the call's endpoints.
    pub(super) index: usize,
    /// The instance's answer (or why there is none), bounded by `limit`.
    pub(super) response: Sending,
    /// The breaker's permit, whose outcome is recorded when the attempt is judged; dropped
    /// unrecorded if the attempt is (the call was dropped), which frees a probe slot.
    permit: Permit,
    /// Counts the attempt in the instance's requests in flight until it ends.
    in_flight: InFlightGuard,
    /// When it was sent.
    pub(super) started: Instant,
    /// The time it was given (the per-attempt timeout, or less before a deadline).
    limit: Duration,
}

/// An attempt that ended, judged (and recorded on its breaker).
pub(super) struct Judged<T> {
    /// The instance, as an index into the call's endpoints.
    pub(super) index: usize,
    /// How the classifier judged it.
    pub(super) outcome: Outcome,
    /// The answer, with the decoder's value for a 2xx; or why there is none.
    pub(super) result: Result<(http::Response<Bytes>, Option<T>), Error>,
    /// From sending to judging.
    pub(super) elapsed: Duration,
}

impl Sent {
    /// Sends `request` to `endpoints[index]` through `transport` under `permit` at `now`,
    /// allowing it `limit`: logs `{service} using instance {id}: {address}` and counts the
    /// attempt in flight.
    pub(super) fn start(
        index: usize,
        endpoint: &Endpoint,
        permit: Permit,
        transport: &BoxTransport,
        request: http::Request<Bytes>,
        limit: Duration,
        now: Instant,
    ) -> Self {
        endpoint.gate.sending();
        endpoint.gate.watch_stalls_until(now, now + limit);
        Self {
            index,
            in_flight: endpoint.load.start(),
            response: transport.send(request, now + limit),
            permit,
            started: now,
            limit,
        }
    }

    /// Judges what the attempt got (`sent`): an error names the instance; a 2xx body goes to
    /// `decode` (a body it refuses is [`Error::Decode`]); then the classifier decides, and
    /// the outcome goes to the breaker, the metrics and the instance's figures. An instance
    /// that pushed back ([`Outcome::Overloaded`]) is avoided for its `Retry-After`.
    ///
    /// `timed_out` is whether an attempt of the same call has timed out already, and is set
    /// when this one does: only a call's first timeout is recorded on a breaker. A call that
    /// times out on every instance it tries is more likely a slow request than sick
    /// instances, so it opens at most one breaker; its later timeouts (but a Retest probe's)
    /// count in the metrics and the figures, and their permits are dropped unrecorded.
    ///
    /// A timeout while the client itself was not running (see `Gate::client_stalled`) is
    /// treated the same way, and does not set `timed_out`: it says nothing of the instance.
    pub(super) fn judge<D: Decode>(
        self,
        sent: Result<http::Response<Bytes>, SendError>,
        gate: &Gate,
        classifier: &dyn Classify,
        decode: D,
        timed_out: &mut bool,
    ) -> Judged<D::Output> {
        // The attempt has ended: it leaves the in-flight count now.
        let load = self.in_flight.load().clone();
        drop(self.in_flight);
        let address = gate.address();
        let connect_failed =
            matches!(&sent, Err(SendError::Failed(error)) if is_connect_failure(&**error));
        let (result, value) = match sent {
            Ok(answer) if answer.status().is_success() => match decode.decode(answer.body()) {
                Ok(value) => (Ok(answer), Some(value)),
                Err(refused) => (Err(refused.into_error(address)), None),
            },
            Ok(answer) => (Ok(answer), None),
            Err(SendError::TimedOut) => {
                let (address, timeout) = (address.to_string(), self.limit);
                (Err(Error::Timeout { address, timeout }), None)
            }
            Err(SendError::Failed(error)) => (Err(Error::from_transport(error, address)), None),
        };
        let outcome = classify::judge(classifier, &result);
        let timeout = outcome == Outcome::Failure && matches!(result, Err(Error::Timeout { .. }));
        let probe = self.permit.is_probe();
        // A timeout while the client itself was not running says nothing of the instance.
        let excused = timeout && gate.client_stalled(self.started, self.limit);
        // A Retest probe's outcome is always recorded: the probe is there to find out.
        let spared = timeout && !excused && std::mem::replace(timed_out, true) && !probe;
        let judged_at = if spared || excused {
            gate.count(outcome, self.started)
        } else {
            gate.record(self.permit, outcome, self.started)
        };
        if connect_failed {
            gate.connect_failed();
        }
        if outcome == Outcome::Overloaded {
            gate.push_back_by(judged_at, &result);
        } else if outcome != Outcome::Failure {
            // An answer: how fast the instance answers (a push-back says nothing of it).
            load.observe(judged_at.saturating_duration_since(self.started), judged_at);
        }
        if probe && matches!(outcome, Outcome::Success | Outcome::CallerError) {
            // Its breaker closed: its share ramps up again (with slow start).
            load.restart_ramp(judged_at);
        }
        Judged {
            index: self.index,
            outcome,
            result: result.map(|answer| (answer, value)),
            elapsed: judged_at.saturating_duration_since(self.started),
        }
    }

    /// Lets the attempt run to its own end in a task of its own, still counted in flight,
    /// and judges it then with `check` (the call's decoder, without the value): its outcome
    /// is recorded on the breaker like any other's, but for a timeout when `timed_out` (its
    /// call had one already).
    pub(super) fn detach(
        mut self,
        endpoint: &Endpoint,
        classifier: Arc<dyn Classify>,
        check: fn(&[u8]) -> Result<(), Refused>,
        mut timed_out: bool,
    ) {
        let gate = endpoint.gate.clone();
        tokio::spawn(async move {
            let sent = (&mut self.response).await;
            let judged = self.judge(sent, &gate, &*classifier, Check(check), &mut timed_out);
            let telemetry = gate.telemetry();
            let (service, id, outcome) = (telemetry.service(), telemetry.id(), judged.outcome);
            tracing::debug!(service = %service, instance = %id, outcome = ?outcome,
                "{service} hedged-over attempt on instance {id} ended: {outcome:?}");
        });
    }
}

/// Whether a transport error is a failure to connect: hyper-util's connect errors, or a
/// refused, reset-before-connect or unreachable socket anywhere in the chain. An instance
/// that cannot be connected to may be gone, where one that timed out may only be slow.
fn is_connect_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}
