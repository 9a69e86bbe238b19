//! Breaker transitions and probes, read back from the market's log.
//!
//! The library logs `OPEN breaker on [ratings at URL]`, `RETEST ...`, `CLOSE ...`,
//! `ratings using instance ID: URL` for every attempt, `ratings: all services are down`,
//! instances added and removed, and discovery outages and recoveries. This module counts
//! them per instance, and checks the
//! probe discipline: between a `RETEST` and the `OPEN` that follows a failed probe, at most
//! one attempt may go to that instance.
//!
//! Only retests that end in `OPEN` are checked: once a probe succeeds the breaker is closed
//! and ordinary traffic may be logged before the `CLOSE` line is written, which says nothing
//! about probes. On a starved machine that `CLOSE` line can even come after a later `OPEN`
//! (the thread that closed the breaker was descheduled while others kept calling), so a
//! `RETEST .. OPEN` window directly followed by a `CLOSE` is not judged. An attempt logged a
//! moment before the `RETEST` line that let it through is not counted either: the check can
//! miss a violation but does not invent one.

use std::collections::BTreeMap;
use std::fmt;

/// A kind of breaker transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `OPEN breaker on [...]`.
    Open,
    /// `RETEST breaker on [...]`.
    Retest,
    /// `CLOSE breaker on [...]`.
    Close,
}

impl Kind {
    /// The word in the log.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Open => "OPEN",
            Kind::Retest => "RETEST",
            Kind::Close => "CLOSE",
        }
    }

    const ALL: [Kind; 3] = [Kind::Open, Kind::Retest, Kind::Close];
}

/// What the market's log showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Transitions per (kind, instance id).
    counts: BTreeMap<(Kind, String), usize>,
    /// `all services are down` lines.
    pub all_down: usize,
    /// `discovery outage` lines.
    pub outages: usize,
    /// `discovery for ... recovered` lines.
    pub recoveries: usize,
    /// `instance ID removed` lines, per id.
    removed: BTreeMap<String, usize>,
    /// `instance ID added` lines, per id.
    added: BTreeMap<String, usize>,
    /// `using instance ID` lines (attempts), per id.
    attempts: BTreeMap<String, usize>,
    /// Per instance, the most attempts seen between a `RETEST` and the `OPEN` after it.
    max_probes: BTreeMap<String, usize>,
    /// Failed retests checked for the probe discipline.
    pub retests_checked: usize,
}

/// Per-instance reading state for the probe check.
#[derive(Debug, Default)]
struct Window {
    /// Inside RETEST .. OPEN/CLOSE.
    retesting: bool,
    /// Attempts seen since the RETEST.
    attempts: usize,
    /// A window that ended in OPEN, judged once the next transition shows it was not a
    /// late-logged CLOSE.
    pending: Option<usize>,
}

impl Transitions {
    fn judge(&mut self, id: &str, attempts: usize) {
        self.retests_checked += 1;
        let most = self.max_probes.entry(id.to_owned()).or_default();
        *most = (*most).max(attempts);
    }
}

