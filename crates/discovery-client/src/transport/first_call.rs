//! [`FirstCalls`]: one call at a time to an `https://` instance until it has answered once.
//!
//! Over TLS the protocol is known only after the handshake (ALPN). hyper's pool cannot share
//! a connection before it knows the protocol, so a cold burst of N calls to one instance
//! starts N handshakes; when ALPN then says h2, it keeps one connection and drops the rest.
//! Measured here: 200 calls at once to two instances made 64 and 112 handshakes, and under
//! load they took long enough to time calls out. So the first call to an instance whose
//! pool may be cold goes alone, and the others wait for its answer (bounded by their own
//! timeouts): then an h2 connection is pooled and they share it, or (HTTP/1.1) they open
//! their own as usual.
//!
//! "May be cold": never answered, or not for longer than the pool keeps an idle
//! connection. A connection the server closes sooner (an HTTP/2 GOAWAY) is not seen here;
//! the burst after it still races.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::uri::Authority;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What is known of each `https://` authority's pool.
#[derive(Debug, Clone)]
pub(crate) struct FirstCalls {
    by_authority: Arc<DashMap<Authority, State>>,
    /// How long the pool keeps an idle connection: an answer older than this may have left
    /// no connection behind.
    idle: Option<Duration>,
}

#[derive(Debug, Clone)]
enum State {
    /// A first call is under way; the others wait to be notified.
    Probing(Arc<Notify>),
    /// Answered last at this instant.
    Answered(Instant),
}

/// What a call to one authority does now.
pub(crate) enum Turn {
    /// Go: the pool has (or recently had) a connection.
    Go,
    /// Go alone: the others wait until this guard is finished or dropped.
    First(FirstGuard),
    /// Wait for the first call's answer, then ask again.
    Wait(Arc<Notify>),
}

impl FirstCalls {
    pub(crate) fn new(idle: Option<Duration>) -> Self {
        Self {
            by_authority: Arc::default(),
            idle,
        }
    }

    /// Whether a call to `authority` may go now.
    pub(crate) fn turn(&self, authority: &Authority) -> Turn {
        let now = Instant::now();
        let warm = |at: Instant| self.idle.is_none_or(|idle| now.duration_since(at) < idle);
        match self.by_authority.get(authority).map(|s| s.clone()) {
            Some(State::Answered(at)) if warm(at) => return Turn::Go,
            Some(State::Probing(notify)) => return Turn::Wait(notify),
            _ => {}
        }
        let mut entry = self
            .by_authority
            .entry(authority.clone())
            .or_insert(State::Answered(now));
        match &*entry {
            State::Probing(notify) => Turn::Wait(Arc::clone(notify)),
            // Another caller's first call answered since the look above.
            State::Answered(at) if *at != now && warm(*at) => Turn::Go,
            State::Answered(_) => {
                let notify = Arc::new(Notify::new());
                *entry = State::Probing(Arc::clone(&notify));
                Turn::First(FirstGuard {
                    calls: self.clone(),
                    authority: authority.clone(),
                    notify,
                })
            }
        }
    }

    /// Waits until the first call to `authority` under way (through `notify`) ends; at once
    /// if it already has.
    pub(crate) async fn wait(&self, authority: &Authority, notify: Arc<Notify>) {
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        let still_probing = matches!(
            self.by_authority.get(authority).as_deref(),
            Some(State::Probing(n)) if Arc::ptr_eq(n, &notify)
        );
        if still_probing {
            notified.await;
        }
    }

    /// Notes an answer from `authority` (the pool has a connection to it).
    pub(crate) fn answered(&self, authority: &Authority) {
        if self.idle.is_none() {
            return;
        }
        let now = Instant::now();
        if let Some(mut state) = self.by_authority.get_mut(authority) {
            if let State::Answered(at) = &mut *state {
                *at = now;
            }
        }
    }
}

/// The first call to an authority: when it ends (answered or not) or is dropped, the
/// waiting calls go.
pub(crate) struct FirstGuard {
    calls: FirstCalls,
    authority: Authority,
    notify: Arc<Notify>,
}

impl FirstGuard {
    /// The first call got an answer: the pool has a connection.
    pub(crate) fn answered(self) {
        self.calls
            .by_authority
            .insert(self.authority.clone(), State::Answered(Instant::now()));
    }
}

impl Drop for FirstGuard {
    fn drop(&mut self) {
        // Not answered (failed, or dropped): the next caller goes first.
        self.calls.by_authority.remove_if(
            &self.authority,
            |_, state| matches!(state, State::Probing(n) if Arc::ptr_eq(n, &self.notify)),
        );
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Authority {
        Authority::from_static("127.0.0.1:8443")
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_call_goes_alone_and_the_others_go_once_it_answers() {
        let calls = FirstCalls::new(Some(Duration::from_secs(30)));
        let Turn::First(first) = calls.turn(&authority()) else {
            panic!("the first call goes first");
        };
        let Turn::Wait(notify) = calls.turn(&authority()) else {
            panic!("the second waits");
        };
        let waiter = tokio::spawn({
            let calls = calls.clone();
            async move { calls.wait(&authority(), notify).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        first.answered();
        waiter.await.expect("woken");
        assert!(matches!(calls.turn(&authority()), Turn::Go));
        // Answered 29 s ago: still warm; after the pool's idle time, cold again.
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(matches!(calls.turn(&authority()), Turn::Go));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(matches!(calls.turn(&authority()), Turn::First(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_call_that_fails_or_is_dropped_lets_the_next_go_first() {
        let calls = FirstCalls::new(Some(Duration::from_secs(30)));
        let Turn::First(first) = calls.turn(&authority()) else {
            panic!("first");
        };
        let Turn::Wait(notify) = calls.turn(&authority()) else {
            panic!("waits");
        };
        drop(first);
        // Woken at once (the notification is not lost), and first in turn now.
        calls.wait(&authority(), notify).await;
        assert!(matches!(calls.turn(&authority()), Turn::First(_)));
    }
}
