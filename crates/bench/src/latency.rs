//! Latency distributions: an HDR histogram (1 µs to 60 s, 3 significant digits) and the
//! percentiles the reports show.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency distribution in microseconds.
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty distribution.
    pub fn new() -> Self {
        // 1 µs .. 60 s at 3 significant digits: fixed bounds that are always valid.
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|_| unreachable!("constant bounds are valid"));
        Self { histogram }
    }

    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(micros.clamp(1, 60_000_000));
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at percentile `p` (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        Duration::from_micros(self.histogram.value_at_percentile(p))
    }

    /// The largest latency.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.histogram.max())
    }

    /// How many latencies were at least `threshold`.
    pub fn at_least(&self, threshold: Duration) -> u64 {
        let micros = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .iter_recorded()
            .filter(|v| v.value_iterated_to() >= micros)
            .map(|v| v.count_at_value())
            .sum()
    }
}

/// A duration for a table: `812 µs`, `12.3 ms`, `1.02 s`.
pub fn show(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 100_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else if micros < 1_000_000.0 {
        format!("{:.0} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_thresholds() {
        let mut l = Latencies::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.percentile(50.0).as_millis();
        assert!((49..=51).contains(&p50), "{p50}");
        assert_eq!(l.at_least(Duration::from_millis(91)), 10);
        assert!(l.max() >= Duration::from_millis(99));
        assert_eq!(show(Duration::from_micros(812)), "812 µs");
        assert_eq!(show(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(show(Duration::from_millis(1020)), "1.02 s");
    }
}
