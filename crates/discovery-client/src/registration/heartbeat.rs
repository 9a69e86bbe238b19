//! The background loop: register, heartbeat every third of the TTL, re-register when the
//! registry has forgotten us, back off while it is unreachable, and wait out the lease of
//! an earlier process that still holds our instance id.
//!
//! Every registration presents the lease we last held (at start, the one in the lease
//! file, if configured), since the registry lets only that lease's holder re-register a
//! live id. When it is refused with 409 (the id is held under a lease we do not have), the
//! next attempt is made when the registry says that lease runs out, but at least every
//! `backoff_max`, in case its holder deregisters sooner.
//!
//! The loop is generic over [`RegistryCalls`] so its timing can be tested on paused time
//! without sockets; [`HttpRegistry`](super::registry_api::HttpRegistry) is the real one.

use std::future::Future;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{oneshot, watch};

use super::Labels;
use super::backoff::Backoff;
use super::error::RegistrationError;
use super::lease_file::LeaseFile;
use super::outage::OutageLog;
use super::registry_api::Lease;

/// The shortest heartbeat interval, whatever TTL is asked for or granted.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What a successful registration gives us.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The secret that proves the registration is ours.
    pub(crate) lease: Lease,
    /// The TTL the registry granted, if it said.
    pub(crate) ttl: Option<Duration>,
}

/// How a heartbeat that reached the registry turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatOutcome {
    /// The lease was renewed, possibly with a new TTL.
    Renewed {
        /// The TTL the registry granted, if it said.
        ttl: Option<Duration>,
    },
    /// The registry does not know the lease (404: restarted or expired; 403: someone else
    /// holds the id): register again.
    Lost {
        /// The status that said so.
        status: StatusCode,
    },
}

/// The registry calls the loop makes.
pub(crate) trait RegistryCalls: Send + Sync + 'static {
    /// Registers (or re-registers) the instance, presenting the lease we last held.
    fn register(
        &self,
        presented: Option<&Lease>,
    ) -> impl Future<Output = Result<Grant, RegistrationError>> + Send;
    /// Renews `lease`.
    fn heartbeat(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<HeartbeatOutcome, RegistrationError>> + Send;
}

/// The loop's clocks: [`Timing::for_ttl`] is what
/// [`Registration::start`](super::Registration::start) uses; tests shrink them.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    /// The TTL asked for; heartbeats go every third of it (or of the granted TTL if shorter).
    pub(crate) ttl: Duration,
    /// First retry delay while the registry is unreachable.
    pub(crate) backoff_min: Duration,
    /// Longest retry delay while the registry is unreachable.
    pub(crate) backoff_max: Duration,
    /// Fraction by which retry delays are shortened at random.
    pub(crate) jitter: f64,
    /// Bound on each register or heartbeat call.
    pub(crate) request_timeout: Duration,
    /// Bound on the whole of [`Registration::deregister`](super::Registration::deregister).
    pub(crate) deregister_timeout: Duration,
}

impl Timing {
    /// The production timings for a given TTL.
    pub(crate) fn for_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            jitter: 0.2,
            request_timeout: Duration::from_secs(5),
            deregister_timeout: Duration::from_secs(2),
        }
    }
}

