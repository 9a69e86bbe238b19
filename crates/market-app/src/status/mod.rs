//! The live view of the ratings instances: `/status` (HTML), `/api/status` (JSON) and the
//! `watch` terminal program.
//!
//! The per-instance figures (breaker state, attempts in flight, requests, failures, recent
//! latency) are the ratings client's own, from [`ServiceClient::instances`], or with
//! `--ratings-protocol grpc` the gRPC channel's ([`GrpcChannel::instances`]): whichever
//! carries the ratings calls ([`StatusSource`]). The market adds only how the ratings it
//! showed were had, from its [`SourceCounter`].
//!
//! - [`report`]: [`StatusReport`], the `/api/status` JSON, which `watch` reads back.
//! - [`table`]: the report as a text table, for `watch`.
//! - [`history`]: the last five minutes per instance (a sample a second) and the last events,
//!   for the live dashboard on `/status`, its stream and `watch --timeline`.
//! - [`timeline`]: that history as text, one line per instance, for `watch --timeline`.
//! - [`source`]: [`StatusSource`], the client these figures are read from.
//!
//! [`ServiceClient::instances`]: discovery_client::ServiceClient::instances
//! [`GrpcChannel::instances`]: discovery_client::grpc::GrpcChannel::instances
//! [`SourceCounter`]: crate::ratings::SourceCounter

pub mod history;
pub mod report;
pub mod source;
pub mod table;
pub mod timeline;

pub use history::{History, HistoryReport, Update};
pub use report::{InstanceReport, StatusReport};
pub use source::StatusSource;
