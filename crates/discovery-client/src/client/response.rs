//! An answer from one instance.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::{Error, Instance};

/// An instance's whole answer to one request.
///
/// ```no_run
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .build()?;
/// let response = ratings.get("/ratings/widget").await?;
/// println!("{} from instance {}", response.status, response.instance.id);
/// let body = response.success_body()?;
/// # let _ = body;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The instance that answered.
    pub instance: Instance,
}

impl Response {
    /// The answer `instance` gave.
    pub(crate) fn new(answer: http::Response<Bytes>, instance: Instance) -> Self {
        let (parts, body) = answer.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
            instance,
        }
    }

    /// The body, if the status is 2xx; otherwise [`Error::Status`].
    pub fn success_body(self) -> Result<Bytes, Error> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(Error::Status {
                address: self.instance.address,
                status: self.status.as_u16(),
            })
        }
    }

    /// Decodes a 2xx body as JSON; other statuses are [`Error::Status`].
    pub fn into_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let address = self.instance.address.clone();
        let body = self.success_body()?;
        super::decode_json(&body, &address)
    }
}
