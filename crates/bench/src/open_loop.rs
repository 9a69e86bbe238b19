//! Open-loop load: requests started at a fixed rate whatever their latency, as users arrive.
//! A closed loop slows down with the system it measures; an open loop keeps arriving, so a
//! stalled server shows as requests piling up and failing. Every request is bounded in time,
//! and at most `max_in_flight` are outstanding (beyond that a request is counted as not
//! sent rather than queued without bound).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

/// One request of an open-loop run.
#[derive(Debug, Clone)]
pub struct Arrival<T> {
    /// When it was due, from the run's start.
    pub start: Duration,
    /// How long it took (up to the limit).
    pub latency: Duration,
    /// What it gave; `None` if it was still unanswered at the limit.
    pub outcome: Option<T>,
}

/// The requests of one run.
#[derive(Debug)]
pub struct OpenRun<T> {
    /// Every request sent, in no particular order.
    pub arrivals: Vec<Arrival<T>>,
    /// Requests not sent because `max_in_flight` were outstanding.
    pub not_sent: u64,
}

/// Starts `call()` `rate` times a second for `duration`, each bounded by `limit`.
pub async fn open_loop<F, Fut, T>(
    rate: u32,
    duration: Duration,
    limit: Duration,
    max_in_flight: usize,
    call: F,
) -> OpenRun<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let origin = Instant::now();
    let interval = Duration::from_secs(1) / rate.max(1);
    let mut tasks = JoinSet::new();
    let mut run = OpenRun {
        arrivals: Vec::new(),
        not_sent: 0,
    };
    let mut due = Duration::ZERO;
    while due < duration {
        tokio::time::sleep_until(origin + due).await;
        while let Some(done) = tasks.try_join_next() {
            if let Ok(arrival) = done {
                run.arrivals.push(arrival);
            }
        }
        if tasks.len() >= max_in_flight {
            run.not_sent += 1;
        } else {
            let request = call();
            let start = due;
            tasks.spawn(async move {
                let sent = Instant::now();
                let outcome = tokio::time::timeout(limit, request).await.ok();
                Arrival {
                    start,
                    latency: sent.elapsed(),
                    outcome,
                }
            });
        }
        due += interval;
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(arrival) = done {
            run.arrivals.push(arrival);
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keeps_the_rate_and_bounds_each_request() {
        let run = open_loop(
            100,
            Duration::from_secs(1),
            Duration::from_millis(50),
            1000,
            || async {
                tokio::time::sleep(Duration::from_millis(80)).await;
                7
            },
        )
        .await;
        assert_eq!(run.arrivals.len(), 100);
        assert!(run.arrivals.iter().all(|a| a.outcome.is_none()));
        let run = open_loop(
            100,
            Duration::from_secs(1),
            Duration::from_secs(1),
            3,
            || async {
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
        )
        .await;
        assert!(run.not_sent > 90, "{}", run.not_sent);
        assert!(run.arrivals.iter().all(|a| a.outcome.is_some()));
    }
}
