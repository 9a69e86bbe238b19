//! Counts our client's breaker openings while a scenario runs (from
//! `ServiceClient::subscribe()`), for one instance or for all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use discovery_client::Event;
use tokio::task::JoinHandle;

use crate::contender::Contender;

/// Breaker openings counted since [`Openings::watch`]; stops counting when dropped.
pub struct Openings {
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Openings {
    /// Starts counting the openings of `contender`'s breakers on `address` (every instance's
    /// with `None`); `None` for contenders that are not our client.
    pub fn watch(contender: &Contender, address: Option<&str>) -> Option<Openings> {
        let Contender::Ours(client) = contender else {
            return None;
        };
        let mut events = client.subscribe();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let address = address.map(str::to_string);
        let task = tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let Event::BreakerOpened {
                    address: opened, ..
                } = &event
                {
                    if address.as_ref().is_none_or(|a| a == opened) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Some(Openings { count, task })
    }

    /// The openings so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Openings {
    fn drop(&mut self) {
        self.task.abort();
    }
}
