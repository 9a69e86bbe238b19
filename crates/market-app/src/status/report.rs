//! The `/api/status` answer, shared by the market (which writes it) and `watch` (which
//! reads it).

use serde::{Deserialize, Serialize};

/// The market's view of the ratings service: `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The upstream service's name (`ratings`).
    pub service: String,
    /// Every instance discovery knows right now, by id.
    pub instances: Vec<InstanceReport>,
    /// How the ratings shown since the market started were had.
    pub ratings: SourceTotals,
}

/// One ratings instance as the market sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Instance id (its number, for the ratings demo).
    pub id: String,
    /// Base URL the market calls.
    pub address: String,
    /// Breaker state: `closed`, `open` or `retest`.
    pub state: String,
    /// Calls this instance answered or failed, as far as the market knows (`answered +
    /// errors`).
    pub requests: u64,
    /// Failures that opened (or re-opened) this instance's breaker. With the default
    /// `--failure-limit 1` that is every failure.
    pub errors: u64,
    /// Median of the recent answered calls' latencies, in milliseconds (`null` before the
    /// first one).
    pub latency_p50_ms: Option<f64>,
    /// Mean of the same latencies.
    pub latency_mean_ms: Option<f64>,
    /// How many recent calls those two figures are over.
    pub latency_samples: usize,
}

/// Ratings shown, by where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTotals {
    /// Fetched from an instance.
    pub live: u64,
    /// From the market's fresh cache.
    pub cache: u64,
    /// Every instance failed; the last good rating was shown.
    pub stale: u64,
    /// No rating could be had ("no rating yet").
    pub none: u64,
}
