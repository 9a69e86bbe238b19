//! Logs trouble with the registry once when it starts and once when it ends, never per
//! attempt.
//!
//! Three kinds of trouble read differently to an operator, so each gets its own message:
//! the registry cannot be reached, it refuses this instance (a 4xx such as a wrong token),
//! or the instance id is still held under the live lease of an earlier process (409), in
//! which case the registration waits for that lease to run out. A change of kind in the
//! middle of an outage is logged too.

use tokio::time::Instant;

use super::Labels;
use super::error::RegistrationError;

/// What kept the registration from the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// No answer (refused connection, timeout) or a 5xx.
    Unreachable,
    /// A 4xx other than 409.
    Refused,
    /// 409: another lease holds the id.
    LeaseHeld,
}

impl Trouble {
    fn of(error: &RegistrationError) -> Self {
        match error {
            RegistrationError::LeaseHeld { .. } => Self::LeaseHeld,
            error if error.is_refusal() => Self::Refused,
            _ => Self::Unreachable,
        }
    }
}

/// Whether we are in an outage, since when, and of which kind.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    /// When the first failed call of the current outage happened, and the latest kind.
    since: Option<(Instant, Trouble)>,
}

impl OutageLog {
    /// Records a failed call: a `warn` event if it starts an outage or changes its kind,
    /// `debug` otherwise.
    pub(crate) fn failed(&mut self, labels: &Labels, error: &RegistrationError) {
        labeled_event!(tracing::Level::DEBUG, labels, error = %error, "registry call failed");
        let trouble = Trouble::of(error);
        let since = match self.since {
            Some((_, current)) if current == trouble => return,
            Some((since, _)) => since,
            None => Instant::now(),
        };
        self.since = Some((since, trouble));
        match (trouble, error) {
            (Trouble::LeaseHeld, RegistrationError::LeaseHeld { retry_after, .. }) => {
                let retry_after_secs = retry_after.map(|after| after.as_secs());
                match retry_after_secs {
                    Some(secs) => labeled_event!(
                        tracing::Level::WARN,
                        labels,
                        retry_after_secs = secs,
                        "instance {} is still registered by an earlier process; \
                         retrying when its lease expires in {secs} s",
                        labels.instance
                    ),
                    None => labeled_event!(
                        tracing::Level::WARN,
                        labels,
                        error = %error,
                        "instance {} is still registered by an earlier process; \
                         retrying until its lease expires",
                        labels.instance
                    ),
                }
            }
            (Trouble::Refused, _) => labeled_event!(
                tracing::Level::WARN,
                labels,
                error = %error,
                "registry refused this instance; retrying in the background"
            ),
            _ => labeled_event!(
                tracing::Level::WARN,
                labels,
                error = %error,
                "registry unreachable; retrying in the background"
            ),
        }
    }

    /// Records a successful call: an `info` event if it ends an outage.
    pub(crate) fn recovered(&mut self, labels: &Labels) {
        let Some((since, trouble)) = self.since.take() else {
            return;
        };
        let down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        if trouble == Trouble::LeaseHeld {
            labeled_event!(
                tracing::Level::INFO,
                labels,
                down_ms,
                "instance {} holds its registration again",
                labels.instance
            );
        } else {
            labeled_event!(
                tracing::Level::INFO,
                labels,
                down_ms,
                "registry reachable again"
            );
        }
    }
}
