//! The live view of the ratings instances: `/status` (HTML), `/api/status` (JSON) and the
//! `watch` terminal program.
//!
//! - [`book`]: [`StatusBook`], the market's own per-instance record of its ratings calls
//!   (answered calls, recent latencies, breaker-opening failures).
//! - [`report`]: [`StatusReport`], the `/api/status` JSON, which `watch` reads back.
//! - [`table`]: the report as a text table, for `watch`.

pub mod book;
pub mod report;
pub mod table;

pub use book::StatusBook;
pub use report::{InstanceReport, SourceTotals, StatusReport};
