//! An answer from one instance.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::Slot;
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

/// The answer a call ended with, and the instance that gave it, before anything is copied
/// out: [`get_json`](super::ServiceClient::get_json) needs neither the headers nor a copy
/// of the [`Instance`], which a [`Response`] carries.
pub(crate) struct Answer {
    /// The instance's answer.
    pub(crate) response: http::Response<Bytes>,
    /// The endpoints the call picked from.
    pub(crate) endpoints: Arc<[Slot]>,
    /// Which of them answered.
    pub(crate) index: usize,
}

impl Answer {
    fn instance(&self) -> &Instance {
        &self.endpoints[self.index].instance
    }

    /// The answer as the public [`Response`].
    pub(crate) fn into_response(self) -> Response {
        let instance = self.instance().clone();
        Response::new(self.response, instance)
    }

    /// The body, if the status is 2xx; otherwise [`Error::Status`].
    pub(crate) fn success_body(self) -> Result<Bytes, Error> {
        if self.response.status().is_success() {
            Ok(self.response.into_body())
        } else {
            Err(self.status_error())
        }
    }

    /// Decodes a 2xx body as JSON; other statuses are [`Error::Status`].
    pub(crate) fn into_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        if self.response.status().is_success() {
            super::decode_json(self.response.body(), &self.instance().address)
        } else {
            Err(self.status_error())
        }
    }

    fn status_error(&self) -> Error {
        Error::Status {
            address: self.instance().address.clone(),
            status: self.response.status().as_u16(),
        }
    }
}
