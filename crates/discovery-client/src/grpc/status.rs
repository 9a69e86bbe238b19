//! [`status_of`]: this crate's errors as the gRPC statuses a tonic client reports.

use std::sync::Arc;

use tonic::{Code, Status};

use crate::Error;

/// The gRPC status a tonic client reports for a call that failed with `error`; its source
/// is `error`, so `status.source()` downcasts back to this crate's [`Error`].
///
/// - `UNAVAILABLE`: no instance could take the call ([`Error::AllInstancesDown`],
///   [`Error::CircuitOpen`]), discovery failed, or the instance's transport failed
///   ([`Error::Http`], [`Error::Tls`]).
/// - `DEADLINE_EXCEEDED`: the instance did not answer in time ([`Error::Timeout`],
///   [`Error::DeadlineExceeded`]).
/// - `RESOURCE_EXHAUSTED`: every instance pushed back ([`Error::Overloaded`]).
/// - `UNKNOWN`: anything else.
///
/// ```
/// use discovery_client::grpc::status_of;
/// use discovery_client::Error;
///
/// let status = status_of(Error::AllInstancesDown { service: "ratings".into() });
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.message(), "ratings: all services are down");
/// ```
pub fn status_of(error: Error) -> Status {
    let code = match &error {
        Error::AllInstancesDown { .. }
        | Error::CircuitOpen { .. }
        | Error::Discovery(_)
        | Error::Http { .. }
        | Error::Tls { .. } => Code::Unavailable,
        Error::Timeout { .. } | Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        Error::Overloaded { .. } => Code::ResourceExhausted,
        _ => Code::Unknown,
    };
    let mut status = Status::new(code, error.to_string());
    status.set_source(Arc::new(error));
    status
}
