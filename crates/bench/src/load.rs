//! Closed-loop load: a fixed number of workers, each sending its next request as soon as the
//! previous one is answered, until a deadline or a request cap. Every request is recorded
//! (when it started, how long it took, which instance answered or that it failed), so one
//! run can be cut into windows afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contender::Contender;

/// One request as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it started, from the start of the run.
    pub start: Duration,
    /// How long it took.
    pub latency: Duration,
    /// The instance that answered, or `None` if the call failed.
    pub instance: Option<u16>,
}

impl Sample {
    /// When it ended, from the start of the run.
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// The requests of one run.
#[derive(Debug, Default)]
pub struct Run {
    /// Every request, in no particular order.
    pub samples: Vec<Sample>,
    /// How long the run lasted (until the last worker stopped).
    pub elapsed: Duration,
}

/// Loads `target` with `concurrency` workers for `duration` from now and drops what was
/// measured: connections pooled and code paged in before a measured run.
pub async fn warm(
    target: &Arc<Contender>,
    paths: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) {
    let _ = closed_loop(
        Arc::clone(target),
        Arc::clone(paths),
        concurrency,
        Instant::now(),
        duration,
        usize::MAX,
    )
    .await;
}

/// Runs `concurrency` workers against `target` for `duration` (each worker stops starting
/// new requests then, and at most `cap` requests in all), cycling through `paths`.
/// `origin` is the moment sample times are measured from.
pub async fn closed_loop(
    target: Arc<Contender>,
    paths: Arc<Vec<String>>,
    concurrency: usize,
    origin: Instant,
    duration: Duration,
    cap: usize,
) -> Run {
    let stop_at = origin + duration;
    let per_worker = cap.div_ceil(concurrency.max(1));
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let target = Arc::clone(&target);
            let paths = Arc::clone(&paths);
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_worker.min(1 << 16));
                let mut i = w;
                while samples.len() < per_worker {
                    let started = Instant::now();
                    if started >= stop_at {
                        break;
                    }
                    let instance = target.call(&paths[i % paths.len()]).await;
                    samples.push(Sample {
                        start: started - origin,
                        latency: started.elapsed(),
                        instance,
                    });
                    i += 1;
                }
                samples
            })
        })
        .collect();
    let mut run = Run::default();
    for worker in workers {
        if let Ok(samples) = worker.await {
            run.samples.extend(samples);
        }
    }
    run.elapsed = origin.elapsed();
    run
}
