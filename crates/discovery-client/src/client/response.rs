//! What a call answers: [`Response`] for the caller, [`Answer`] inside the client.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use serde::de::DeserializeOwned;

use super::decode::{Decode, Json, Refused};
use crate::{Error, Instance, Source};

/// An instance's whole answer to one request (its body already read, within the attempt's
/// timeout, so reading it here never waits). Cheap to clone.
///
/// ```no_run
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// #[derive(serde::Deserialize)]
/// struct Rating { item_id: String, rating: u8 }
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .build()?;
/// let response = ratings.get("/ratings/widget").send().await?;
/// println!("{} from instance {} ({})", response.status(), response.instance().id,
///     response.source().as_str());
/// let rating: Rating = response.json()?;
/// # let _ = rating;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    /// Status, version and headers, shared by clones (and by cached answers).
    head: Arc<Head>,
    body: Bytes,
    instance: Arc<Instance>,
    source: Source,
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

impl Response {
    pub(crate) fn new(
        response: http::Response<Bytes>,
        instance: Arc<Instance>,
        source: Source,
    ) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            head: Arc::new(Head {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
            }),
            body,
            instance,
            source,
        }
    }

    /// The same answer, marked as coming from `source`.
    pub(crate) fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The HTTP version the instance answered with (`HTTP/2.0` over h2).
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The answer's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The instance that answered (for a cached or stale answer, the one that gave it).
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Whether the answer is live, from the fresh cache, or a stale fallback.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The whole body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The whole body, taken.
    pub fn bytes(self) -> Bytes {
        self.body
    }

    /// The body as UTF-8 text; [`Error::Decode`] if it is not.
    pub fn text(self) -> Result<String, Error> {
        String::from_utf8(self.body.to_vec())
            .map_err(|e| Refused::malformed(e.to_string()).into_error(&self.instance.address))
    }

    /// Decodes a 2xx body as JSON; any other status is [`Error::Status`] (carrying the
    /// headers and the start of the body), a body that does not decode is [`Error::Decode`].
    pub fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        if !self.status().is_success() {
            return Err(self.into_error());
        }
        Json::<T>::new()
            .decode(&self.body)
            .map_err(|refused| refused.into_error(&self.instance.address))
    }

    /// The answer as [`Error::Status`].
    fn into_error(self) -> Error {
        Error::status(
            &self.instance.address,
            self.status(),
            self.headers(),
            &self.body,
        )
    }

    /// The answer if its status is 2xx (or 1xx/3xx); a 4xx or 5xx as [`Error::Status`].
    pub fn error_for_status(self) -> Result<Self, Error> {
        let status = self.status();
        if status.is_client_error() || status.is_server_error() {
            return Err(self.into_error());
        }
        Ok(self)
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
}
