//! [`HttpEndpoint`]: the leaf service that sends one request to one instance over HTTP.
//!
//! It takes an `http::Request<Bytes>` whose URI is a path (such as `/ratings/widget?x=1`),
//! sends it to the instance's base address with `reqwest`, and answers with the whole body
//! read, as an `http::Response<Bytes>`, so that a classifier above it can judge the body. A
//! request that could not be sent, or whose answer could not be read, fails with
//! [`Error::Http`] naming the instance. Timeouts are the business of the
//! [`Timeout`](crate::timeout::Timeout) layer around it.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tower::Service;

use crate::Error;

/// Sends requests to the instance at one base address; see the [module docs](self).
///
/// ```no_run
/// use bytes::Bytes;
/// use discovery_client::transport::HttpEndpoint;
/// use tower::ServiceExt;
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let endpoint = HttpEndpoint::new("http://127.0.0.1:8001");
/// let request = http::Request::get("/ratings/widget").body(Bytes::new()).unwrap();
/// let answer = endpoint.oneshot(request).await?;
/// println!("{} {:?}", answer.status(), answer.body());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// The HTTP client (connection pool) requests go through.
    client: reqwest::Client,
    /// The instance's base URL, without a trailing `/`.
    address: Arc<str>,
    /// The base URL parsed once, when it is a bare origin (no path, query or fragment):
    /// each request's URL is then a copy with the request's path and query set, instead of
    /// the address and path joined and parsed again, host included, on every request.
    origin: Option<reqwest::Url>,
}

impl HttpEndpoint {
    /// Sends to the instance at `address` (such as `http://127.0.0.1:8001`) with a default
    /// HTTP client.
    pub fn new(address: impl AsRef<str>) -> Self {
        Self::with_client(reqwest::Client::new(), address)
    }

    /// Sends to the instance at `address` through `client` (share one client, and so one
    /// connection pool, among all endpoints).
    pub fn with_client(client: reqwest::Client, address: impl AsRef<str>) -> Self {
        let address = address.as_ref().trim_end_matches('/');
        let origin = reqwest::Url::parse(address).ok().filter(|url| {
            !url.cannot_be_a_base()
                && url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none()
        });
        Self {
            client,
            address: Arc::from(address),
            origin,
        }
    }

    /// The instance's base address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The URL of `path_and_query` (such as `/ratings/widget?x=1`) at this instance: the
    /// same URL as the address and the path joined and parsed.
    fn url(&self, path_and_query: &str) -> Result<reqwest::Url, Error> {
        if let Some(origin) = &self.origin {
            let (path, query) = match path_and_query.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (path_and_query, None),
            };
            let mut url = origin.clone();
            url.set_path(path);
            url.set_query(query);
            return Ok(url);
        }
        let url = format!("{}{path_and_query}", self.address);
        reqwest::Url::parse(&url).map_err(|e| Error::InvalidRequest(format!("URL {url:?}: {e}")))
    }
}

impl Service<http::Request<Bytes>> for HttpEndpoint {
    type Response = http::Response<Bytes>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest queues requests in its own pool.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let url = self.url(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        let client = self.client.clone();
        let address = Arc::clone(&self.address);
        Box::pin(async move {
            let mut outgoing = reqwest::Request::new(parts.method, url?);
            *outgoing.headers_mut() = parts.headers;
            if !body.is_empty() {
                *outgoing.body_mut() = Some(body.into());
            }
            let mut answer = client
                .execute(outgoing)
                .await
                .map_err(|e| http_error(&address, &e))?;
            let status = answer.status();
            let headers = std::mem::take(answer.headers_mut());
            let body = answer.bytes().await.map_err(|e| http_error(&address, &e))?;
            let mut response = http::Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(response)
        })
    }
}

/// The error with its causes, which is where reqwest says what really happened.
fn http_error(address: &str, error: &reqwest::Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Http {
        address: address.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_those_of_the_address_and_path_joined_and_parsed() {
        let paths = [
            "/",
            "/ratings/widget",
            "/ratings/widget?x=1&y=%20z",
            "/a/../b/./c",
            "//double/slash",
            "/x?",
            "/%7Euser/caf%C3%A9",
            "/p?q=a?b",
        ];
        for address in [
            "http://127.0.0.1:8001",
            "http://127.0.0.1:8001/",
            "http://localhost",
            "https://Example.COM:443",
            "http://[::1]:8080",
            // Not bare origins: joined and parsed per request.
            "http://127.0.0.1:8001/api",
            "http://127.0.0.1:8001/api/",
        ] {
            let endpoint = HttpEndpoint::new(address);
            for path in paths {
                let joined = format!("{}{path}", address.trim_end_matches('/'));
                let expected = reqwest::Url::parse(&joined).expect("valid URL");
                assert_eq!(
                    endpoint.url(path).expect("valid URL"),
                    expected,
                    "{address} + {path}"
                );
            }
        }
    }

    #[test]
    fn an_address_that_does_not_parse_fails_each_request_by_name() {
        let endpoint = HttpEndpoint::new("not a url");
        let error = endpoint.url("/x").expect_err("invalid");
        assert!(
            matches!(&error, Error::InvalidRequest(m) if m.contains("not a url/x")),
            "{error:?}"
        );
    }
}
