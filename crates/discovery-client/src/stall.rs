//! [`StallMonitor`]: whether the client itself was running, so that its own stalls are not
//! held against the instances it calls.
//!
//! When the client's process is not scheduled (a container's CPU quota used up: a cgroup
//! `cpu.max` of 40 ms per second freezes the whole process for about 960 ms; an overloaded
//! host; a runtime whose threads are all blocked), the timers of the attempts in flight
//! fire late, all at once, when it runs again. Every one of those attempts then times out,
//! on healthy instances as on sick ones, and with a failure limit of one every breaker
//! would open within a millisecond. A timeout only says something about the instance if the
//! client was there to see the answer come.
//!
//! The monitor is a task per client that wakes every [`TICK`] while an attempt could time
//! out (from an attempt's start until a second after its deadline), and sleeps otherwise,
//! so that an idle client costs nothing. When it wakes more than [`STALL`] later than it
//! asked, the client was not running in between, and it records that stall (the last 64
//! are kept). The attempt's judge asks
//! [`running_within`](StallMonitor::running_within) the attempt's limit: a timed-out
//! attempt during which the client was running for less than nine tenths of the attempt's
//! time limit is not the instance's failure (see `Gate::client_stalled`).
//!
//! At the end of a stall the timers are handled in no particular order, and the monitor
//! may run after some of the judges. So the monitor also publishes when it last ran: if
//! that is more than a tick and a stall ago, the client is still catching up from a stall
//! that began a tick after that, and the judge counts it too.
//!
//! An attempt whose own timer fires well past its deadline also gets a short grace for an
//! answer that came while the client was not running (see the transport's `GRACE`), so that
//! most attempts caught by a stall are answered rather than excused and retried.
//!
//! What is not excused: any failure other than a timeout (a refused connection, a reset, a
//! 5xx, a bad body), and a timeout while the client was running. So when every instance
//! refuses connections, every breaker opens at once and calls fail fast with
//! [`Error::AllInstancesDown`](crate::Error::AllInstancesDown), stalls or not; a paused
//! instance's breaker opens at its first timeout while the client runs. While the client
//! is starved (stalling again and again, as under a tight CPU quota), a paused instance is
//! not kept out by its breaker, since no timeout of it can be told from the client's own;
//! its attempts are retried and hedged on the others.
//!
//! There is no cap on the share of breakers that timeouts may open within a short window
//! (Envoy's max ejection percent, or its panic threshold): such a cap guesses at the
//! client's trouble from how many instances fail together, whereas the monitor measures
//! it; and when every instance really hangs (all of them SIGSTOPped, a partition) a cap
//! would keep callers waiting a full timeout on instances known to hang instead of failing
//! fast with `AllInstancesDown` and the cached answers.
//!
//! Lateness is measured on tokio's clock, so tests simulate a frozen client on paused time
//! with `tokio::time::advance`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How often the monitor wakes.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// How late a wake must be to count as a stall of the client. Tokio's timers are precise to
/// a millisecond; a busy runtime delays them by a few.
pub(crate) const STALL: Duration = Duration::from_millis(20);
/// The stalls kept (the latest ones). A client that is frozen now and then is also busy
/// when it runs, catching up, and its monitor then wakes a little late at most ticks: each
/// of those is a short stall too, and with only a few kept they pushed the long freeze out
/// before the attempts that spanned it were judged. A minute of ticks' worth would be too
/// many to add up at each timeout; 64 cover several freezes and their catching up.
const KEPT: usize = 64;
/// How long the monitor keeps waking past the latest deadline it was asked to watch: the
/// deadline it keeps is moved at most once per this, not at every attempt.
const SLACK: Duration = Duration::from_secs(1);