/// Runs the loop until `stop` fires (or its sender is dropped) and returns the lease held
/// at that moment, if any, so the caller can deregister it.
///
/// With a `lease_file`, the lease in it is presented on the first registration, and every
/// new lease is written to it.
///
/// Sleeps and heartbeats are abandoned at once on stop. A registration call in flight is
/// not: it is allowed to finish (it has its own timeout), so that a registration the
/// registry accepted can still be deleted instead of lingering until its TTL.
pub(crate) async fn run<C: RegistryCalls>(
    calls: &C,
    labels: &Labels,
    timing: &Timing,
    lease_file: Option<&LeaseFile>,
    registered: &watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> Option<Lease> {
    let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max, timing.jitter);
    let mut outage = OutageLog::default();
    // The lease to present: the last one granted, or at first an earlier process's.
    let mut held = match lease_file {
        Some(file) => file.load(labels).await,
        None => None,
    };
    loop {
        let grant = loop {
            let result = calls.register(held.as_ref()).await;
            let stopping = stop_requested(&mut stop);
            match result {
                Ok(grant) => {
                    if let Some(file) = lease_file {
                        file.store(labels, &grant.lease).await;
                    }
                    if stopping {
                        return Some(grant.lease);
                    }
                    break grant;
                }
                Err(error) => {
                    outage.failed(labels, &error);
                    if stopping {
                        return None;
                    }
                    let delay = retry_delay(&error, timing, &mut backoff);
                    until_stopped(&mut stop, tokio::time::sleep(delay)).await?;
                }
            }
        };
        held = Some(grant.lease.clone());
        outage.recovered(labels);
        backoff.reset();
        // The TTL granted at registration holds until a heartbeat says otherwise.
        let mut granted = grant.ttl;
        let mut interval = heartbeat_interval(timing.ttl, granted);
        labeled_event!(
            tracing::Level::INFO,
            labels,
            ttl_secs = granted.map(|ttl| ttl.as_secs()),
            "registered with the registry"
        );
        let lease = grant.lease;
        registered.send_replace(true);

        let mut wait = interval;
        loop {
            if until_stopped(&mut stop, tokio::time::sleep(wait))
                .await
                .is_none()
            {
                return Some(lease);
            }
            let Some(outcome) = until_stopped(&mut stop, calls.heartbeat(&lease)).await else {
                return Some(lease);
            };
            match outcome {
                Ok(HeartbeatOutcome::Renewed { ttl }) => {
                    outage.recovered(labels);
                    backoff.reset();
                    granted = ttl.or(granted);
                    interval = heartbeat_interval(timing.ttl, granted);
                    wait = interval;
                }
                Ok(HeartbeatOutcome::Lost { status }) => {
                    outage.recovered(labels);
                    labeled_event!(
                        tracing::Level::INFO,
                        labels,
                        status = status.as_u16(),
                        "registry no longer holds this registration; registering again"
                    );
                    break;
                }
                Err(error) => {
                    outage.failed(labels, &error);
                    wait = backoff.next_delay().min(interval);
                }
            }
        }
    }
}

/// How long to wait before registering again after `error`: when the registry says the
/// lease holding our id runs out (within the backoff bounds), else the next backoff.
fn retry_delay(error: &RegistrationError, timing: &Timing, backoff: &mut Backoff) -> Duration {
    match error {
        RegistrationError::LeaseHeld {
            retry_after: Some(after),
            ..
        } => (*after).min(timing.backoff_max).max(timing.backoff_min),
        _ => backoff.next_delay(),
    }
}

/// Runs `work` unless `stop` fires first; `None` means stop.
async fn until_stopped<T>(
    stop: &mut oneshot::Receiver<()>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop => None,
        done = work => Some(done),
    }
}

