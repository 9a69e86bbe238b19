//! Logs a registry outage once when it starts and once when it ends, never per attempt.

use tokio::time::Instant;

use super::Labels;
use super::error::RegistrationError;

/// Whether we are in an outage, and since when.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    /// When the first failed call of the current outage happened.
    since: Option<Instant>,
}

impl OutageLog {
    /// Records a failed call: a `warn` event if it starts an outage, `debug` otherwise.
    pub(crate) fn failed(&mut self, labels: &Labels, error: &RegistrationError) {
        labeled_event!(tracing::Level::DEBUG, labels, error = %error, "registry call failed");
        if self.since.is_some() {
            return;
        }
        self.since = Some(Instant::now());
        if error.is_refusal() {
            labeled_event!(
                tracing::Level::WARN,
                labels,
                error = %error,
                "registry refused this instance; retrying in the background"
            );
        } else {
            labeled_event!(
                tracing::Level::WARN,
                labels,
                error = %error,
                "registry unreachable; retrying in the background"
            );
        }
    }

    /// Records a successful call: an `info` event if it ends an outage.
    pub(crate) fn recovered(&mut self, labels: &Labels) {
        if let Some(since) = self.since.take() {
            let down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            labeled_event!(
                tracing::Level::INFO,
                labels,
                down_ms,
                "registry reachable again"
            );
        }
    }
}
