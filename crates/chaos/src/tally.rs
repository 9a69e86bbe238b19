//! What the load saw, request by request, summed up.

use std::time::Duration;

/// How many failure reasons are kept as examples.
const KEPT_FAILURES: usize = 5;

/// What one request amounted to, from the user's side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Why the request failed (a transport error, a non-200 status, a page without its four
    /// items), or `None` if the page was served.
    pub failure: Option<String>,
    /// At least one rating was the market's stale fallback.
    pub stale: bool,
    /// At least one item showed "no rating yet".
    pub unrated: bool,
    /// At least one rating differed from the true one (say, garbage shown as a rating).
    pub wrong: bool,
}

impl Verdict {
    /// A failed request.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            failure: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// The sum of the verdicts of one load run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed: transport errors, timeouts, non-200 answers, pages without their
    /// four items.
    pub failed: u64,
    /// Served answers with at least one stale rating.
    pub stale: u64,
    /// Served answers with at least one item without a rating.
    pub unrated: u64,
    /// Served answers with at least one rating that is not the true one.
    pub wrong: u64,
    /// Requests not sent because the concurrency cap was reached (the market fell behind).
    pub shed: u64,
    /// How long the load ran.
    pub elapsed: Duration,
    /// Every request's latency, in the order they finished.
    latencies: Vec<Duration>,
    /// The first few failure reasons, for the report.
    pub failures: Vec<String>,
}

impl Tally {
    /// Adds one request's verdict and latency.
    pub fn record(&mut self, verdict: Verdict, latency: Duration) {
        self.sent += 1;
        self.latencies.push(latency);
        if let Some(reason) = verdict.failure {
            self.failed += 1;
            if self.failures.len() < KEPT_FAILURES {
                self.failures.push(reason);
            }
            return;
        }
        self.stale += u64::from(verdict.stale);
        self.unrated += u64::from(verdict.unrated);
        self.wrong += u64::from(verdict.wrong);
    }

    /// The slowest request.
    pub fn max_latency(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    /// The latency below which `fraction` (0..=1) of the requests finished.
    pub fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let last = sorted.len() - 1;
        let rank = (fraction.clamp(0.0, 1.0) * last as f64).round() as usize;
        sorted[rank.min(last)]
    }

    /// Requests per second actually sent.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_verdicts_and_latencies() {
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.record(Verdict::default(), Duration::from_millis(ms));
        }
        assert_eq!(tally.percentile(0.0), Duration::from_millis(1));
        assert_eq!(tally.percentile(0.99), Duration::from_millis(99));
        assert_eq!(tally.percentile(1.0), Duration::from_millis(100));
        tally.record(
            Verdict {
                stale: true,
                unrated: true,
                ..Verdict::default()
            },
            Duration::from_millis(500),
        );
        tally.record(Verdict::failed("status 502"), Duration::from_millis(2));
        assert_eq!((tally.sent, tally.failed, tally.stale), (102, 1, 1));
        assert_eq!((tally.unrated, tally.wrong), (1, 0));
        assert_eq!(tally.max_latency(), Duration::from_millis(500));
        assert_eq!(tally.failures, vec!["status 502".to_string()]);
    }
}
