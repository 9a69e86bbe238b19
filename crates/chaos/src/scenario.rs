//! The faults, how each is done to the cluster, and what each must show.
//!
//! Every fault hits instance 1 (or all instances, or the registry) while the market is
//! under load; most are healed after the fault window so the log must also show recovery.
//! The network faults (`netdelay`, `netloss`, `partition`) run instance 1 in its own network
//! namespace behind a veth pair and hurt the packets crossing it.

use std::fmt;
use std::time::Duration;

use cpu_quota::{CpuQuota, Quota};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::{BLACK_HOLE_ID, Cluster, Isolation};
use crate::tally::Tally;
use crate::transitions::{Kind, Transitions};

/// The latency injected by the `slow` fault: well above the market's 300 ms timeout.
pub const SLOW_MS: u64 = 1500;
/// The share of requests answered 500 by the `errors` fault.
pub const ERROR_RATE: f64 = 0.5;
/// The share of requests answered with a garbage body by the `garbage` fault.
pub const GARBAGE_RATE: f64 = 0.5;
/// The latency injected by the `gray` fault: well under the market's 300 ms timeout, so the
/// instance answers every call correctly, only late.
pub const GRAY_MS: u64 = 20;
/// The market's CPU quota in the `throttled` fault: 40 ms of CPU per second, as a container
/// limit (`cpu.max` "40000 1000000") sets it.
pub const THROTTLE: Quota = Quota {
    quota_us: 40_000,
    period_us: 1_000_000,
};
/// How long a flapping instance stays down, and then up.
pub const FLAP_PERIOD: Duration = Duration::from_secs(1);
/// The shortest window for `flap`, so even the quick form sees two down/up cycles.
const MIN_FLAP_WINDOW: Duration = Duration::from_secs(4);
/// The longest `etcd-quorum` keeps two of etcd's three members down (the 10 s).
pub const QUORUM_LOSS: Duration = Duration::from_secs(10);
/// The round trip the `netdelay` fault adds to instance 1's link: half of it each way.
pub const NET_DELAY: Duration = Duration::from_millis(200);
/// The most of the market's attempts instance 1 may take while the `netdelay` fault is on
/// (a fair share is a third): latency-aware balancing must send it little.
pub const NET_DELAY_MAX_SHARE: f64 = 0.1;
/// The share of packets dropped each way on instance 1's veth by the `netloss` fault.
pub const PACKET_LOSS: f64 = 0.1;
/// How long the `partition` fault cuts instance 1 off, whatever the profile's window:
/// longer than its registration TTL (3 s), so the registry drops it and it must register
/// again once healed.
pub const PARTITION: Duration = Duration::from_secs(10);
/// The ratings instances alive through every etcd scenario: the registry's listing must
/// never name fewer.
const LIVE: &[&str] = &["1", "2", "3"];

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// SIGSTOP instance 1, SIGCONT it after the window.
    Pause,
    /// SIGKILL instance 1 (no deregistration); it stays dead.
    KillOne,
    /// SIGKILL every instance, start them again after the window.
    KillAll,
    /// Instance 1 answers after 1.5 s, far beyond the 300 ms timeout; healed after.
    Slow,
    /// Instance 1 answers 500 to half its requests; healed after.
    Errors,
    /// Instance 1 answers half its requests with a 200 whose body is not JSON; healed after.
    Garbage,
    /// An instance that accepts TCP connections and never answers joins the service.
    Silent,
    /// SIGKILL the registry, start an empty one on the same port after the window.
    RegistryRestart,
    /// Instance 1 crashes (SIGKILL) and comes back every second, for the window.
    Flap,
    /// Instance 1 answers correctly but 20 ms late (a gray failure); healed after.
    Gray,
    /// The market's CPU is capped by a cgroup quota (40 ms per second) for the window; every
    /// instance stays healthy. Needs a writable cgroup cpu controller (root).
    Throttled,
    /// The registry on a 3-member etcd: etcd's leader SIGKILLed, restarted after the window.
    EtcdLeader,
    /// The registry on a 3-member etcd: two members SIGKILLed (quorum lost) for the window,
    /// at most 10 s, then restarted.
    EtcdQuorum,
    /// The registry on a 3-member etcd: the registry SIGKILLed, restarted on the same
    /// store after the window.
    EtcdRegistryRestart,
    /// Instance 1, in its own network namespace, reached through a relay that delays its
    /// traffic by 100 ms each way (200 ms more per round trip); healed after.
    NetDelay,
    /// Instance 1, in its own network namespace, loses 10 % of its packets each way on its
    /// veth (iptables `-m statistic`); healed after.
    NetLoss,
    /// Instance 1, in its own network namespace, cut off (iptables `DROP` on its veth) for
    /// 10 s, then healed.
    Partition,
}

