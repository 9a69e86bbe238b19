//! [`FakeRatings`]: the handle a test holds for one fake instance, whether it is served on a
//! socket or in memory.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::Behaviour;
use crate::hyper_server::{self, Serve};
use crate::memory::Registration;
use crate::state::{InstanceState, Received};
use crate::tcp::Server;

/// One fake ratings instance: its address, its behaviour switch and its counters.
///
/// Started on a socket with [`FakeRatings::start`], or in memory with
/// [`InMemory::instance`](crate::InMemory::instance). Dropping it stops it, as
/// [`FakeRatings::stop`] does without waiting.
#[derive(Debug)]
#[must_use = "dropping a FakeRatings stops it"]
pub struct FakeRatings {
    /// Its base URL: `http://127.0.0.1:PORT` on a socket, `http://10.0.0.N:80` in memory.
    pub url: String,
    /// Its behaviour and counters, shared with whatever serves it.
    state: Arc<InstanceState>,
    /// What serves it: stopped on [`FakeRatings::stop`] or when dropped.
    serving: Serving,
}

#[derive(Debug)]
enum Serving {
    Socket(Server),
    Memory(Registration),
}

impl FakeRatings {
    /// Instance `instance` (the number its ratings answers report), behaving as `behaviour`,
    /// served on `127.0.0.1:0`. Panics if it cannot bind (a test cannot go on without it).
    pub async fn start(instance: u32, behaviour: Behaviour) -> FakeRatings {
        let (listener, addr) = bind().await;
        let state = InstanceState::new(instance, behaviour);
        let server = Server::spawn(listener, Arc::clone(&state));
        FakeRatings {
            url: format!("http://{addr}"),
            state,
            serving: Serving::Socket(server),
        }
    }

    /// Instance `instance` behaving as `behaviour`, served on `listener` (for an instance at
    /// an address of the test's choosing, such as one port on several loopback addresses
    /// behind one DNS name).
    pub fn start_on(instance: u32, behaviour: Behaviour, listener: TcpListener) -> FakeRatings {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake ratings has no local address: {e}"));
        let state = InstanceState::new(instance, behaviour);
        let server = Server::spawn(listener, Arc::clone(&state));
        FakeRatings {
            url: format!("http://{addr}"),
            state,
            serving: Serving::Socket(server),
        }
    }

    /// Instance `instance` behaving as `behaviour`, served on `127.0.0.1:0` by hyper as
    /// `serve` says: keep-alive HTTP/1.1 and HTTP/2 (h2c by prior knowledge; ALPN over
    /// TLS, with the URL `https://127.0.0.1:PORT`), counting connections
    /// ([`connections`](Self::connections)) and keeping each request
    /// ([`received`](Self::received)). Panics if it cannot bind or the PEM is bad.
    pub async fn serve(instance: u32, behaviour: Behaviour, serve: Serve) -> FakeRatings {
        let (listener, addr) = bind().await;
        let state = InstanceState::new(instance, behaviour);
        let scheme = if serve.tls.is_some() { "https" } else { "http" };
        let server = hyper_server::spawn(listener, Arc::clone(&state), &serve);
        FakeRatings {
            url: format!("{scheme}://{addr}"),
            state,
            serving: Serving::Socket(server),
        }
    }

    /// Connections accepted so far (by an instance started with [`serve`](Self::serve)).
    pub fn connections(&self) -> usize {
        self.state.connections()
    }

    /// Of the [`connections`](Self::connections), those that carried at least one request.
    pub fn used_connections(&self) -> usize {
        self.state.used_connections()
    }

    /// The requests received so far, as they arrived (by an instance started with
    /// [`serve`](Self::serve)).
    pub fn received(&self) -> Vec<Received> {
        self.state.received()
    }

    /// An instance served in memory (by [`InMemory`](crate::InMemory)).
    pub(crate) fn in_memory(
        url: String,
        state: Arc<InstanceState>,
        registration: Registration,
    ) -> Self {
        FakeRatings {
            url,
            state,
            serving: Serving::Memory(registration),
        }
    }

    /// The instance number its ratings answers report.
    pub fn instance(&self) -> u32 {
        self.state.instance()
    }

    /// From now on, answers requests as `behaviour` says (requests already received keep the
    /// behaviour they arrived under).
    pub fn set(&self, behaviour: Behaviour) {
        self.state.set(behaviour);
    }

    /// Requests received so far (a request counts once its head, and body, have been read).
    pub fn hits(&self) -> usize {
        self.state.hits()
    }

    /// Requests held right now: received and not yet answered, nor given up by the client.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    /// The most requests held at once since the start or the last [`FakeRatings::reset_max`].
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight()
    }

    /// Starts [`FakeRatings::max_in_flight`] again from the requests held now.
    pub fn reset_max(&self) {
        self.state.reset_max();
    }

    /// The `traceparent` header of every request received so far, in arrival order (`""`
    /// for a request without one).
    pub fn traceparents(&self) -> Vec<String> {
        self.state.traceparents()
    }

    /// When each request received so far arrived, in arrival order (`tokio::time::Instant`,
    /// so tests on paused time can assert exact instants).
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals()
    }

    /// Stops the instance: new connections (or in-memory calls) are refused, and requests
    /// it holds end (their connections close; in memory their calls fail with
    /// `io::ErrorKind::ConnectionReset`). On a socket this waits until the server is gone,
    /// and panics if that takes more than 5 s.
    pub async fn stop(self) {
        match self.serving {
            Serving::Socket(server) => server.stop().await,
            Serving::Memory(registration) => drop(registration),
        }
    }
}

/// A listener on `127.0.0.1:0` and its address. Panics if it cannot bind (a test cannot go
/// on without it).
async fn bind() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("fake ratings cannot bind 127.0.0.1:0: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("fake ratings has no local address: {e}"));
    (listener, addr)
}
