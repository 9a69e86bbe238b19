//! The live view of the ratings instances: `/status` (HTML), `/api/status` (JSON) and the
//! `watch` terminal program.
//!
//! The per-instance figures (breaker state, attempts in flight, requests, failures, recent
//! latency) are the ratings client's own, from [`ServiceClient::instances`]; the market adds
//! only how the ratings it showed were had, from its [`SourceCounter`].
//!
//! - [`report`]: [`StatusReport`], the `/api/status` JSON, which `watch` reads back.
//! - [`table`]: the report as a text table, for `watch`.
//!
//! [`ServiceClient::instances`]: discovery_client::ServiceClient::instances
//! [`SourceCounter`]: crate::ratings::SourceCounter

pub mod report;
pub mod table;

pub use report::{InstanceReport, StatusReport};
