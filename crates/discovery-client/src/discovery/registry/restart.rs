//! [`RestartGrace`]: noticing that the registry restarted, and keeping the instances it
//! forgot for a while.
//!
//! A restarted memory registry starts empty and learns its instances again only as each
//! one heartbeats (gets 404) and re-registers; until then it does not list them, though
//! they are healthy. So instances the previous answer listed and a restarted registry does
//! not are kept for the grace period; ones it lists again leave the kept set, and the rest
//! go when the period ends (instances really gone are caught by their breakers meanwhile).
//!
//! A restart is known by the registry's epoch (`X-Registry-Epoch`, chosen by each memory
//! registry at start; kept in etcd by an etcd-backed one, so it stays while the data
//! does): a different epoch from the last answer's is a restart, whatever the index did.
//! The index cannot tell on its own: a memory registry's index is one counter for every
//! service, so after a restart a service's index may be higher than before when other
//! services registered first. Only for a registry that sends no epoch does an index that
//! went down count as a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::Instance;

/// What the watcher learnt from one answer of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    /// The service's index.
    pub(super) index: u64,
    /// The registry's epoch, if it sends one.
    pub(super) epoch: Option<u64>,
    /// The instances listed.
    pub(super) instances: Vec<Instance>,
}

/// The instance set a watcher publishes, with restarted registries' forgetting smoothed
/// over (see the [module docs](self)).
#[derive(Debug)]
pub(super) struct RestartGrace {
    /// How long forgotten instances are kept.
    grace: Duration,
    /// The last answer's index and epoch; `None` before the first answer.
    last: Option<(u64, Option<u64>)>,
    /// The last answer's instances.
    listed: Vec<Instance>,
    /// Instances a restarted registry no longer lists, kept until `until`.
    kept: BTreeMap<String, Instance>,
    /// When the kept instances go; `None` when none are kept.
    until: Option<Instant>,
}

impl RestartGrace {
    /// No answer yet; forgotten instances are kept for `grace`.
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            last: None,
            listed: Vec::new(),
            kept: BTreeMap::new(),
            until: None,
        }
    }

    /// The epoch of the last answer, to send with the next query.
    pub(super) fn epoch(&self) -> Option<u64> {
        self.last.and_then(|(_, epoch)| epoch)
    }

    /// When the grace period under way ends, if one is.
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Whether `answer` comes from a registry that restarted since the last answer.
    fn restarted(&self, answer: &Answer) -> bool {
        let Some((last_index, last_epoch)) = self.last else {
            return false;
        };
        match answer.epoch {
            // A registry that sent none before and sends one now was replaced, too.
            Some(epoch) => last_epoch != Some(epoch),
            None => answer.index < last_index,
        }
    }

    /// Takes in the registry's answer; the set to publish.
    pub(super) fn answer(&mut self, answer: Answer) -> Vec<Instance> {
        if self.restarted(&answer) {
            let forgotten = self
                .listed
                .iter()
                .chain(self.kept.values())
                .filter(|kept| !answer.instances.iter().any(|i| i.id == kept.id))
                .map(|kept| (kept.id.clone(), kept.clone()))
                .collect::<BTreeMap<_, _>>();
            self.kept = forgotten;
            self.until = Some(Instant::now() + self.grace);
        }
        self.last = Some((answer.index, answer.epoch));
        self.listed = answer.instances;
        self.current()
    }

    /// Ends the grace period if it is over: `Some(set)` to publish when it just ended.
    pub(super) fn expire(&mut self) -> Option<Vec<Instance>> {
        let until = self.until?;
        if Instant::now() < until {
            return None;
        }
        self.until = None;
        self.kept.clear();
        Some(self.listed.clone())
    }

    /// The listed instances and those still kept.
    fn current(&mut self) -> Vec<Instance> {
        let listed = &self.listed;
        self.kept
            .retain(|id, _| !listed.iter().any(|instance| &instance.id == id));
        if self.kept.is_empty() {
            self.until = None;
        }
        let mut set = self.listed.clone();
        set.extend(self.kept.values().cloned());
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    fn answer(index: u64, epoch: Option<u64>, ids: &[&str]) -> Answer {
        Answer {
            index,
            epoch,
            instances: ids
                .iter()
                .map(|id| Instance::new(*id, format!("http://instance-{id}")))
                .collect(),
        }
    }

    fn ids(set: &[Instance]) -> Vec<&str> {
        let mut ids: Vec<&str> = set.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_epoch_keeps_forgotten_instances_even_when_the_index_went_up() {
        let mut grace = RestartGrace::new(GRACE);
        assert_eq!(
            ids(&grace.answer(answer(5, Some(1), &["1", "2", "3"]))),
            ["1", "2", "3"]
        );
        // The restarted registry: other services registered first, so the ratings index
        // is higher than before, and instance 2 is back already.
        let set = grace.answer(answer(9, Some(2), &["2"]));
        assert_eq!(
            ids(&set),
            ["1", "2", "3"],
            "no healthy instance leaves the set"
        );
        assert_eq!(grace.epoch(), Some(2));
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Instance 1 re-registers: listed again, no longer kept.
        assert_eq!(
            ids(&grace.answer(answer(10, Some(2), &["1", "2"]))),
            ["1", "2", "3"]
        );
        assert_eq!(grace.expire(), None);
        // Instance 3 never comes back: it goes when the grace period ends.
        tokio::time::sleep(GRACE - Duration::from_secs(10)).await;
        assert_eq!(
            grace.expire().map(|set| ids(&set).join(",")),
            Some("1,2".into())
        );
        assert_eq!(grace.until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn within_one_epoch_a_removal_is_a_removal_whatever_the_index() {
        let mut grace = RestartGrace::new(GRACE);
        grace.answer(answer(5, Some(7), &["1", "2"]));
        assert_eq!(ids(&grace.answer(answer(6, Some(7), &["1"]))), ["1"]);
        // An index that went down in the same epoch (another registry on the same etcd
        // whose view lags a little) is not a restart either.
        assert_eq!(
            ids(&grace.answer(answer(4, Some(7), &[]))),
            Vec::<&str>::new()
        );
        assert_eq!(grace.until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_epoch_an_index_that_went_down_is_a_restart() {
        let mut grace = RestartGrace::new(GRACE);
        grace.answer(answer(5, None, &["1", "2"]));
        assert_eq!(ids(&grace.answer(answer(6, None, &["1"]))), ["1"]);
        assert_eq!(ids(&grace.answer(answer(2, None, &[]))), ["1"]);
        assert_eq!(grace.until(), Some(Instant::now() + GRACE));
        // A registry that starts sending an epoch was replaced: a restart too.
        let mut grace = RestartGrace::new(GRACE);
        grace.answer(answer(5, None, &["1"]));
        assert_eq!(ids(&grace.answer(answer(8, Some(3), &[]))), ["1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_answer_is_taken_as_it_is() {
        let mut grace = RestartGrace::new(GRACE);
        assert_eq!(
            ids(&grace.answer(answer(0, Some(1), &[]))),
            Vec::<&str>::new()
        );
        assert_eq!(grace.until(), None);
    }
}
