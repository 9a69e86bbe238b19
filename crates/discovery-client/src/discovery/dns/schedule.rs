//! When to look a name up again, and what each answer does to the published set.
//!
//! After an answer with records the next lookup is due when their shortest TTL runs out,
//! clamped to `[min_ttl, max_ttl]`. After a failure the last set stays and the lookup is
//! retried after `min_ttl`, doubling up to `max_ttl`. After an empty answer the last set
//! stays until `empty_grace` has passed since the first empty answer in a row, then the set
//! is emptied; meanwhile the name is looked up again after its negative TTL (clamped), and
//! in time for the grace to end. The first failure or empty answer of a run is reported
//! once as an outage, and the next answer with records as the recovery.
//!
//! Between lookups the schedule also waits on the sink's
//! [`refresh_requested`](crate::discovery::DiscoverySink::refresh_requested): the client
//! could not connect to an instance, which may be gone, so the name is looked up again at
//! once, but never sooner than `min_ttl` after the last lookup ended.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use super::lookup::{Answer, Lookup, LookupError};
use crate::Instance;
use crate::discovery::DiscoverySink;

/// The timing rules of a [`DnsDiscovery`](super::DnsDiscovery).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// The shortest time between the end of one lookup and the start of the next.
    pub(crate) min_ttl: Duration,
    /// The longest time between two lookups while the name answers.
    pub(crate) max_ttl: Duration,
    /// How long the last set is kept while the name answers with no records.
    pub(crate) empty_grace: Duration,
    /// The most one lookup may take before it counts as failed.
    pub(crate) lookup_limit: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(30),
            empty_grace: Duration::from_secs(30),
            lookup_limit: Duration::from_secs(5),
        }
    }
}

impl Schedule {
    /// `ttl` within `[min_ttl, max_ttl]` (`max_ttl` never below `min_ttl`).
    fn clamp(&self, ttl: Duration) -> Duration {
        ttl.min(self.max_ttl).max(self.min_ttl)
    }

    /// Looks `name` up with `lookup` on this schedule and publishes into `sink`, until
    /// nobody listens.
    pub(crate) async fn follow(self, lookup: Arc<dyn Lookup>, name: String, sink: DiscoverySink) {
        let mut follower = Follower {
            schedule: self,
            name,
            sink,
            last: Vec::new(),
            in_outage: false,
            failures: 0,
            grace_until: None,
        };
        while !follower.sink.is_closed() {
            // This lookup answers every refresh asked for until now.
            let _ = follower.sink.refresh_requested().now_or_never();
            let limit = follower.schedule.lookup_limit;
            let result = match tokio::time::timeout(limit, lookup.lookup()).await {
                Ok(result) => result,
                Err(_) => Err(LookupError::Failed(format!(
                    "{}: no answer within {limit:?}",
                    follower.name
                ))),
            };
            let now = Instant::now();
            let wait = follower.answered(result, now);
            if follower.sink.is_closed() {
                return;
            }
            let due = now + wait;
            let soonest = now + follower.schedule.min_ttl;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = follower.sink.refresh_requested() => {
                    // The client could not connect to an instance: look again now, but not
                    // sooner than min_ttl after this lookup.
                    tokio::time::sleep_until(due.min(soonest)).await;
                }
            }
        }
    }
}

/// The state of one name's schedule between lookups.
struct Follower {
    /// The timing rules.
    schedule: Schedule,
    /// The name looked up, for outage reasons.
    name: String,
    /// Where sets, outages and recoveries go.
    sink: DiscoverySink,
    /// The last answer with records: what stays in use through failures and, for the
    /// grace period, through empty answers.
    last: Vec<Instance>,
    /// Whether an outage has been reported and no recovery since.
    in_outage: bool,
    /// Lookups failed in a row, for the backoff.
    failures: u32,
    /// When the last set is dropped if the name still answers with no records.
    grace_until: Option<Instant>,
}

impl Follower {
    /// Applies a lookup's result, which came at `now`; returns when to look again.
    fn answered(&mut self, result: Result<Answer, LookupError>, now: Instant) -> Duration {
        match result {
            Ok(answer) if !answer.instances.is_empty() => {
                if self.in_outage {
                    self.in_outage = false;
                    self.sink.recovered();
                }
                self.failures = 0;
                self.grace_until = None;
                self.last = answer.instances;
                self.sink.publish(self.last.clone());
                self.schedule.clamp(answer.ttl)
            }
            Ok(answer) => {
                let reason = format!("{}: no records", self.name);
                self.empty(reason, Some(answer.ttl), now)
            }
            Err(LookupError::Empty { reason, ttl }) => self.empty(reason, ttl, now),
            Err(LookupError::Failed(reason)) => {
                let kept = self.last.len();
                self.report_outage(format!("{reason}; keeping the last {kept} instances"));
                let backoff = self
                    .schedule
                    .min_ttl
                    .saturating_mul(2u32.saturating_pow(self.failures.min(16)));
                self.failures = self.failures.saturating_add(1);
                backoff.min(self.schedule.max_ttl.max(self.schedule.min_ttl))
            }
        }
    }

    /// An answer with no records at `now`: reports the outage once, keeps the last set
    /// until the grace ends, then publishes the empty set. Returns when to look again.
    fn empty(&mut self, reason: String, ttl: Option<Duration>, now: Instant) -> Duration {
        let grace = self.schedule.empty_grace;
        let kept = self.last.len();
        self.report_outage(if kept == 0 {
            reason
        } else {
            format!("{reason}; keeping the last {kept} instances for {grace:?}")
        });
        self.failures = 0;
        let wait = self.schedule.clamp(ttl.unwrap_or(self.schedule.min_ttl));
        let until = *self.grace_until.get_or_insert(now + grace);
        if self.last.is_empty() || now >= until {
            // Nothing (left) to keep: the service has no instances.
            self.last.clear();
            self.sink.publish(Vec::new());
            return wait;
        }
        // Look again in time to end the grace.
        wait.min(until.saturating_duration_since(now))
    }

    /// Reports `reason` as an outage, unless one is reported already.
    fn report_outage(&mut self, reason: String) {
        if !self.in_outage {
            self.in_outage = true;
            self.sink.outage(reason);
        }
    }
}