/// A cheap handle on one client's record of its own stalls. Clones share it.
#[derive(Debug, Clone)]
pub(crate) struct StallMonitor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The moment the monitor started; `last_tick` counts from it.
    origin: Instant,
    /// When the monitor last ran (or an attempt woke it), in nanoseconds since `origin`.
    last_tick: AtomicU64,
    /// Until when the monitor wakes every tick, in nanoseconds since `origin`: past it, no
    /// attempt can time out, and the monitor sleeps until an attempt wakes it.
    awake_until: AtomicU64,
    /// Wakes the sleeping monitor.
    wake: Notify,
    /// The latest stalls, `(from, to)`, oldest overwritten first; written only by the
    /// monitor, which stores `last_tick` under this lock when it records one, so that a
    /// judge never counts a stall both as recorded and as still going on.
    stalls: Mutex<Stalls>,
}

#[derive(Debug)]
struct Stalls {
    kept: [Option<(Instant, Instant)>; KEPT],
    next: usize,
}

impl Default for Stalls {
    fn default() -> Self {
        Self {
            kept: [None; KEPT],
            next: 0,
        }
    }
}

impl StallMonitor {
    /// Starts the monitor of a client named `service` (for its log lines). The task runs
    /// until aborted.
    pub(crate) fn start(service: &str) -> (Self, JoinHandle<()>) {
        let monitor = Self::new(Instant::now());
        let task = tokio::spawn(monitor.clone().watch(service.to_string()));
        (monitor, task)
    }

    fn new(origin: Instant) -> Self {
        Self {
            shared: Arc::new(Shared {
                origin,
                last_tick: AtomicU64::new(0),
                awake_until: AtomicU64::new(0),
                wake: Notify::new(),
                stalls: Mutex::new(Stalls::default()),
            }),
        }
    }

    /// Keeps the monitor waking until `until` (an attempt's deadline), from `now` (when it
    /// is sent). One atomic load when it is awake until then already.
    #[inline]
    pub(crate) fn watch_until(&self, now: Instant, until: Instant) {
        let until = self.nanos(until);
        if self.shared.awake_until.load(Ordering::Acquire) < until {
            self.wake_until(now, until);
        }
    }

    #[inline(never)]
    fn wake_until(&self, now: Instant, until: u64) {
        let slack = u64::try_from(SLACK.as_nanos()).unwrap_or(u64::MAX);
        let later = until.saturating_add(slack);
        let before = self.shared.awake_until.fetch_max(later, Ordering::AcqRel);
        let now = self.nanos(now);
        if before <= now {
            // The monitor may be asleep. This attempt shows the client is running now: the
            // time until the monitor runs again is not a stall unless it takes a stall.
            self.shared.last_tick.fetch_max(now, Ordering::Relaxed);
            self.shared.wake.notify_one();
        }
    }

