//! Talking to an etcd cluster through whichever member answers.
//!
//! etcd-client balances requests over all endpoints, and keeps sending some to a member that
//! is down. So this keeps one client per endpoint and sticks to one member, moving to the
//! next when a call fails in a way another member might not (transport errors, timeouts,
//! "no leader"). Every call is bounded: each attempt by `attempt_timeout`, all attempts
//! together by `call_timeout`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, Error};
use tokio::time::Instant;

/// Why a call did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// No member answered within the call's time: retry later.
    Unavailable(String),
    /// A member answered with an error that another member would give too.
    Refused(Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(reason) => write!(f, "etcd unavailable: {reason}"),
            Self::Refused(error) => write!(f, "etcd refused: {error}"),
        }
    }
}

/// One client per etcd member, and which one is in use.
pub struct Connection {
    /// `(endpoint, client)` in the configured order.
    clients: Vec<(String, Client)>,
    /// Index into `clients` of the member in use.
    current: AtomicUsize,
    /// Bound on one attempt against one member.
    attempt_timeout: Duration,
    /// Bound on a whole call, all attempts included.
    call_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoints", &self.endpoints())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Clients for `endpoints` (`http://host:port`). Connecting is lazy: this fails only on
    /// a malformed endpoint, and the first call finds out whether anything answers.
    pub async fn new(
        endpoints: &[String],
        attempt_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, Error> {
        let options = ConnectOptions::new()
            .with_connect_timeout(attempt_timeout)
            .with_timeout(attempt_timeout)
            // Dead connections are noticed even while a watch is idle.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader refuses (and ends watches) rather than
            // serving stale data: the call moves on to another member.
            .with_require_leader(true);
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            clients.push((endpoint.clone(), client));
        }
        if clients.is_empty() {
            return Err(Error::InvalidArgs("no etcd endpoints".into()));
        }
        Ok(Self {
            clients,
            current: AtomicUsize::new(0),
            attempt_timeout,
            call_timeout,
        })
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.clients
            .iter()
            .map(|(endpoint, _)| endpoint.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The bound on one attempt.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The member in use: its index (for [`Connection::failed`]) and a client for it.
    pub fn pick(&self) -> (usize, Client) {
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        (index, self.clients[index].1.clone())
    }

    /// Moves off member `index` after it failed (unless another caller already moved).
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `op` against the member in use, moving to the next member and trying again on
    /// errors another member might not give, until it succeeds or `call_timeout` passes.
    ///
    /// `op` may run more than once, and an attempt that timed out may still have been
    /// applied: callers make their writes conditional, and check after a failed condition.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, CallError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let deadline = Instant::now() + self.call_timeout;
        let members = self.clients.len();
        let mut last = String::from("no attempt finished in time");
        // Bounded by the deadline: each pass takes at least a few milliseconds (the
        // attempt, or a pause after every full round of members).
        for attempt in 1.. {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let (index, client) = self.pick();
            let limit = self.attempt_timeout.min(deadline - now);
            match tokio::time::timeout(limit, op(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) if !is_retryable(&error) => return Err(CallError::Refused(error)),
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => {
                    last = format!("{} did not answer within {limit:?}", self.clients[index].0)
                }
            }
            self.failed(index);
            if attempt % members == 0 {
                // Every member failed once: give an election or a restart a moment.
                let pause = Duration::from_millis(50 * (attempt / members).min(10) as u64);
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
        Err(CallError::Unavailable(last))
    }
}

/// The message etcd-client gives when a kept-alive lease does not exist (any more).
pub const LEASE_NOT_FOUND: &str = "lease not found";

/// gRPC status codes worth another try, possibly on another member: Cancelled, Unknown,
/// DeadlineExceeded, ResourceExhausted, Aborted, Internal, Unavailable.
const RETRYABLE_CODES: [i32; 7] = [1, 2, 4, 8, 10, 13, 14];

/// Whether another attempt (possibly on another member) might succeed.
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::TransportError(_) | Error::IoError(_) | Error::WatchError(_) => true,
        Error::LeaseKeepAliveError(message) => message != LEASE_NOT_FOUND,
        Error::GRpcStatus(status) => RETRYABLE_CODES.contains(&i32::from(status.code())),
        _ => false,
    }
}

/// Whether `error` says the lease does not exist (expired or revoked).
pub fn is_lease_not_found(error: &CallError) -> bool {
    match error {
        CallError::Refused(Error::LeaseKeepAliveError(message)) => message == LEASE_NOT_FOUND,
        // gRPC NotFound, as LeaseRevoke and LeaseTimeToLive answer for an unknown lease.
        CallError::Refused(Error::GRpcStatus(status)) => i32::from(status.code()) == 5,
        _ => false,
    }
}
