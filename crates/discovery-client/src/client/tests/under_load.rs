//! Many callers on one client while one of three instances starts to hang, on paused time:
//! how many calls the hanging instance holds, and how many wait for its timeout, under each
//! picking rule.

use tokio::time::Instant;

use super::*;

/// Callers looping on the client.
const WORKERS: usize = 12;
/// How long a healthy instance takes to answer.
const ANSWER: Duration = Duration::from_millis(1);

/// What the callers saw once instance 1 started to hang (1 s timeout, no retest in time).
#[derive(Debug)]
struct HangRun {
    /// The client's count of attempts in flight to instance 1 when it started hanging.
    in_flight_at_hang: usize,
    /// Requests instance 1 received after it started hanging (all of them held).
    held: usize,
    /// Calls answered while instance 1 hung, before its first attempt timed out.
    served_while_hanging: usize,
    /// Calls that took at least 0.9 × the timeout.
    waited: usize,
    /// Calls that failed.
    failed: Vec<Error>,
}

impl HangRun {
    /// The hanging instance held at most `bound` calls and as many waited for the timeout;
    /// every held call was retried elsewhere, and the others kept serving.
    fn assert_held_at_most(&self, bound: usize) {
        assert!(self.held <= bound, "{self:?}");
        assert!(self.waited <= bound, "{self:?}");
        assert!(
            self.failed.is_empty(),
            "held calls retried elsewhere: {self:?}"
        );
        assert!(self.served_while_hanging >= 1000, "{self:?}");
    }
}

/// `WORKERS` callers loop for 0.2 s, then instance 1 hangs for the rest of the run (1.2 s),
/// longer than the 1 s timeout, after which its breaker opens and held calls are retried.
async fn hang_under_load(balance: Balance, hedging: Hedging) -> HangRun {
    let (transport, fakes) = instances(3);
    set_all(&fakes, Behaviour::delay(ANSWER, Behaviour::Ratings));
    let timeout = Duration::from_secs(1);
    let c = client(&transport, &fakes)
        .timeout(timeout)
        .retest_delay(Duration::from_secs(30))
        .balance(balance)
        .hedging(hedging)
        .build()
        .expect("client");
    instance_of(&c).await; // discovery has answered
    let hang_at = Instant::now() + Duration::from_millis(200);
    let stop = hang_at + Duration::from_millis(1200);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                // (started, took, outcome) of every call.
                let mut calls = Vec::new();
                while Instant::now() < stop {
                    let started = Instant::now();
                    let outcome = c.get_json::<Rating>("/ratings/widget").await;
                    calls.push((started, started.elapsed(), outcome.map(|_| ())));
                }
                calls
            })
        })
        .collect();
    tokio::time::sleep_until(hang_at).await;
    // One thread runs the callers, the instances and this: nothing moves in between.
    let endpoints = c
        .inner
        .known_endpoints()
        .expect("known")
        .expect("endpoints");
    let in_flight_at_hang = endpoints[0].load.in_flight();
    let hits_at_hang = fakes[0].hits();
    fakes[0].set(Behaviour::Hang);
    let first_timeout = hang_at + timeout;
    let mut run = HangRun {
        in_flight_at_hang,
        held: 0,
        served_while_hanging: 0,
        waited: 0,
        failed: Vec::new(),
    };
    for worker in workers {
        for (started, took, outcome) in worker.await.expect("worker") {
            match outcome {
                Ok(()) if started >= hang_at && started + took < first_timeout => {
                    run.served_while_hanging += 1;
                }
                Ok(()) => {}
                Err(e) => run.failed.push(e),
            }
            if took >= timeout.mul_f64(0.9) {
                run.waited += 1;
            }
        }
    }
    run.held = fakes[0].hits() - hits_at_hang;
    run
}

#[tokio::test(start_paused = true)]
async fn least_pending_gives_a_hanging_instance_no_more_than_its_share_of_the_calls() {
    let run = hang_under_load(Balance::LeastPending, Hedging::Off).await;
    // A pick goes to instance 1 only while it holds no more calls than either other
    // instance, and the callers hold at most `WORKERS - 1` besides the one picking: it never
    // holds more than a third of them, plus the one picked (4 of 12), where plain
    // round-robin sends every caller there in turn (the test below).
    run.assert_held_at_most((WORKERS - 1) / 3 + 1);
    // In these terms: what it held when it started hanging (its share), and hardly more.
    assert!(run.held <= run.in_flight_at_hang + 2, "{run:?}");
}

#[tokio::test(start_paused = true)]
async fn plain_round_robin_sends_every_caller_to_a_hanging_instance() {
    let run = hang_under_load(Balance::RoundRobin, Hedging::Off).await;
    assert_eq!(run.held, WORKERS, "{run:?}");
    assert_eq!(run.waited, WORKERS, "{run:?}");
    assert!(
        run.failed.is_empty(),
        "held calls retried elsewhere: {run:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn two_choices_keep_half_the_callers_off_a_hanging_instance() {
    let run = hang_under_load(Balance::PowerOfTwoChoices, Hedging::Off).await;
    // A pick goes to instance 1 only when it holds no more calls than the instance it is
    // compared with, which holds at most the callers not stuck on 1, minus the one picking:
    // it never holds more than half of `WORKERS - 1`, plus the one picked (6 of 12).
    run.assert_held_at_most((WORKERS - 1) / 2 + 1);
}

/// The default client (two choices, adaptive hedging): the calls held by the hanging
/// instance are hedged after 50 ms, so none waits for the timeout and none fails.
#[tokio::test(start_paused = true)]
async fn by_default_no_call_waits_for_a_hanging_instance() {
    let run = hang_under_load(Balance::default(), Hedging::default()).await;
    assert_eq!(run.waited, 0, "{run:?}");
    assert!(run.failed.is_empty(), "{run:?}");
    // Hedged-over attempts stay counted on instance 1 but no longer hold their callers, so
    // the half bound above does not hold: what hedging buys is that none of them waits.
    assert!(run.held < WORKERS, "{run:?}");
    assert!(run.held >= 1, "the hang was met: {run:?}");
    assert!(run.served_while_hanging >= 1000, "{run:?}");
}