    /// `at` in nanoseconds since the origin.
    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.shared.origin).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// While an attempt could time out, wakes every [`TICK`], recording the stalls it
    /// notices; otherwise sleeps until an attempt wakes it.
    async fn watch(self, service: String) {
        loop {
            // A permit stored by `notify_one` between the check and the wait is not lost.
            while self.nanos(Instant::now()) >= self.shared.awake_until.load(Ordering::Acquire) {
                self.shared.wake.notified().await;
            }
            // Woken by an attempt sent at `last_tick`: running later than a tick after it
            // is a stall too.
            self.check(&service, self.last_tick() + TICK, Instant::now());
            self.tick_while_awake(&service).await;
        }
    }

    /// Wakes every [`TICK`] until past `awake_until`.
    async fn tick_while_awake(&self, service: &str) {
        let mut ticks = tokio::time::interval_at(Instant::now() + TICK, TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let expected = ticks.tick().await;
            let now = Instant::now();
            self.check(service, expected, now);
            if self.nanos(now) >= self.shared.awake_until.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// The monitor, due to run at `expected`, runs at `now`: records a stall if that is more
    /// than [`STALL`] late, and that it ran.
    fn check(&self, service: &str, expected: Instant, now: Instant) {
        let late = now.saturating_duration_since(expected);
        if late <= STALL {
            self.ticked(now);
            return;
        }
        let ms = late.as_millis();
        if late >= Duration::from_millis(100) {
            tracing::info!(service = %service, stalled_ms = ms,
                "{service} client was not running for {ms} ms: its timeouts meanwhile are not held against instances");
        } else {
            tracing::debug!(service = %service, stalled_ms = ms,
                "{service} client was not running for {ms} ms");
        }
        let mut stalls = self.lock();
        let slot = stalls.next;
        stalls.kept[slot] = Some((expected, now));
        stalls.next = (slot + 1) % KEPT;
        self.ticked(now);
    }

    /// When the monitor last ran (or an attempt woke it).
    fn last_tick(&self) -> Instant {
        self.shared.origin + Duration::from_nanos(self.shared.last_tick.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stalls> {
        // Every update is a plain assignment: a poisoned lock holds a whole record.
        self.shared
            .stalls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ticked(&self, now: Instant) {
        self.shared
            .last_tick
            .fetch_max(self.nanos(now), Ordering::Relaxed);
    }

    /// How long the client was not running between `from` and `to`, as far as the monitor
    /// can tell: the stalls it recorded, and the one still being caught up from if the
    /// monitor has not run for longer than a tick and a stall.
    #[cfg(test)]
    pub(crate) fn stalled_between(&self, from: Instant, to: Instant) -> Duration {
        self.stalled_within(from, to, to)
    }

    /// The same, asked at `now` (which may be later than `to`): a stall still being caught
    /// up from at `now` counts for its part before `to`.
    fn stalled_within(&self, from: Instant, to: Instant, now: Instant) -> Duration {
        let overlap = |(a, b): (Instant, Instant)| b.min(to).saturating_duration_since(a.max(from));
        let stalls = self.lock();
        let last_tick = self.last_tick();
        let recorded: Duration = stalls.kept.iter().flatten().copied().map(overlap).sum();
        let since = last_tick + TICK;
        let ongoing = match now.saturating_duration_since(since) > STALL {
            true => overlap((since, now)),
            false => Duration::ZERO,
        };
        recorded + ongoing
    }

    /// How long the client was running, within `limit` from `started`, for an attempt
    /// judged (timed out) at `now`. What the client did after the deadline (a busy client
    /// catching up judges late) does not count.
    pub(crate) fn running_within(
        &self,
        started: Instant,
        limit: Duration,
        now: Instant,
    ) -> Duration {
        let end = (started + limit).min(now);
        let stalled = self.stalled_within(started, end, now);
        end.saturating_duration_since(started)
            .saturating_sub(stalled)
    }

    /// Whether a timed-out attempt during whose `limit` the client ran only `running` says
    /// nothing about the instance: the client ran less than nine tenths of it.
    pub(crate) fn excuses_running(running: Duration, limit: Duration) -> bool {
        running < limit.mul_f64(0.9)
    }

    /// Whether an attempt sent at `started` and given `limit`, judged (timed out) at `now`,
    /// had the client running for less than nine tenths of `limit` within that limit: then
    /// its timeout says nothing about the instance.
    #[cfg(test)]
    pub(crate) fn excuses(&self, started: Instant, limit: Duration, now: Instant) -> bool {
        Self::excuses_running(self.running_within(started, limit, now), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A monitor started and kept awake for the next minute, as an attempt would.
    fn awake() -> (StallMonitor, JoinHandle<()>) {
        let (monitor, task) = StallMonitor::start("ratings");
        let now = Instant::now();
        monitor.watch_until(now, now + Duration::from_secs(60));
        (monitor, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_wake_is_a_stall_and_on_time_ticks_are_not() {
        let start = Instant::now();
        let (monitor, task) = awake();
        tokio::time::sleep(ms(55)).await;
        assert_eq!(
            monitor.stalled_between(start, Instant::now()),
            Duration::ZERO
        );
        // Frozen for 500 ms: the monitor expected to run at 60 ms and ran at 555 ms.
        tokio::time::advance(ms(500)).await;
        let now = Instant::now();
        assert_eq!(now - start, ms(555));
        assert_eq!(monitor.stalled_between(start, now), ms(495));
        assert_eq!(monitor.stalled_between(start + ms(300), now), ms(255));
        // Once the monitor has run, the stall is recorded, the same.
        tokio::time::sleep(ms(30)).await;
        assert_eq!(monitor.stalled_between(start, now), ms(495));
        assert_eq!(monitor.stalled_between(now, Instant::now()), Duration::ZERO);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_judge_that_runs_before_the_monitor_counts_the_stall_still_going_on() {
        let start = Instant::now();
        // Not started: its last run stays at `start`, as a monitor not yet caught up.
        let monitor = StallMonitor::new(start);
        tokio::time::advance(ms(25)).await;
        assert_eq!(
            monitor.stalled_between(start, Instant::now()),
            Duration::ZERO,
            "a tick and less than a stall late: nothing to say yet"
        );
        tokio::time::advance(ms(935)).await;
        assert_eq!(monitor.stalled_between(start, Instant::now()), ms(950));
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_is_remembered_through_the_short_stalls_of_catching_up() {
        // Frozen 900 ms, then busy: 30 ticks each 25 ms late, before a timed-out attempt
        // that spanned the freeze is judged.
        let (monitor, task) = awake();
        tokio::time::sleep(ms(5)).await;
        let started = Instant::now();
        tokio::time::advance(ms(900)).await;
        tokio::task::yield_now().await;
        for _ in 0..30 {
            tokio::time::sleep(ms(1)).await;
            tokio::time::advance(ms(34)).await;
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        assert!(
            monitor.stalled_between(started, now) >= ms(900),
            "the freeze is kept"
        );
        assert!(monitor.excuses(started, ms(300), now));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_excused_when_the_client_ran_less_than_nine_tenths_of_it() {
        let start = Instant::now();
        let monitor = StallMonitor::new(start);
        let limit = ms(300);
        // Frozen from 10 ms to 960 ms (the monitor has not run since the start).
        tokio::time::advance(ms(960)).await;
        let now = Instant::now();
        assert!(monitor.excuses(start, limit, now), "ran 10 ms of 960");
        assert!(
            monitor.excuses(now - ms(300), limit, now),
            "an attempt started 300 ms before the end of the stall ran 0 ms of it"
        );
        // A client that runs throughout: a timeout is the instance's.
        let (running, task) = awake();
        let started = Instant::now();
        tokio::time::sleep(limit).await;
        assert!(!running.excuses(started, limit, Instant::now()));
        // A 1 s attempt stalled 90 ms of 1000 ran 910: still the instance's; one stalled
        // 110 ms of 995 ran 885: not. (Sleeps end between the monitor's ticks.)
        let limit = ms(1000);
        let started = Instant::now();
        tokio::time::sleep(ms(905)).await;
        tokio::time::advance(ms(95)).await;
        assert_eq!(running.stalled_between(started, Instant::now()), ms(90));
        assert!(!running.excuses(started, limit, Instant::now()));
        tokio::time::sleep(ms(5)).await;
        let started = Instant::now();
        tokio::time::sleep(ms(880)).await;
        tokio::time::advance(ms(115)).await;
        assert_eq!(running.stalled_between(started, Instant::now()), ms(110));
        assert!(running.excuses(started, limit, Instant::now()));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_monitor_sleeps_and_an_attempt_wakes_it() {
        let (monitor, task) = StallMonitor::start("ratings");
        // No attempt for a minute: no stall to see (the monitor slept).
        tokio::time::sleep(Duration::from_secs(60)).await;
        let sent = Instant::now();
        monitor.watch_until(sent, sent + ms(300));
        tokio::time::sleep(ms(300)).await;
        assert_eq!(
            monitor.stalled_between(sent, Instant::now()),
            Duration::ZERO
        );
        // Asleep again a second after that deadline; an attempt wakes it and the client
        // freezes at once, before the monitor runs: the freeze is a stall, seen before and
        // after the monitor runs.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let sent = Instant::now();
        monitor.watch_until(sent, sent + ms(300));
        tokio::time::advance(ms(960)).await;
        let now = Instant::now();
        assert_eq!(monitor.stalled_between(sent, now), ms(950));
        tokio::task::yield_now().await;
        assert_eq!(monitor.stalled_between(sent, now), ms(950));
        task.abort();
    }
}