impl Transitions {
    /// Reads `lines`, naming instances by `ids_by_address` (unknown addresses by their URL).
    pub fn read(lines: &[String], ids_by_address: &BTreeMap<String, String>) -> Transitions {
        let mut seen = Transitions::default();
        let mut windows: BTreeMap<String, Window> = BTreeMap::new();
        for line in lines {
            if let Some((kind, address)) = transition(line) {
                let id = ids_by_address
                    .get(address)
                    .cloned()
                    .unwrap_or_else(|| address.to_owned());
                let window = windows.entry(id.clone()).or_default();
                let pending = window.pending.take();
                match kind {
                    Kind::Retest => {
                        if let Some(attempts) = pending {
                            seen.judge(&id, attempts);
                        }
                        *window = Window {
                            retesting: true,
                            ..Window::default()
                        };
                    }
                    Kind::Open => {
                        if let Some(attempts) = pending {
                            seen.judge(&id, attempts);
                        }
                        let ended = window.retesting.then_some(window.attempts);
                        *window = Window {
                            pending: ended,
                            ..Window::default()
                        };
                    }
                    // A CLOSE right after an OPEN was logged late: the window before it
                    // held ordinary traffic, not probes.
                    Kind::Close => *window = Window::default(),
                }
                *seen.counts.entry((kind, id)).or_default() += 1;
            } else if let Some(id) = attempt(line) {
                *seen.attempts.entry(id.to_owned()).or_default() += 1;
                if let Some(window) = windows.get_mut(id) {
                    window.attempts += usize::from(window.retesting);
                }
            } else if line.contains("all services are down") {
                seen.all_down += 1;
            } else if line.contains("discovery outage for") {
                seen.outages += 1;
            } else if line.contains("discovery for") && line.contains("recovered") {
                seen.recoveries += 1;
            } else if let Some((id, change)) = membership(line) {
                let counts = match change {
                    Membership::Added => &mut seen.added,
                    Membership::Removed => &mut seen.removed,
                };
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        for (id, window) in windows {
            if let Some(attempts) = window.pending {
                seen.judge(&id, attempts);
            }
        }
        seen
    }

    /// How many `kind` transitions instance `id` went through.
    pub fn count(&self, kind: Kind, id: &str) -> usize {
        self.counts
            .get(&(kind, id.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// How many `kind` transitions all instances together went through.
    pub fn total(&self, kind: Kind) -> usize {
        self.counts
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many times the market said instance `id` was removed from discovery.
    pub fn removed(&self, id: &str) -> usize {
        self.removed.get(id).copied().unwrap_or(0)
    }

    /// How many times the market said instance `id` was added to discovery.
    pub fn added(&self, id: &str) -> usize {
        self.added.get(id).copied().unwrap_or(0)
    }

    /// The share of all attempts that went to instance `id`, if there was any attempt.
    pub fn share(&self, id: &str) -> Option<f64> {
        let all: usize = self.attempts.values().sum();
        let to_id = self.attempts.get(id).copied().unwrap_or(0);
        (all > 0).then(|| to_id as f64 / all as f64)
    }

    /// The most attempts any instance received during one failed retest (should be ≤ 1).
    pub fn max_probes_per_retest(&self) -> usize {
        self.max_probes.values().copied().max().unwrap_or(0)
    }
}

impl fmt::Display for Transitions {
    /// `OPEN 1×2, RETEST 1×1, CLOSE 1×1; all down ×3` (or `none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for kind in Kind::ALL {
            let per_id: Vec<String> = self
                .counts
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, id), n)| format!("{id}×{n}"))
                .collect();
            if !per_id.is_empty() {
                parts.push(format!("{} {}", kind.word(), per_id.join(" ")));
            }
        }
        if self.all_down > 0 {
            parts.push(format!("all-down×{}", self.all_down));
        }
        if self.outages > 0 || self.recoveries > 0 {
            parts.push(format!(
                "registry outage×{} recovered×{}",
                self.outages, self.recoveries
            ));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// `OPEN breaker on [ratings at URL]` → (Open, URL).
fn transition(line: &str) -> Option<(Kind, &str)> {
    let kind = Kind::ALL
        .into_iter()
        .find(|k| line.contains(&format!("{} breaker on [", k.word())))?;
    let rest = &line[line.find(" breaker on [")? + " breaker on [".len()..];
    let rest = &rest[rest.find(" at ")? + " at ".len()..];
    Some((kind, &rest[..rest.find(']')?]))
}

/// `ratings using instance ID: URL` → ID.
fn attempt(line: &str) -> Option<&str> {
    let rest = &line[line.find(" using instance ")? + " using instance ".len()..];
    rest.split(':').next()
}

/// An instance joining or leaving the market's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// `ratings instance ID added: URL`.
    Added,
    /// `ratings instance ID removed: URL`.
    Removed,
}

/// `ratings instance ID removed: URL` → (ID, Removed); `.. added: ..` → (ID, Added).
fn membership(line: &str) -> Option<(&str, Membership)> {
    let rest = &line[line.find(" instance ")? + " instance ".len()..];
    let (id, tail) = rest.split_once(' ')?;
    if tail.starts_with("removed:") {
        Some((id, Membership::Removed))
    } else if tail.starts_with("added:") {
        Some((id, Membership::Added))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn ids() -> BTreeMap<String, String> {
        BTreeMap::from([("http://127.0.0.1:9001".to_owned(), "1".to_owned())])
    }

    #[test]
    fn counts_transitions_per_instance_and_checks_probes() {
        let log = lines(
            "INFO ratings using instance 1: http://127.0.0.1:9001\n\
             WARN OPEN breaker on [ratings at http://127.0.0.1:9001] state=\"open\"\n\
             WARN RETEST breaker on [ratings at http://127.0.0.1:9001]\n\
             INFO ratings using instance 1: http://127.0.0.1:9001\n\
             WARN OPEN breaker on [ratings at http://127.0.0.1:9001]\n\
             WARN RETEST breaker on [ratings at http://127.0.0.1:9001]\n\
             INFO ratings using instance 1: http://127.0.0.1:9001\n\
             INFO CLOSE breaker on [ratings at http://127.0.0.1:9001]\n\
             INFO ratings using instance 1: http://127.0.0.1:9001\n\
             WARN ratings: all services are down\n\
             INFO ratings instance 1 removed: http://127.0.0.1:9001\n\
             INFO ratings instance 1 added: http://127.0.0.1:9001\n\
             WARN discovery outage for ratings, keeping the last known instances\n\
             INFO discovery for ratings recovered",
        );
        let seen = Transitions::read(&log, &ids());
        assert_eq!(seen.count(Kind::Open, "1"), 2);
        assert_eq!(seen.count(Kind::Retest, "1"), 2);
        assert_eq!(seen.count(Kind::Close, "1"), 1);
        assert_eq!(seen.total(Kind::Open), 2);
        assert_eq!((seen.all_down, seen.outages, seen.recoveries), (1, 1, 1));
        assert_eq!((seen.removed("1"), seen.added("1")), (1, 1));
        assert_eq!(seen.share("1"), Some(1.0));
        assert_eq!(seen.share("2"), Some(0.0));
        assert_eq!(seen.max_probes_per_retest(), 1);
        assert_eq!(seen.retests_checked, 1);
        assert_eq!(
            seen.to_string(),
            "OPEN 1×2, RETEST 1×2, CLOSE 1×1, all-down×1, registry outage×1 recovered×1"
        );
    }

    #[test]
    fn two_attempts_in_one_failed_retest_are_caught() {
        let log = lines(
            "OPEN breaker on [ratings at http://127.0.0.1:9001]\n\
             RETEST breaker on [ratings at http://127.0.0.1:9001]\n\
             ratings using instance 1: http://127.0.0.1:9001\n\
             ratings using instance 1: http://127.0.0.1:9001\n\
             OPEN breaker on [ratings at http://127.0.0.1:9001]",
        );
        assert_eq!(Transitions::read(&log, &ids()).max_probes_per_retest(), 2);
    }

    #[test]
    fn a_close_logged_after_the_next_open_is_not_taken_for_probes() {
        // The probe succeeded and closed the breaker, but the thread that logs CLOSE was
        // descheduled while ordinary traffic (and one failure) went on.
        let log = lines(
            "OPEN breaker on [ratings at http://127.0.0.1:9001]\n\
             RETEST breaker on [ratings at http://127.0.0.1:9001]\n\
             ratings using instance 1: http://127.0.0.1:9001\n\
             ratings using instance 1: http://127.0.0.1:9001\n\
             ratings using instance 1: http://127.0.0.1:9001\n\
             OPEN breaker on [ratings at http://127.0.0.1:9001]\n\
             CLOSE breaker on [ratings at http://127.0.0.1:9001]",
        );
        let seen = Transitions::read(&log, &ids());
        assert_eq!((seen.max_probes_per_retest(), seen.retests_checked), (0, 0));
    }

    #[test]
    fn unknown_addresses_are_named_by_their_url() {
        let log = lines("OPEN breaker on [ratings at http://127.0.0.1:7]");
        let seen = Transitions::read(&log, &ids());
        assert_eq!(seen.count(Kind::Open, "http://127.0.0.1:7"), 1);
    }
}
