//! gRPC through the library: a tonic client on any [`Discovery`], with per-instance
//! breakers, picking and per-attempt timeouts (feature `grpc`).
//!
//! [`channel`] builds a [`GrpcChannel`], a cloneable [`tower::Service`] that a generated
//! tonic client takes in place of tonic's own `Channel`:
//!
//! ```no_run
//! # mod ratings_api { pub mod ratings_client { pub struct RatingsClient<T>(T); impl<T> RatingsClient<T> { pub fn new(t: T) -> Self { Self(t) } } } }
//! use std::time::Duration;
//! use discovery_client::grpc::{self, GrpcConfig};
//! use discovery_client::RegistryDiscovery;
//! use ratings_api::ratings_client::RatingsClient;
//!
//! # #[tokio::main] async fn main() -> Result<(), discovery_client::Error> {
//! let config = GrpcConfig::default()
//!     .timeout(Duration::from_secs(1))
//!     .retest_delay(Duration::from_secs(30));
//! let channel = grpc::channel("ratings", RegistryDiscovery::new("http://127.0.0.1:8500"), config)?;
//! let ratings = RatingsClient::new(channel);
//! # let _ = ratings; Ok(()) }
//! ```
//!
//! Each call goes through the same pieces as the tower stack of the crate's docs:
//!
//! - [`Balancer`](crate::balance::Balancer) picks an instance by the [`Balance`] rule among
//!   those whose breaker grants a permit (`ratings using instance 2: http://...`); when none
//!   does, the call fails at once with `UNAVAILABLE` (`ratings: all services are down`).
//! - The instance's breaker, [streamed](crate::breaker::StreamedAnswer): a call is judged
//!   by its `grpc-status`, from the headers of a trailers-only answer or from the trailers
//!   that end the stream. `UNAVAILABLE`, `DEADLINE_EXCEEDED`, transport errors and
//!   timeouts are the instance's failures (`OPEN breaker on [ratings at http://...]`);
//!   `RESOURCE_EXHAUSTED` is back-pressure, and the instance is passed over for a while;
//!   every other status is the application's answer and trips nothing.
//! - The per-attempt [`Timeout`](crate::timeout::Timeout) bounds the time to the answer's
//!   head: a server stream runs as long as it runs. A call's own deadline, the
//!   `grpc-timeout` that tonic's `Request::set_timeout` sets (and the server is told),
//!   bounds the whole call, retries and hedges included: `DEADLINE_EXCEEDED` when it
//!   passes, blaming no instance.
//! - The leaf is one HTTP/2 connection per instance (hyper's), which concurrent calls
//!   share, made by the first call and made again after it closes: prior knowledge to an
//!   `http://` address; TLS with ALPN `h2` to an `https://` one, trusting what
//!   [`GrpcConfig::tls`] says (the system's roots by default). A certificate the client
//!   does not trust is an instance failure ([`Error::Tls`]), as on the HTTP path.
//! - No queue and no task of the channel's own: a call picks its instance in the caller's
//!   task (the balancer is shared by the channel's clones, locked while one picks) and
//!   is handed straight to the instance's connection.
//!
//! Errors reach the tonic client as a [`tonic::Status`] whose source is this crate's
//! [`Error`]: `UNAVAILABLE` for no instance, an open breaker or a transport failure,
//! `DEADLINE_EXCEEDED` for a timeout, `RESOURCE_EXHAUSTED` when every instance pushed back.
//!
//! Calls of the methods marked with [`GrpcConfig::idempotent`] (unary methods only, such
//! as `/ratings.v1.Ratings/GetRating`) are also retried and hedged, on an instance the call
//! has not used, within [`GrpcConfig::max_retries`] and the retry budget:
//!
//! - **Retry** after an instance failure seen in the answer's head: `UNAVAILABLE`,
//!   `RESOURCE_EXHAUSTED`, a transport failure or the head's timeout. `NOT_FOUND` and every
//!   other status are the call's answer; a call whose status comes in trailers has been
//!   answered and is not sent again.
//! - **Hedge** an attempt with no head after the hedge delay ([`Hedging`]; by default
//!   twice the recent p99, at least 50 ms): one more attempt elsewhere (`ratings instance 1
//!   has not answered in 50ms: hedging on instance 2`), the first good head winning. The
//!   other attempt is not cancelled: it runs to its end in a task of its own, so that its
//!   breaker judges it (a paused instance's breaker opens when its attempt times out).
//! - The request is buffered to be sent again: one larger than 64 KiB is sent once.

mod channel;
mod config;
mod instances;
mod leaf;
mod retry;
mod shared;
mod status;

pub use channel::{GrpcChannel, ResponseBody, channel};
pub use config::GrpcConfig;
pub use status::status_of;

#[cfg(doc)]
use crate::{Balance, Discovery, Error, Hedging};
