//! A `metrics` recorder for tests: keeps every counter, gauge and histogram by name and
//! labels, so tests can assert on what the library recorded. Install it for the current
//! thread with `metrics::set_default_local_recorder` (tokio's default test runtime runs every
//! task on that thread).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

#[derive(Debug, Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().expect("samples lock").push(value);
    }
}

/// Every metric by `name{label=value,...}`, labels sorted by name.
#[derive(Debug, Default)]
pub(crate) struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

/// `name{a=1,b=2}` with the labels sorted by name.
pub(crate) fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn render(key: &Key) -> String {
    let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    self::key(key.name(), &labels)
}

impl TestRecorder {
    /// A counter's value (0 if never registered).
    pub(crate) fn counter(&self, key: &str) -> u64 {
        let counters = self.counters.lock().expect("lock");
        counters.get(key).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// A gauge's value, if registered.
    pub(crate) fn gauge(&self, key: &str) -> Option<f64> {
        let gauges = self.gauges.lock().expect("lock");
        gauges
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    /// How many samples a histogram has.
    pub(crate) fn samples(&self, key: &str) -> usize {
        let histograms = self.histograms.lock().expect("lock");
        histograms
            .get(key)
            .map_or(0, |h| h.0.lock().expect("lock").len())
    }

    /// Every registered key, for failure messages.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .counters
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect();
        keys.extend(self.gauges.lock().expect("lock").keys().cloned());
        keys.extend(self.histograms.lock().expect("lock").keys().cloned());
        keys
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().expect("lock");
        Counter::from_arc(Arc::clone(counters.entry(render(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().expect("lock");
        Gauge::from_arc(Arc::clone(gauges.entry(render(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().expect("lock");
        Histogram::from_arc(Arc::clone(histograms.entry(render(key)).or_default()))
    }
}
