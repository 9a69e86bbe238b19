//! Latency-aware picking and slow start, on paused time: exact turns while instances are
//! equally healthy, a slow instance's share, its recovery, and the slow-start ramp.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::Instance;
use crate::breaker::BreakerState;
use crate::discovery::tests::Scripted;
/// `then`, after `micros` microseconds.
fn after_micros(micros: u64, then: Behaviour) -> Behaviour {
    Behaviour::delay(Duration::from_micros(micros), then)
}

/// The instances that answered `calls` sequential calls, in order.
async fn sequence(client: &ServiceClient, calls: usize) -> Vec<u32> {
    let mut seen = Vec::with_capacity(calls);
    for _ in 0..calls {
        seen.push(instance_of(client).await);
    }
    seen
}

/// Each fake's hits over sequential calls made for `period` of tokio time.
async fn hits_over(client: &ServiceClient, fakes: &[FakeRatings], period: Duration) -> Vec<usize> {
    let before = hits(fakes);
    let end = Instant::now() + period;
    while Instant::now() < end {
        instance_of(client).await;
    }
    hits(fakes).iter().zip(before).map(|(a, b)| a - b).collect()
}

/// `part` of `whole`, as a fraction.
fn share(part: usize, whole: &[usize]) -> f64 {
    part as f64 / whole.iter().sum::<usize>() as f64
}

#[tokio::test(start_paused = true)]
async fn equally_healthy_instances_keep_exact_turns_through_small_noise() {
    let (transport, fakes) = instances(3);
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    // Sub-millisecond answers that differ by up to 3x, and 10 ms answers that differ by up
    // to 20 %, different on each instance and each call.
    for base in [300, 10_000] {
        let mut seen = Vec::new();
        for call in 0..300u64 {
            for (i, fake) in (0u64..).zip(&fakes) {
                let noise = (call * 7 + i * 13) % 10;
                let micros = match base {
                    300 => 300 + noise * 60,
                    _ => base + noise * 200,
                };
                fake.set(after_micros(micros, Behaviour::Ratings));
            }
            seen.push(instance_of(&c).await);
        }
        let turns: Vec<u32> = (0..300).map(|k| k % 3 + 1).collect();
        assert_eq!(seen, turns, "base {base} µs");
    }
}

