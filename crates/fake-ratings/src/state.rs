//! One instance's state, shared by the handle a test holds and the server answering for it:
//! the behaviour switch, and what the instance has received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use crate::Behaviour;

/// An instance's behaviour and counters.
#[derive(Debug)]
pub(crate) struct InstanceState {
    /// The instance number, reported in ratings answers.
    instance: u32,
    /// What the next request gets.
    behaviour: Mutex<Behaviour>,
    /// Requests received.
    hits: AtomicUsize,
    /// Requests held right now (received, not yet answered or given up).
    in_flight: AtomicUsize,
    /// The most requests held at once since the start or the last `reset_max`.
    max_in_flight: AtomicUsize,
    /// Each request's `traceparent` and arrival, in arrival order (one lock, so the two
    /// lists always line up).
    log: Mutex<Log>,
    /// Connections accepted (by the hyper server).
    connections: AtomicUsize,
    /// Of those, the ones that carried at least one request.
    used_connections: AtomicUsize,
    /// Requests as they arrived (by the hyper server).
    received: Mutex<Vec<Received>>,
}

/// A request as it arrived at an instance served by
/// [`FakeRatings::serve`](crate::FakeRatings::serve).
#[derive(Debug, Clone)]
pub struct Received {
    /// Its method.
    pub method: http::Method,
    /// Its path and query, as sent.
    pub target: String,
    /// The HTTP version it came over.
    pub version: http::Version,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its whole body.
    pub body: bytes::Bytes,
}

#[derive(Debug, Default)]
struct Log {
    traceparents: Vec<String>,
    arrivals: Vec<Instant>,
}

/// A request being held: counted in `in_flight` until this is dropped, which happens when
/// the answer is written, the connection closes, or (in memory) the call's future is dropped.
#[derive(Debug)]
pub(crate) struct Held(Arc<InstanceState>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks `mutex`; a panic elsewhere while holding it leaves plain data that is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InstanceState {
    pub(crate) fn new(instance: u32, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            instance,
            behaviour: Mutex::new(behaviour),
            hits: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            log: Mutex::new(Log::default()),
            connections: AtomicUsize::new(0),
            used_connections: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn instance(&self) -> u32 {
        self.instance
    }

    /// Counts a request that has just arrived and returns the behaviour to answer it with,
    /// and the guard that keeps it counted as held.
    pub(crate) fn receive(self: &Arc<Self>, traceparent: Option<&str>) -> (Behaviour, Held) {
        {
            let mut log = lock(&self.log);
            log.traceparents
                .push(traceparent.unwrap_or_default().to_string());
            log.arrivals.push(Instant::now());
        }
        // After the log, so a test that saw `hits` rise finds the request's entries.
        self.hits.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        (lock(&self.behaviour).clone(), Held(Arc::clone(self)))
    }

    pub(crate) fn set(&self, behaviour: Behaviour) {
        *lock(&self.behaviour) = behaviour;
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn reset_max(&self) {
        self.max_in_flight.store(self.in_flight(), Ordering::SeqCst);
    }

    pub(crate) fn traceparents(&self) -> Vec<String> {
        lock(&self.log).traceparents.clone()
    }

    pub(crate) fn arrivals(&self) -> Vec<Instant> {
        lock(&self.log).arrivals.clone()
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn used_connection(&self) {
        self.used_connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn used_connections(&self) -> usize {
        self.used_connections.load(Ordering::SeqCst)
    }

    pub(crate) fn record(&self, request: Received) {
        lock(&self.received).push(request);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }
}