/// Whether stop was asked for (or the handle dropped) without waiting. Only called while
/// `stop` has not yet been seen to fire, as a completed receiver must not be polled again.
fn stop_requested(stop: &mut oneshot::Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// A third of the shorter of the asked and granted TTLs.
fn heartbeat_interval(asked: Duration, granted: Option<Duration>) -> Duration {
    let ttl = match granted {
        Some(granted) if !granted.is_zero() => asked.min(granted),
        _ => asked,
    };
    (ttl / 3).max(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    //! The loop on paused time against a scripted registry: exact heartbeat spacing,
    //! backoff and one-shot outage logging, in milliseconds of real time.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Call {
        Register,
        Heartbeat,
    }

    /// A registry in memory whose availability the test switches.
    #[derive(Default)]
    struct Scripted {
        down: AtomicBool,
        forgot: AtomicBool,
        grant_ttl: Mutex<Option<Duration>>,
        register_delay: Mutex<Duration>,
        leases: AtomicUsize,
        calls: Mutex<Vec<(Call, Instant)>>,
        /// Until then, another process's lease holds the id: registrations get 409.
        held_until: Mutex<Option<Instant>>,
        /// The lease each registration presented.
        presented: Mutex<Vec<Option<Lease>>>,
    }

    impl Scripted {
        fn record(&self, call: Call) {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((call, Instant::now()));
            }
        }

        fn calls(&self) -> Vec<(Call, Instant)> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }

        fn unreachable() -> RegistrationError {
            RegistrationError::Timeout {
                url: "scripted".into(),
                after: Duration::ZERO,
            }
        }
    }

    impl RegistryCalls for Scripted {
        async fn register(&self, presented: Option<&Lease>) -> Result<Grant, RegistrationError> {
            self.record(Call::Register);
            if let Ok(mut all) = self.presented.lock() {
                all.push(presented.cloned());
            }
            let delay = self.register_delay.lock().map(|d| *d).unwrap_or_default();
            tokio::time::sleep(delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(Self::unreachable());
            }
            let held_until = self.held_until.lock().ok().and_then(|until| *until);
            if let Some(until) = held_until.filter(|until| *until > Instant::now()) {
                return Err(RegistrationError::LeaseHeld {
                    retry_after: Some(until - Instant::now()),
                    message: "held under a live lease".into(),
                });
            }
            self.forgot.store(false, Ordering::SeqCst);
            let n = self.leases.fetch_add(1, Ordering::SeqCst);
            Ok(Grant {
                lease: Lease::new(format!("lease-{n}")),
                ttl: self.grant_ttl.lock().ok().and_then(|ttl| *ttl),
            })
        }

        async fn heartbeat(&self, _lease: &Lease) -> Result<HeartbeatOutcome, RegistrationError> {
            self.record(Call::Heartbeat);
            if self.down.load(Ordering::SeqCst) {
                Err(Self::unreachable())
            } else if self.forgot.load(Ordering::SeqCst) {
                Ok(HeartbeatOutcome::Lost {
                    status: StatusCode::NOT_FOUND,
                })
            } else {
                Ok(HeartbeatOutcome::Renewed { ttl: None })
            }
        }
    }

    struct Harness {
        registry: Arc<Scripted>,
        registered: watch::Receiver<bool>,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Option<Lease>>,
        start: Instant,
    }

    fn timing(ttl: Duration) -> Timing {
        Timing {
            jitter: 0.0,
            ..Timing::for_ttl(ttl)
        }
    }

    fn start(registry: Arc<Scripted>, timing: Timing) -> Harness {
        let (registered_tx, registered) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let labels = Labels {
            service: "ratings".into(),
            instance: "1".into(),
            address: "http://127.0.0.1:8001".into(),
        };
        let task = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move { run(&*registry, &labels, &timing, None, &registered_tx, stop_rx).await }
        });
        Harness {
            registry,
            registered,
            stop,
            task,
            start: Instant::now(),
        }
    }

    /// Offsets from the start, in ms, of each call of `kind`.
    fn offsets(h: &Harness, kind: Call) -> Vec<u128> {
        h.registry
            .calls()
            .into_iter()
            .filter(|(call, _)| *call == kind)
            .map(|(_, at)| (at - h.start).as_millis())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_every_third_of_the_ttl_and_returns_the_lease_on_stop() {
        let mut h = start(Arc::default(), timing(Duration::from_secs(3)));
        assert!(h.registered.wait_for(|r| *r).await.is_ok());
        tokio::time::sleep(Duration::from_millis(3500)).await;

        assert_eq!(offsets(&h, Call::Register), [0]);
        assert_eq!(offsets(&h, Call::Heartbeat), [1000, 2000, 3000]);
        assert!(h.stop.send(()).is_ok());
        assert_eq!(h.task.await.ok().flatten(), Some(Lease::new("lease-0")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_granted_ttl_wins() {
        let registry = Arc::new(Scripted::default());
        if let Ok(mut ttl) = registry.grant_ttl.lock() {
            *ttl = Some(Duration::from_secs(30));
        }
        let h = start(registry, timing(Duration::from_secs(120)));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(offsets(&h, Call::Heartbeat), [10_000, 20_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn registers_again_at_once_when_the_registry_forgot_us() {
        let h = start(Arc::default(), timing(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        h.registry.forgot.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;

        assert_eq!(offsets(&h, Call::Register), [0, 2000]);
        assert_eq!(offsets(&h, Call::Heartbeat), [1000, 2000]);
        assert_eq!(
            h.registry.presented.lock().map(|p| p.clone()).ok(),
            Some(vec![None, Some(Lease::new("lease-0"))]),
            "the re-registration presents the lease it held"
        );
        drop(h.stop);
        assert_eq!(h.task.await.ok().flatten(), Some(Lease::new("lease-1")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_id_is_retried_when_the_registry_says_its_lease_runs_out() {
        let (captured, _guard) = Captured::install();
        tracing::callsite::rebuild_interest_cache();

        // An earlier process's lease holds the id for another 12 s.
        let registry = Arc::new(Scripted::default());
        if let Ok(mut until) = registry.held_until.lock() {
            *until = Some(Instant::now() + Duration::from_secs(12));
        }
        let mut h = start(registry, timing(Duration::from_secs(3)));
        assert!(h.registered.wait_for(|r| *r).await.is_ok());

        // Told 12 s: retried at most every 5 s (the backoff cap), then right at expiry.
        assert_eq!(offsets(&h, Call::Register), [0, 5000, 10_000, 12_000]);
        assert_eq!(h.start.elapsed(), Duration::from_secs(12));
        let warned = captured.lines("still registered by an earlier process");
        assert_eq!(warned.len(), 1, "{:#?}", captured.lines(""));
        assert!(warned[0].contains("WARN"), "{}", warned[0]);
        assert!(
            warned[0].contains(
                "instance 1 is still registered by an earlier process; \
                 retrying when its lease expires in 12 s"
            ),
            "{}",
            warned[0]
        );
        let back = captured.lines("holds its registration again");
        assert_eq!(back.len(), 1, "{:#?}", captured.lines(""));
        assert!(captured.lines("registry unreachable").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_hint_is_waited_exactly_and_never_below_the_backoff_floor() {
        let registry = Arc::new(Scripted::default());
        if let Ok(mut until) = registry.held_until.lock() {
            *until = Some(Instant::now() + Duration::from_millis(1_250));
        }
        let mut h = start(registry, timing(Duration::from_secs(3)));
        assert!(h.registered.wait_for(|r| *r).await.is_ok());
        assert_eq!(offsets(&h, Call::Register), [0, 1250]);

        let registry = Arc::new(Scripted::default());
        if let Ok(mut until) = registry.held_until.lock() {
            *until = Some(Instant::now() + Duration::from_millis(30));
        }
        let mut h = start(registry, timing(Duration::from_secs(3)));
        assert!(h.registered.wait_for(|r| *r).await.is_ok());
        assert_eq!(
            offsets(&h, Call::Register),
            [0, 100],
            "not before backoff_min"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registration_in_flight_is_finished_so_its_lease_can_be_deleted() {
        let registry = Arc::new(Scripted::default());
        if let Ok(mut delay) = registry.register_delay.lock() {
            *delay = Duration::from_secs(1);
        }
        let mut h = start(registry, timing(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stop = std::mem::replace(&mut h.stop, oneshot::channel().0);
        assert!(stop.send(()).is_ok());
        assert_eq!(
            (&mut h.task).await.ok().flatten(),
            Some(Lease::new("lease-0"))
        );
        assert!(offsets(&h, Call::Heartbeat).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_during_a_backoff_sleep_is_immediate_and_has_no_lease() {
        let registry = Arc::new(Scripted::default());
        registry.down.store(true, Ordering::SeqCst);
        let mut h = start(registry, timing(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(std::mem::replace(&mut h.stop, oneshot::channel().0));
        let stopped_at = Instant::now();
        assert_eq!((&mut h.task).await.ok().flatten(), None);
        assert_eq!(stopped_at.elapsed(), Duration::ZERO);
        assert_eq!(offsets(&h, Call::Register), [0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_exponentially_up_to_the_cap_while_unreachable() {
        let registry = Arc::new(Scripted::default());
        registry.down.store(true, Ordering::SeqCst);
        let h = start(registry, timing(Duration::from_secs(120)));
        tokio::time::sleep(Duration::from_secs(20)).await;

        // Delays 100, 200, 400, ..., capped at 5 s.
        assert_eq!(
            offsets(&h, Call::Register),
            [0, 100, 300, 700, 1500, 3100, 6300, 11_300, 16_300]
        );
        assert!(!*h.registered.borrow());
        h.registry.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(*h.registered.borrow());
        assert_eq!(offsets(&h, Call::Register).last(), Some(&21_300));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_retries_never_wait_longer_than_the_interval() {
        let h = start(Arc::default(), timing(Duration::from_millis(900)));
        tokio::time::sleep(Duration::from_millis(350)).await;
        h.registry.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Heartbeat at 300 ok; 600 fails; then 700, 900, then every 300 (the interval).
        assert_eq!(offsets(&h, Call::Heartbeat), [300, 600, 700, 900, 1200]);
    }

    /// Collects formatted log lines in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// Collects this thread's INFO and above log lines until the guard is dropped.
        fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            (captured, tracing::subscriber::set_default(subscriber))
        }

        fn lines(&self, needle: &str) -> Vec<String> {
            let text = self
                .0
                .lock()
                .map(|out| String::from_utf8_lossy(&out).into_owned())
                .unwrap_or_default();
            text.lines()
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
        let (captured, _guard) = Captured::install();
        // Tests on other threads hit the same callsites with no subscriber, which can leave
        // a stale "not interested" verdict cached; the rebuilds below clear it before each
        // event this test waits for.

        let h = start(Arc::default(), timing(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tracing::callsite::rebuild_interest_cache();
        h.registry.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let failed_heartbeats = offsets(&h, Call::Heartbeat).len() - 1;
        assert!(failed_heartbeats >= 10, "{failed_heartbeats}");
        tracing::callsite::rebuild_interest_cache();
        h.registry.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;

        let warned = captured.lines("registry unreachable");
        assert_eq!(warned.len(), 1, "{warned:#?}");
        assert!(warned[0].contains("WARN"), "{}", warned[0]);
        for field in [
            "service=ratings",
            "instance=1",
            "address=http://127.0.0.1:8001",
        ] {
            assert!(warned[0].contains(field), "{field} missing: {}", warned[0]);
        }
        let recovered = captured.lines("registry reachable again");
        assert_eq!(recovered.len(), 1, "{:#?}", captured.lines(""));
        assert!(recovered[0].contains("INFO"), "{}", recovered[0]);
    }

    #[test]
    fn interval_is_a_third_of_the_shorter_ttl() {
        let s = Duration::from_secs;
        assert_eq!(heartbeat_interval(s(120), None), s(40));
        assert_eq!(heartbeat_interval(s(120), Some(s(30))), s(10));
        assert_eq!(heartbeat_interval(s(30), Some(s(120))), s(10));
        assert_eq!(heartbeat_interval(s(30), Some(s(0))), s(10));
        assert_eq!(heartbeat_interval(Duration::ZERO, None), MIN_INTERVAL);
    }
}