impl Scenario {
    /// Every scenario, in the order they are run.
    pub const ALL: [Scenario; 17] = [
        Scenario::Pause,
        Scenario::KillOne,
        Scenario::KillAll,
        Scenario::Slow,
        Scenario::Errors,
        Scenario::Garbage,
        Scenario::Silent,
        Scenario::RegistryRestart,
        Scenario::Flap,
        Scenario::Gray,
        Scenario::Throttled,
        Scenario::EtcdLeader,
        Scenario::EtcdQuorum,
        Scenario::EtcdRegistryRestart,
        Scenario::NetDelay,
        Scenario::NetLoss,
        Scenario::Partition,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pause => "pause",
            Scenario::KillOne => "kill-one",
            Scenario::KillAll => "kill-all",
            Scenario::Slow => "slow",
            Scenario::Errors => "errors",
            Scenario::Garbage => "garbage",
            Scenario::Silent => "silent",
            Scenario::RegistryRestart => "registry-restart",
            Scenario::Flap => "flap",
            Scenario::Gray => "gray",
            Scenario::Throttled => "throttled",
            Scenario::EtcdLeader => "etcd-leader",
            Scenario::EtcdQuorum => "etcd-quorum",
            Scenario::EtcdRegistryRestart => "etcd-registry-restart",
            Scenario::NetDelay => "netdelay",
            Scenario::NetLoss => "netloss",
            Scenario::Partition => "partition",
        }
    }

    /// The scenario with this name.
    pub fn named(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What is done, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Pause => "SIGSTOP instance 1, SIGCONT after the window",
            Scenario::KillOne => "SIGKILL instance 1, no deregistration",
            Scenario::KillAll => "SIGKILL all 3 instances, restart them after the window",
            Scenario::Slow => "instance 1 latency 1500 ms (timeout 300 ms), healed after",
            Scenario::Errors => "instance 1 answers 500 at rate 0.5, healed after",
            Scenario::Garbage => "instance 1 answers garbage bodies at rate 0.5, healed after",
            Scenario::Silent => "a 4th instance accepts TCP and never answers",
            Scenario::RegistryRestart => "SIGKILL the registry, restart it empty after the window",
            Scenario::Flap => "instance 1 SIGKILLed and restarted every second",
            Scenario::Gray => "instance 1 latency 20 ms (timeout 300 ms), healed after",
            Scenario::Throttled => "the market's CPU capped at 40 ms per 1 s (cgroup quota)",
            Scenario::EtcdLeader => {
                "registry on 3-member etcd: SIGKILL etcd's leader, restart it after the window"
            }
            Scenario::EtcdQuorum => {
                "registry on 3-member etcd: SIGKILL 2 members (quorum lost) for the window (≤ 10 s), restart them"
            }
            Scenario::EtcdRegistryRestart => {
                "registry on 3-member etcd: SIGKILL the registry, restart it on the same etcd after the window"
            }
            Scenario::NetDelay => {
                "instance 1 in its own netns, its link 200 ms slower per round trip (relay), healed after"
            }
            Scenario::NetLoss => {
                "instance 1 in its own netns, 10 % of packets dropped each way on its veth, healed after"
            }
            Scenario::Partition => {
                "instance 1 in its own netns, every packet on its veth dropped for 10 s, healed"
            }
        }
    }

    /// Why this scenario cannot run on this machine, if it cannot (the `throttled` fault
    /// needs to create a cgroup, so root; the etcd faults need etcd and protoc; the
    /// network faults need to create a network namespace, and iptables). With `CI` set every
    /// scenario runs, and fails where it cannot, except the network faults where no
    /// namespace can be made: the machine does not allow them.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Scenario::Throttled if system_tests::in_ci() => None,
            Scenario::Throttled => cpu_quota::probe().err(),
            Scenario::NetDelay => crate::netns::unavailable(false),
            Scenario::NetLoss | Scenario::Partition => crate::netns::unavailable(true),
            _ if self.on_etcd() => crate::store::etcd_unavailable(),
            _ => None,
        }
    }

    /// Whether instance 1 runs in its own network namespace in this scenario, and how the
    /// market reaches it.
    pub fn isolation(self) -> Option<Isolation> {
        match self {
            Scenario::NetDelay => Some(Isolation::Relayed),
            Scenario::NetLoss | Scenario::Partition => Some(Isolation::Direct),
            _ => None,
        }
    }

    /// Whether the registry runs on a 3-member etcd cluster in this scenario, whose
    /// listing is then watched for lost registrations.
    pub fn on_etcd(self) -> bool {
        matches!(
            self,
            Scenario::EtcdLeader | Scenario::EtcdQuorum | Scenario::EtcdRegistryRestart
        )
    }

    /// The ratings instances that stay alive through the scenario, if the registry's
    /// listing is watched: it must never list fewer.
    pub fn live_instances(self) -> Option<&'static [&'static str]> {
        self.on_etcd().then_some(LIVE)
    }

    /// The most of the market's attempts the isolated instance may take while the fault is
    /// on, where the scenario bounds it.
    pub fn max_fault_share(self) -> Option<f64> {
        (self == Scenario::NetDelay).then_some(NET_DELAY_MAX_SHARE)
    }

    /// The fault window actually used for a requested `window`.
    pub fn window(self, window: Duration) -> Duration {
        match self {
            Scenario::Flap => window.max(MIN_FLAP_WINDOW),
            Scenario::EtcdQuorum => window.min(QUORUM_LOSS),
            Scenario::Partition => PARTITION,
            _ => window,
        }
    }

    /// Does the fault to `cluster`, holds it for the window, and heals it where the
    /// scenario heals.
    pub async fn inflict(self, cluster: &mut Cluster, window: Duration) -> Result<(), String> {
        let window = self.window(window);
        match self {
            Scenario::Pause => {
                cluster.pause(1)?;
                tokio::time::sleep(window).await;
                cluster.resume(1)?;
            }
            Scenario::KillOne => {
                cluster.kill(1)?;
                tokio::time::sleep(window).await;
            }
            Scenario::KillAll => {
                for n in 1..=3 {
                    cluster.kill(n)?;
                }
                tokio::time::sleep(window).await;
                for n in 1..=3 {
                    cluster.restart(n).await?;
                }
            }
            Scenario::Slow => {
                cluster
                    .set_faults(1, json!({ "latency_ms": SLOW_MS }))
                    .await?;
                tokio::time::sleep(window).await;
                cluster.heal(1).await?;
            }
            Scenario::Errors => {
                cluster
                    .set_faults(1, json!({ "error_rate": ERROR_RATE }))
                    .await?;
                tokio::time::sleep(window).await;
                cluster.heal(1).await?;
            }
            Scenario::Garbage => {
                let faults = json!({ "garbage_rate": GARBAGE_RATE });
                cluster.set_faults(1, faults).await?;
                tokio::time::sleep(window).await;
                cluster.heal(1).await?;
            }
            Scenario::Silent => {
                let started = Instant::now();
                cluster.add_black_hole().await?;
                // Once its breaker is open and the requests sent before that have timed
                // out, only probes reach the black hole: never two at a time.
                let url = cluster.black_hole_url().unwrap_or_default();
                let open = format!("OPEN breaker on [ratings at {url}]");
                cluster.wait_for_market_log(&open, window).await?;
                tokio::time::sleep(cluster.timeout() + Duration::from_millis(200)).await;
                cluster.reset_black_hole_max_held();
                tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
            }
            Scenario::RegistryRestart => {
                cluster.kill_registry();
                tokio::time::sleep(window).await;
                cluster.restart_registry().await;
            }
            Scenario::Gray => {
                cluster
                    .set_faults(1, json!({ "latency_ms": GRAY_MS }))
                    .await?;
                tokio::time::sleep(window).await;
                cluster.heal(1).await?;
            }
            Scenario::Throttled => {
                let name = format!("chaos-throttled-{}", std::process::id());
                let quota = CpuQuota::create(&name, THROTTLE)?;
                let pid = i32::try_from(cluster.market_pid())
                    .map_err(|_| "the market's pid does not fit a pid_t".to_owned())?;
                quota.add(pid)?;
                tokio::time::sleep(window).await;
                // Removing the group moves the market back to the unlimited parent.
                drop(quota);
            }
            Scenario::EtcdLeader => {
                let store = cluster.store();
                let leader = store.etcd_leader()?;
                store.kill_etcd(leader)?;
                tokio::time::sleep(window).await;
                cluster.store().restart_etcd(leader)?;
            }
            Scenario::EtcdQuorum => {
                let store = cluster.store();
                let leader = store.etcd_leader()?;
                let follower = (leader + 1) % 3;
                store.kill_etcd(leader)?;
                store.kill_etcd(follower)?;
                tokio::time::sleep(window).await;
                let store = cluster.store();
                store.restart_etcd(leader)?;
                store.restart_etcd(follower)?;
            }
            Scenario::EtcdRegistryRestart => {
                cluster.kill_registry();
                tokio::time::sleep(window).await;
                cluster.restart_registry().await;
            }
            Scenario::NetDelay => {
                cluster.delay_relay()?.set_delay(NET_DELAY / 2);
                tokio::time::sleep(window).await;
                cluster.delay_relay()?.set_delay(Duration::ZERO);
            }
            Scenario::NetLoss | Scenario::Partition => {
                let share = if self == Scenario::Partition {
                    1.0
                } else {
                    PACKET_LOSS
                };
                let netns = cluster.netns()?;
                tokio::task::block_in_place(|| netns.drop_packets(share))?;
                tokio::time::sleep(window).await;
                let netns = cluster.netns()?;
                tokio::task::block_in_place(|| netns.drop_packets(0.0))?;
            }
            Scenario::Flap => {
                let end = Instant::now() + window;
                while Instant::now() < end {
                    cluster.kill(1)?;
                    tokio::time::sleep(FLAP_PERIOD).await;
                    cluster.restart(1).await?;
                    tokio::time::sleep(FLAP_PERIOD).await;
                }
            }
        }
        Ok(())
    }

    /// What the run must show, beyond what every run must (no failed request, ...).
    pub fn expectations(self) -> Vec<Expect> {
        use Expect::{AtLeast, Never, NoStale, Registered, SomeStale};
        use Seen::{Added, AllDown, Outage, Recovered, Removed, Transition};
        let open = |id| AtLeast(Transition(Kind::Open, id));
        let close = |id| AtLeast(Transition(Kind::Close, id));
        match self {
            Scenario::Pause | Scenario::Slow | Scenario::Errors | Scenario::Garbage => {
                vec![open("1"), close("1")]
            }
            Scenario::Flap => vec![open("1"), close("1")],
            // Nothing fails: no breaker opens, no answer is stale.
            Scenario::Gray | Scenario::Throttled => vec![
                Never(Transition(Kind::Open, "1")),
                Never(Transition(Kind::Open, "2")),
                Never(Transition(Kind::Open, "3")),
                NoStale,
            ],
            Scenario::KillOne => vec![
                open("1"),
                Never(Transition(Kind::Close, "1")),
                AtLeast(Removed("1")),
            ],
            Scenario::KillAll => vec![
                open("1"),
                open("2"),
                open("3"),
                AtLeast(AllDown),
                SomeStale,
                close("1"),
                close("2"),
                close("3"),
            ],
            Scenario::Silent => vec![
                open(BLACK_HOLE_ID),
                AtLeast(Transition(Kind::Retest, BLACK_HOLE_ID)),
                Never(Transition(Kind::Close, BLACK_HOLE_ID)),
            ],
            Scenario::RegistryRestart => vec![
                AtLeast(Outage),
                AtLeast(Recovered),
                Registered(&["1", "2", "3"]),
                NoStale,
            ],
            // The market keeps its instances through any registry outage, so no answer is
            // stale; every instance is listed at the end (and, checked by the runner, at
            // every answered read in between).
            Scenario::EtcdLeader | Scenario::EtcdQuorum => vec![Registered(LIVE), NoStale],
            Scenario::EtcdRegistryRestart => vec![
                AtLeast(Outage),
                AtLeast(Recovered),
                Registered(LIVE),
                NoStale,
            ],
            // Answers 200 ms late, within the 300 ms timeout: the balancer sends it little
            // and the hedge covers what it is sent; nothing fails. A call that must open a
            // new connection to it takes two round trips (400 ms) and may open its breaker
            // once, so only the healthy instances' breakers must stay closed.
            Scenario::NetDelay => vec![
                Never(Transition(Kind::Open, "2")),
                Never(Transition(Kind::Open, "3")),
                NoStale,
            ],
            // Lost packets are sent again; the instance stays registered throughout.
            Scenario::NetLoss => vec![Registered(LIVE), NoStale],
            // Cut off for longer than its TTL: its calls time out (OPEN), the registry drops
            // it (removed), and once healed it registers again (added) and its breaker, kept
            // open while it was gone, closes on a probe.
            Scenario::Partition => vec![
                open("1"),
                close("1"),
                AtLeast(Removed("1")),
                AtLeast(Added("1")),
                Registered(LIVE),
                NoStale,
            ],
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something the market's log can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A breaker transition of one instance.
    Transition(Kind, &'static str),
    /// `all services are down`.
    AllDown,
    /// A discovery outage.
    Outage,
    /// A discovery recovery.
    Recovered,
    /// An instance removed from discovery.
    Removed(&'static str),
    /// An instance added to discovery after the load began (so: again).
    Added(&'static str),
}

impl Seen {
    fn count(self, transitions: &Transitions) -> usize {
        match self {
            Seen::Transition(kind, id) => transitions.count(kind, id),
            Seen::AllDown => transitions.all_down,
            Seen::Outage => transitions.outages,
            Seen::Recovered => transitions.recoveries,
            Seen::Removed(id) => transitions.removed(id),
            Seen::Added(id) => transitions.added(id),
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Transition(kind, id) => write!(f, "{} {id}", kind.word()),
            Seen::AllDown => f.write_str("all services are down"),
            Seen::Outage => f.write_str("discovery outage"),
            Seen::Recovered => f.write_str("discovery recovered"),
            Seen::Removed(id) => write!(f, "instance {id} removed"),
            Seen::Added(id) => write!(f, "instance {id} added"),
        }
    }
}

/// One thing a run must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Logged at least once.
    AtLeast(Seen),
    /// Never logged.
    Never(Seen),
    /// Some answers were served stale (the fallback was used).
    SomeStale,
    /// No answer was served stale.
    NoStale,
    /// At the end the registry lists exactly these ratings instances.
    Registered(&'static [&'static str]),
}

/// An expectation, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was expected.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen.
    pub observed: String,
}

impl Expect {
    /// Checks this expectation. `tally` is `None` while the load still runs (load-based
    /// expectations then count as met), `registered` is `None` when not asked.
    pub fn check(
        &self,
        transitions: &Transitions,
        tally: Option<&Tally>,
        registered: Option<&[String]>,
    ) -> Check {
        let (what, passed, observed) = match self {
            Expect::AtLeast(seen) => {
                let n = seen.count(transitions);
                (format!("{seen} seen"), n >= 1, format!("{n}×"))
            }
            Expect::Never(seen) => {
                let n = seen.count(transitions);
                (format!("never {seen}"), n == 0, format!("{n}×"))
            }
            Expect::SomeStale => {
                let stale = tally.map(|t| t.stale);
                let passed = stale.is_none_or(|n| n > 0);
                ("stale fallback used".to_owned(), passed, show(stale))
            }
            Expect::NoStale => {
                let stale = tally.map(|t| t.stale);
                let passed = stale.is_none_or(|n| n == 0);
                ("no stale answer".to_owned(), passed, show(stale))
            }
            Expect::Registered(ids) => {
                let passed = registered.is_some_and(|have| have == *ids);
                let observed = registered.map_or("not asked".to_owned(), |r| r.join(","));
                (
                    format!("registry lists {}", ids.join(",")),
                    passed,
                    observed,
                )
            }
        };
        Check {
            what,
            passed,
            observed,
        }
    }

    /// Whether checking this needs the registry's current listing.
    pub fn needs_registry(&self) -> bool {
        matches!(self, Expect::Registered(_))
    }
}

fn show(count: Option<u64>) -> String {
    count.map_or_else(|| "pending".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::named(scenario.name()), Some(scenario));
        }
        assert_eq!(Scenario::named("nope"), None);
    }

    #[test]
    fn registered_needs_the_exact_set() {
        let expect = Expect::Registered(&["1", "2"]);
        let none = Transitions::default();
        let both = ["1".to_owned(), "2".to_owned()];
        assert!(expect.check(&none, None, Some(&both)).passed);
        assert!(!expect.check(&none, None, Some(&both[..1])).passed);
        assert!(!expect.check(&none, None, None).passed);
    }
}