#[tokio::test(start_paused = true)]
async fn late_answers_at_a_low_rate_of_calls_keep_exact_turns() {
    // A call every 200 ms: each window of an instance's answers spans seconds. Two answers
    // in a row of instance 2 come 10 ms late (a busy moment): its quickest is still quick.
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(1, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let mut seen = Vec::new();
    for call in 0..60 {
        let late = call == 31 || call == 34;
        fakes[1].set(after(if late { 10 } else { 1 }, Behaviour::Ratings));
        seen.push(instance_of(&c).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let turns: Vec<u32> = (0..60).map(|k| k % 3 + 1).collect();
    assert_eq!(seen, turns);
}

#[tokio::test(start_paused = true)]
async fn a_slow_instance_gets_a_trickle_then_its_share_back_when_it_heals() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(1, Behaviour::Ratings));
    fakes[1].set(after(20, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    // Two answers from instance 2 (the first is left out of its estimate) and it is seen.
    assert_eq!(sequence(&c, 6).await, [1, 2, 3, 1, 2, 3]);
    let slow = hits_over(&c, &fakes, Duration::from_secs(10)).await;
    // 1/256 of a full share: about one call in 500, as its turns come up.
    let calls: usize = slow.iter().sum();
    assert!(
        (1..=calls / 300).contains(&slow[1]),
        "a trickle to the slow instance: {slow:?}"
    );
    assert!(
        calls > 9000,
        "the others answer in 1 ms: {calls} calls in 10 s"
    );
    // It heals: its trickle of answers brings its estimate down, and its share back.
    fakes[1].set(after(1, Behaviour::Ratings));
    let mut back_after = None;
    for second in 1..=10 {
        let window = hits_over(&c, &fakes, Duration::from_secs(1)).await;
        if share(window[1], &window) >= 0.32 {
            back_after = Some(second);
            break;
        }
    }
    let back_after = back_after.expect("its share back within 10 s");
    assert!(back_after <= 3, "back to a third after {back_after} s");
    // And exact turns again.
    let turns = sequence(&c, 6).await;
    assert!(
        turns
            .windows(3)
            .all(|w| w[0] != w[1] && w[1] != w[2] && w[0] != w[2]),
        "{turns:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_is_never_answered_quickly_still_gets_its_trickle() {
    // The floor is what lets a recovery be seen; a 1 s instance next to 1 ms ones keeps it.
    let (transport, fakes) = instances(2);
    set_all(&fakes, after(1, Behaviour::Ratings));
    fakes[1].set(after(200, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .timeout(Duration::from_secs(1))
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    sequence(&c, 4).await;
    let window = hits_over(&c, &fakes, Duration::from_secs(20)).await;
    assert!(window[1] >= 5, "probed now and then: {window:?}");
    assert!(share(window[1], &window) < 0.01, "{window:?}");
}

#[tokio::test(start_paused = true)]
async fn plain_round_robin_keeps_sending_a_third_to_the_slow_instance() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(1, Behaviour::Ratings));
    fakes[1].set(after(20, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .balance(Balance::RoundRobin)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let window = hits_over(&c, &fakes, Duration::from_secs(2)).await;
    assert_eq!(window[0], window[1], "{window:?}");
}

fn instances_of(fakes: &[FakeRatings]) -> Vec<Instance> {
    fakes
        .iter()
        .map(|f| Instance::new(f.instance().to_string(), f.url.clone()))
        .collect()
}

/// The expected share of an instance `elapsed` into a slow start of `window` next to `full`
/// instances at full share.
fn ramp_share(elapsed: Duration, window: Duration, full: usize) -> f64 {
    let ramp = (elapsed.as_secs_f64() / window.as_secs_f64()).clamp(0.1, 1.0);
    ramp / (full as f64 + ramp)
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_ramps_up_over_the_slow_start_window() {
    let window = Duration::from_secs(10);
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(1, Behaviour::Ratings));
    let (tx, mut sinks) = mpsc::unbounded_channel();
    let c = client(&transport, &fakes)
        .discovery(Scripted { sinks: tx })
        .hedging(Hedging::Off)
        .slow_start(window)
        .build()
        .expect("client");
    let sink = sinks.recv().await.expect("discovery started");
    sink.publish(instances_of(&fakes[..2]));
    // Instances that appear together ramp together: plain turns from the start.
    assert_eq!(sequence(&c, 4).await, [1, 2, 1, 2]);
    tokio::time::sleep(window).await;
    // Instance 3 joins a loaded service.
    sink.publish(instances_of(&fakes));
    discovered_all(&c, 3).await;
    let joined = Instant::now();
    for second in 0..12u32 {
        let window_hits = hits_over(&c, &fakes, Duration::from_secs(1)).await;
        let middle = joined.elapsed() - Duration::from_millis(500);
        let expected = ramp_share(middle, window, 2);
        let got = share(window_hits[2], &window_hits);
        assert!(
            (got - expected).abs() < 0.005,
            "second {second}: {got:.3} of the calls, the ramp says {expected:.3}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_ramps_its_instance_up_again() {
    let window = Duration::from_secs(4);
    let (transport, fakes) = instances(2);
    set_all(&fakes, after(1, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .slow_start(window)
        .build()
        .expect("client");
    tokio::time::sleep(window).await;
    sequence(&c, 4).await;
    fakes[0].set(Behaviour::Status(500));
    sequence(&c, 2).await;
    assert_eq!(c.instances()[0].state, BreakerState::Open);
    fakes[0].set(after(1, Behaviour::Ratings));
    tokio::time::sleep(RETEST).await;
    // The probe closes it; then its share starts over at a tenth of a full one.
    let first = hits_over(&c, &fakes, Duration::from_secs(1)).await;
    assert_eq!(c.instances()[0].state, BreakerState::Closed);
    let expected = ramp_share(Duration::from_millis(500), window, 1);
    assert!(
        (share(first[0], &first) - expected).abs() < 0.03,
        "{first:?}: the ramp says {expected:.3}"
    );
    tokio::time::sleep(window).await;
    let after = hits_over(&c, &fakes, Duration::from_secs(1)).await;
    assert!(
        after[0].abs_diff(after[1]) <= 1,
        "a full share again: {after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_start_is_refused_with_a_zero_window_or_another_rule() {
    let (transport, fakes) = instances(1);
    let zero = client(&transport, &fakes)
        .slow_start(Duration::ZERO)
        .build();
    assert_eq!(
        zero.map(drop),
        Err(Error::Config(
            "slow start window must be greater than zero".into()
        ))
    );
    let other = client(&transport, &fakes)
        .balance(Balance::RoundRobin)
        .slow_start(Duration::from_secs(5))
        .build();
    assert_eq!(
        other.map(drop),
        Err(Error::Config(
            "slow start needs Balance::LatencyAware, not Balance::RoundRobin".into()
        ))
    );
}

/// Waits (at most 1 s of tokio time) until the client knows `n` instances.
async fn discovered_all(client: &ServiceClient, n: usize) {
    for _ in 0..1000 {
        if client.instances().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("discovery did not report {n} instances");
}
