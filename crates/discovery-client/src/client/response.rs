//! What a call answers: [`Response`] for the caller, [`Answer`] inside the client.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::decode::{Decode, Json};
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
    /// The instance that answered, shared with the client.
    pub instance: Arc<Instance>,
}

impl Response {
    /// The body, if the status is 2xx; otherwise [`Error::Status`].
    pub fn success_body(self) -> Result<Bytes, Error> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(Error::status(
                &self.instance.address,
                self.status,
                &self.headers,
                &self.body,
            ))
        }
    }

    /// Decodes a 2xx body as JSON; other statuses are [`Error::Status`].
    pub fn into_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let address = self.instance.address.clone();
        let body = self.success_body()?;
        Json::<T>::new()
            .decode(&body)
            .map_err(|message| Error::Decode { address, message })
    }
}

/// The answer a call ended with: the instance's response, the value its decoder made of a
/// 2xx body, and the instance that gave it.
#[derive(Debug)]
pub(crate) struct Answer<T> {
    /// The instance's response.
    pub(crate) response: http::Response<Bytes>,
    /// The decoded body: `Some` for a 2xx answer, `None` for any other (a 4xx).
    pub(crate) value: Option<T>,
    /// The instance that answered.
    pub(crate) instance: Arc<Instance>,
}

impl<T> Answer<T> {
    /// The decoded 2xx body; for another status, [`Error::Status`].
    pub(crate) fn into_value(self) -> Result<T, Error> {
        match self.value {
            Some(value) => Ok(value),
            None => Err(Error::status(
                &self.instance.address,
                self.response.status(),
                self.response.headers(),
                self.response.body(),
            )),
        }
    }

    /// The answer as the public [`Response`].
    pub(crate) fn into_response(self) -> Response {
        let (parts, body) = self.response.into_parts();
        Response {
            status: parts.status,
            headers: parts.headers,
            body,
            instance: self.instance,
        }
    }
}
