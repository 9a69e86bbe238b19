//! An answer from one instance.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::{Error, Instance};

/// An instance's whole answer to one request.
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
