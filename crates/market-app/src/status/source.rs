//! [`StatusSource`]: the ratings client whose instances the status pages show: the one that
//! carries the ratings calls.

use discovery_client::events::EventBus;
use discovery_client::grpc::GrpcChannel;
use discovery_client::{Event, InstanceStatus, ServiceClient};
use tokio::sync::broadcast;

/// The client that carries the market's ratings calls, as `/status`, `/api/status`, its
/// history and `/health` read it: its instances (breakers, shares, latency estimates) and
/// its events. Cheap to clone.
#[derive(Debug, Clone)]
pub enum StatusSource {
    /// The HTTP client (`--ratings-protocol http`, the default).
    Http(ServiceClient),
    /// The gRPC channel (`--ratings-protocol grpc`).
    Grpc {
        /// The channel the calls go through.
        channel: GrpcChannel,
        /// Where the channel publishes its events.
        events: EventBus,
    },
}

impl StatusSource {
    /// The upstream service's name (`ratings`).
    pub fn service(&self) -> &str {
        match self {
            StatusSource::Http(client) => client.service(),
            StatusSource::Grpc { channel, .. } => channel.service(),
        }
    }

    /// The instances the client knows right now, as it sees them.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        match self {
            StatusSource::Http(client) => client.instances(),
            StatusSource::Grpc { channel, .. } => channel.instances(),
        }
    }

    /// The client's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        match self {
            StatusSource::Http(client) => client.subscribe(),
            StatusSource::Grpc { events, .. } => events.subscribe(),
        }
    }
}
