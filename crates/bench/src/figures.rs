//! What a set of requests shows: latency percentiles, failures, and the share of answers
//! each instance gave (ratings answers name the instance, whoever sent the request: our
//! client, tower, or a proxy).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::latency::Latencies;
use crate::load::Sample;

/// Figures over some requests.
pub struct Figures {
    /// Every request's latency, failed ones included.
    pub latencies: Latencies,
    /// Requests answered.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Answers per instance number.
    pub by_instance: BTreeMap<u16, u64>,
    /// Latencies of the answers each instance gave.
    pub latency_by_instance: BTreeMap<u16, Latencies>,
}

impl Figures {
    /// The figures of `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Figures {
        let mut f = Figures {
            latencies: Latencies::new(),
            ok: 0,
            failed: 0,
            by_instance: BTreeMap::new(),
            latency_by_instance: BTreeMap::new(),
        };
        for s in samples {
            f.latencies.record(s.latency);
            match s.instance {
                Some(n) => {
                    f.ok += 1;
                    *f.by_instance.entry(n).or_default() += 1;
                    f.latency_by_instance
                        .entry(n)
                        .or_default()
                        .record(s.latency);
                }
                None => f.failed += 1,
            }
        }
        f
    }

    /// The figures of the samples that started in `from..to`.
    pub fn between(samples: &[Sample], from: Duration, to: Duration) -> Figures {
        Figures::of(samples.iter().filter(|s| s.start >= from && s.start < to))
    }

    /// Instance `n`'s share of the answers (0..=1), or `None` with no answer at all.
    pub fn share(&self, n: u16) -> Option<f64> {
        (self.ok > 0)
            .then(|| self.by_instance.get(&n).copied().unwrap_or(0) as f64 / self.ok as f64)
    }

    /// The median latency.
    pub fn p50(&self) -> Duration {
        self.latencies.percentile(50.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.latencies.percentile(99.0)
    }
}

/// A share as `12.3 %`, or `n/a`.
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "n/a".to_string(), |s| format!("{:.1} %", 100.0 * s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start_ms: u64, latency_ms: u64, instance: Option<u16>) -> Sample {
        Sample {
            start: Duration::from_millis(start_ms),
            latency: Duration::from_millis(latency_ms),
            instance,
        }
    }

    #[test]
    fn shares_count_answers_only() {
        let samples = [
            sample(0, 1, Some(1)),
            sample(1, 1, Some(2)),
            sample(2, 1, Some(2)),
            sample(3, 1, Some(3)),
            sample(4, 900, None),
        ];
        let f = Figures::of(&samples);
        assert_eq!((f.ok, f.failed), (4, 1));
        assert_eq!(f.share(2), Some(0.5));
        assert_eq!(f.share(7), Some(0.0));
        assert_eq!(f.latency_by_instance[&2].count(), 2);
        let later = Figures::between(&samples, Duration::from_millis(2), Duration::from_millis(4));
        assert_eq!(later.ok, 2);
        assert_eq!(Figures::of(&[]).share(1), None);
        assert_eq!(percent(Some(0.1234)), "12.3 %");
    }
}
