//! [`InstanceGates`]: the gates of a [`GrpcChannel`](super::GrpcChannel)'s instances, by
//! address, for its status and its log lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::InstanceStatus;
use crate::balance::Roster;
use crate::breaker::Gate;

/// The gate (breaker and reporting: id, figures, push-back) of every instance discovery has
/// reported, by address (the balancer's key), filled as it reports them. Cheap to clone;
/// clones share the gates.
#[derive(Debug, Clone, Default)]
pub(super) struct InstanceGates(Arc<Mutex<HashMap<String, Gate>>>);

impl InstanceGates {
    /// Notes `gate`, the gate of the instance at its address.
    pub(super) fn insert(&self, gate: &Gate) {
        self.gates().insert(gate.address().to_owned(), gate.clone());
    }

    /// The id of the instance at `address`, or the address if it is not known.
    pub(super) fn id(&self, address: &str) -> String {
        self.gates().get(address).map_or_else(
            || address.to_owned(),
            |gate| gate.telemetry().id().to_owned(),
        )
    }

    /// The instances `roster` holds now, by id, as [`InstanceStatus`]es.
    pub(super) fn status(&self, roster: &Roster) -> Vec<InstanceStatus> {
        let now = Instant::now();
        let members = roster.shares(now);
        let gates = self.gates();
        let mut statuses: Vec<InstanceStatus> = members
            .iter()
            .filter_map(|member| {
                let gate = gates.get(&member.key)?;
                Some(InstanceStatus::of(gate, &member.load, member.share, now))
            })
            .collect();
        statuses.sort_by(|a, b| a.id.cmp(&b.id));
        statuses
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gate>> {
        // A panic while the lock was held cannot leave the map half-changed (one insert).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
