//! [`Drain`]: tells every connection that shutdown has begun, then waits for each to finish.

use tokio::sync::watch;

/// Held by the accept loop; each connection task holds a [`Watch`] from it.
#[derive(Debug)]
pub(crate) struct Drain {
    /// `true` once shutdown has begun. Its receivers are the connections still open.
    tx: watch::Sender<bool>,
}

/// A connection's view of the [`Drain`]: says when to stop, and by being dropped tells the
/// drain that the connection has finished.
#[derive(Debug)]
pub(crate) struct Watch {
    rx: watch::Receiver<bool>,
}

impl Drain {
    /// No connection yet, no shutdown yet.
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// A watch for one more connection.
    pub(crate) fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells every connection to finish, and completes once each has dropped its watch.
    pub(crate) async fn finish(self) {
        self.tx.send_replace(true);
        self.tx.closed().await;
    }
}

impl Watch {
    /// Completes once shutdown has begun (at once if it already has), or the drain is gone.
    pub(crate) async fn signalled(&mut self) {
        // An error means the drain was dropped: the server is gone, so stop too.
        let _ = self.rx.wait_for(|begun| *begun).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn finish_signals_every_watch_and_waits_until_each_is_dropped() {
        let drain = Drain::new();
        let mut first = drain.watch();
        let second = drain.watch();
        let finished = tokio::spawn(drain.finish());
        first.signalled().await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!finished.is_finished(), "one connection is still open");
        drop(second);
        tokio::time::timeout(Duration::from_millis(1), finished)
            .await
            .expect("finished once the last watch is dropped")
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_drain_counts_as_a_signal() {
        let drain = Drain::new();
        let mut watch = drain.watch();
        drop(drain);
        watch.signalled().await;
    }
}
