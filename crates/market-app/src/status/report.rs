//! The `/api/status` answer, shared by the market (which writes it) and `watch` (which
//! reads it).
//!
//! ```json
//! {
//!   "service": "ratings",
//!   "instances": [
//!     {"id": "1", "address": "http://127.0.0.1:8001", "state": "closed", "in_flight": 0,
//!      "requests": 12, "failures": 0, "latency_p50_ms": 1.23, "latency_p99_ms": 4.56,
//!      "latency_estimate_ms": 0.98, "share_percent": 100.0, "pushed_back_ms": null}
//!   ],
//!   "ratings": {"live": 12, "cache": 0, "stale": 0, "none": 0}
//! }
//! ```

use std::cmp::Ordering;
use std::time::Duration;

use discovery_client::InstanceStatus;
use serde::{Deserialize, Serialize};

use crate::ratings::SourceCounts;

/// The market's view of the ratings service: `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The upstream service's name (`ratings`).
    pub service: String,
    /// Every instance the client knows right now, by id (numeric ids in numeric order).
    pub instances: Vec<InstanceReport>,
    /// How the ratings shown since the market started were had.
    pub ratings: SourceCounts,
}

impl StatusReport {
    /// The report for `service` from the client's `instances` and the `ratings` shown.
    pub fn new(service: &str, instances: &[InstanceStatus], ratings: SourceCounts) -> Self {
        let mut instances: Vec<InstanceReport> =
            instances.iter().map(InstanceReport::from).collect();
        instances.sort_by(|a, b| id_order(&a.id, &b.id));
        Self {
            service: service.to_owned(),
            instances,
            ratings,
        }
    }
}

/// One ratings instance as the client sees it ([`InstanceStatus`], with latencies in
/// milliseconds). The counts are kept by address since the client first saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Instance id (its number, for the ratings demo).
    pub id: String,
    /// Base URL the market calls.
    pub address: String,
    /// Breaker state: `closed`, `open` or `retest`.
    pub state: String,
    /// Attempts sent to it that have not ended yet.
    pub in_flight: usize,
    /// Attempts sent to it whose outcome is known. A call retried or hedged elsewhere counts
    /// once on each instance it tried.
    pub requests: u64,
    /// Of those, the ones that were its failures: timeouts, transport errors, 5xx answers,
    /// bodies that did not decode.
    pub failures: u64,
    /// Median duration of its latest attempts (up to 128), in milliseconds to a hundredth;
    /// `null` before the first.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub latency_p99_ms: Option<f64>,
    /// The answer time the balancer weighs it by (its quickest recent answer), in
    /// milliseconds to a hundredth; `null` before its first counted answer.
    #[serde(default)]
    pub latency_estimate_ms: Option<f64>,
    /// Its share of the balancer's turns, in percent of a full share to a tenth: below 100
    /// while it answers much slower than the fastest instance, or ramps up after slow start.
    #[serde(default = "full_share")]
    pub share_percent: f64,
    /// How much longer it is left alone after it pushed back (429, or 503 with
    /// `Retry-After`), in milliseconds; `null` when it is not.
    #[serde(default)]
    pub pushed_back_ms: Option<f64>,
}

/// A full share, for reports from a market that did not send one.
fn full_share() -> f64 {
    100.0
}

impl From<&InstanceStatus> for InstanceReport {
    fn from(status: &InstanceStatus) -> Self {
        Self {
            id: status.id.clone(),
            address: status.address.clone(),
            state: status.state.as_str().to_owned(),
            in_flight: status.in_flight,
            requests: status.requests,
            failures: status.failures,
            latency_p50_ms: status.latency_p50.map(millis),
            latency_p99_ms: status.latency_p99.map(millis),
            latency_estimate_ms: status.latency_estimate.map(millis),
            share_percent: (status.share * 1000.0).round() / 10.0,
            pushed_back_ms: status.pushed_back_for.map(millis),
        }
    }
}

/// Numeric ids in numeric order (2 before 10), then anything else by text.
pub(crate) fn id_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Milliseconds, to a hundredth.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use discovery_client::breaker::BreakerState;

    use super::*;

    fn status(id: &str, state: BreakerState, latency: Option<(u64, u64)>) -> InstanceStatus {
        InstanceStatus {
            id: id.into(),
            address: format!("http://h{id}"),
            state,
            in_flight: 2,
            requests: 7,
            failures: 3,
            latency_p50: latency.map(|(p50, _)| Duration::from_micros(p50)),
            latency_p99: latency.map(|(_, p99)| Duration::from_micros(p99)),
            latency_estimate: latency.map(|(p50, _)| Duration::from_micros(p50 / 2)),
            share: 0.0312,
            pushed_back_for: latency.map(|_| Duration::from_millis(1500)),
        }
    }

    #[test]
    fn each_instance_is_reported_as_the_client_sees_it() {
        let totals = SourceCounts {
            live: 4,
            cache: 0,
            stale: 1,
            none: 1,
        };
        let report = StatusReport::new(
            "ratings",
            &[
                status("10", BreakerState::Closed, None),
                status("b", BreakerState::Closed, None),
                status("2", BreakerState::Open, Some((1_234, 56_789))),
                status("1", BreakerState::Retest, None),
            ],
            totals,
        );
        assert_eq!(report.service, "ratings");
        assert_eq!(report.ratings, totals);
        let ids: Vec<&str> = report.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "10", "b"], "numeric ids in numeric order");
        assert_eq!(
            report.instances[1],
            InstanceReport {
                id: "2".into(),
                address: "http://h2".into(),
                state: "open".into(),
                in_flight: 2,
                requests: 7,
                failures: 3,
                latency_p50_ms: Some(1.23),
                latency_p99_ms: Some(56.79),
                latency_estimate_ms: Some(0.62),
                share_percent: 3.1,
                pushed_back_ms: Some(1500.0),
            }
        );
        assert_eq!(report.instances[0].state, "retest");
        assert_eq!(report.instances[0].latency_p50_ms, None);
    }

    #[test]
    fn the_json_has_the_documented_fields_and_reads_back() {
        let report = StatusReport::new(
            "ratings",
            &[status("1", BreakerState::Closed, None)],
            SourceCounts::default(),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "service": "ratings",
                "instances": [{
                    "id": "1", "address": "http://h1", "state": "closed", "in_flight": 2,
                    "requests": 7, "failures": 3, "latency_p50_ms": null, "latency_p99_ms": null,
                    "latency_estimate_ms": null, "share_percent": 3.1, "pushed_back_ms": null,
                }],
                "ratings": {"live": 0, "cache": 0, "stale": 0, "none": 0},
            })
        );
        assert_eq!(
            serde_json::from_value::<StatusReport>(json).unwrap(),
            report
        );
    }
}
