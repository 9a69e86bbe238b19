//! A one-shot, cloneable shutdown signal.
//!
//! [`crate::run`] triggers it when its shutdown future completes. Background tasks (the
//! sweeper) stop on it, and blocking queries return their current answer at once, so a
//! graceful shutdown is not held up by watchers parked for up to `--max-wait`.

use tokio::sync::watch;

/// Shutdown signal shared by the server, its handlers and its background tasks.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// `true` once shutdown has begun; never goes back to `false`.
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the signal has fired (at once if it already has).
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // `wait_for` only fails if the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn triggered_completes_for_waiters_before_and_after_the_trigger() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        let early = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.triggered().await }
        });
        tokio::task::yield_now().await;
        assert!(!early.is_finished());
        shutdown.trigger();
        early.await.unwrap();
        assert!(shutdown.is_triggered());
        shutdown.triggered().await;
    }
}
