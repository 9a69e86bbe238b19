//! [`RequestBuilder`]: one request, in reqwest's shape, sent through a [`ServiceClient`].

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;

use super::call::{self, Request};
use super::decode::{AsIs, Decode};
use super::response::Answer;
use super::{CachedBody, Inner, ServiceClient};
use crate::{Error, Response, Source};

/// A request to one service, built step by step and sent with [`send`](Self::send) (or by
/// awaiting it). Made by [`ServiceClient::get`], [`post`](ServiceClient::post),
/// [`put`](ServiceClient::put), [`patch`](ServiceClient::patch),
/// [`delete`](ServiceClient::delete) and [`request`](ServiceClient::request).
///
/// Every attempt sends the same method, path, query, headers and body (the body is
/// [`Bytes`], so a retry or a hedge resends it as it is). A request whose method is not
/// idempotent (POST, PATCH) is sent once, never retried or hedged, unless marked
/// [`idempotent`](Self::idempotent) or the client allows it
/// ([`retry_non_idempotent`](crate::ServiceClientBuilder::retry_non_idempotent)).
///
/// A GET with no body and no `Authorization` or `Cookie` header goes through the client's
/// response cache (fresh answers for the cache TTL, one upstream call for concurrent
/// misses, the last good answer when every instance fails: see [`Response::source`]),
/// unless [`no_cache`](Self::no_cache). Only 2xx answers are cached.
///
/// Invalid input (a header name or value, a query or JSON body that does not serialize) is
/// reported by `send` as [`Error::InvalidRequest`], and nothing is sent.
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// #[derive(serde::Serialize)]
/// struct NewRating<'a> { item_id: &'a str, rating: u8 }
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["https://ratings-1.internal:8443"]))
///     .build()?;
/// let created = ratings
///     .post("/ratings")
///     .bearer_auth("s3cret")
///     .query(&[("notify", "false")])
///     .json(&NewRating { item_id: "widget", rating: 5 })
///     .timeout(Duration::from_millis(300))
///     .idempotent(true) // safe to resend: the server dedupes by item
///     .send()
///     .await?
///     .error_for_status()?;
/// println!("{} from instance {}", created.status(), created.instance().id);
/// # Ok(()) }
/// ```
#[must_use = "a request does nothing until it is sent (`.send().await` or `.await`)"]
#[derive(Debug)]
pub struct RequestBuilder {
    client: ServiceClient,
    /// The request so far, or the first thing that was wrong with it.
    request: Result<Request, Error>,
    /// Query pairs to append to the path, serialized when sent.
    query: Vec<String>,
    /// Whether a GET may be served from (and stored in) the response cache.
    cache: bool,
}

impl RequestBuilder {
    pub(super) fn new(client: &ServiceClient, method: Method, path: &str) -> Self {
        Self {
            request: Request::new(&client.inner, method, path),
            client: client.clone(),
            query: Vec::new(),
            cache: true,
        }
    }

    /// Applies `change` to the request, or keeps the error it already has.
    fn with(mut self, change: impl FnOnce(&mut Request) -> Result<(), Error>) -> Self {
        if let Ok(request) = &mut self.request {
            if let Err(error) = change(request) {
                self.request = Err(error);
            }
        }
        self
    }

    /// Adds a header (after any of the same name).
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.with(|request| {
            let name = HeaderName::try_from(name)
                .map_err(|e| Error::InvalidRequest(format!("header name: {}", e.into())))?;
            let value = HeaderValue::try_from(value)
                .map_err(|e| Error::InvalidRequest(format!("header {name} value: {}", e.into())))?;
            request.headers.append(name, value);
            Ok(())
        })
    }

    /// Adds these headers, replacing any of the same names.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.with(|request| {
            request.headers.extend(headers);
            Ok(())
        })
    }

    /// Sets `Authorization: Bearer <token>`, marked sensitive (kept out of debug output).
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> Self {
        self.with(|request| {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Error::InvalidRequest("bearer token: invalid characters".into()))?;
            value.set_sensitive(true);
            request.headers.insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// Appends `query` to the path's query string, URL-encoded: a slice of pairs, a map, or
    /// any struct that serializes as one (as serde_urlencoded does).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) if encoded.is_empty() => self,
            Ok(encoded) => {
                self.query.push(encoded);
                self
            }
            Err(e) => self.with(|_| Err(Error::InvalidRequest(format!("query: {e}")))),
        }
    }

    /// Sends `body` as JSON, with `Content-Type: application/json` (unless a content type
    /// was set already).
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        let json = serde_json::to_vec(body);
        self.with(|request| {
            let json = json.map_err(|e| Error::InvalidRequest(format!("JSON body: {e}")))?;
            request.body = Bytes::from(json);
            request
                .headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Ok(())
        })
    }

    /// Sends `body` as it is.
    pub fn body(self, body: impl Into<Bytes>) -> Self {
        self.with(|request| {
            request.body = body.into();
            Ok(())
        })
    }

    /// This request's per-attempt timeout, in place of the client's.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|request| match timeout.is_zero() {
            true => Err(Error::InvalidRequest(
                "timeout must be greater than zero".into(),
            )),
            false => {
                request.timeout = timeout;
                Ok(())
            }
        })
    }

    /// This request's overall deadline across its attempts, in place of the client's.
    pub fn deadline(self, deadline: Duration) -> Self {
        self.with(|request| match deadline.is_zero() {
            true => Err(Error::InvalidRequest(
                "deadline must be greater than zero".into(),
            )),
            false => {
                request.deadline = Some(deadline);
                Ok(())
            }
        })
    }

    /// Retries on other instances for this request, in place of the client's
    /// [`max_retries`](crate::ServiceClientBuilder::max_retries) (0: one attempt only).
    /// Retries still need room in the retry budget.
    pub fn retries(self, retries: u32) -> Self {
        self.with(|request| {
            request.max_retries = retries;
            Ok(())
        })
    }

    /// Whether this request may be sent more than once (retried, hedged). Default: as its
    /// method says (GET, PUT, DELETE, HEAD, OPTIONS yes; POST, PATCH no), or yes for all if
    /// the client allows retrying non-idempotent requests.
    pub fn idempotent(self, idempotent: bool) -> Self {
        self.with(|request| {
            request.retryable = idempotent;
            Ok(())
        })
    }

    /// Neither serves this GET from the response cache nor stores its answer there.
    pub fn no_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// Sends the request: see [`ServiceClient`] for what a call does (pick, attempt, maybe
    /// hedge, maybe retry). The answer is the first attempt that did not fail, whatever its
    /// status (a 4xx is returned as it is, never retried); when every try failed, the last
    /// failure (a 5xx answer as [`Error::Status`]).
    pub async fn send(self) -> Result<Response, Error> {
        let (response, _) = self.send_decoded(AsIs).await?;
        Ok(response)
    }

    /// Sends the request, `decode` judging 2xx bodies with the attempts; the value is `None`
    /// for an answer it did not decode here (a cached or stale one, or another status).
    pub(super) async fn send_decoded<D: Decode>(
        self,
        decode: D,
    ) -> Result<(Response, Option<D::Output>), Error> {
        let Self {
            client,
            request,
            query,
            cache,
        } = self;
        let mut request = request?;
        if !query.is_empty() {
            request.append_query(&query.join("&"))?;
        }
        let inner = &*client.inner;
        if !(cache && is_cacheable(&request)) {
            let mut answer = call::call(inner, &request, decode).await?;
            let value = answer.value.take();
            return Ok((answer.into_response(Source::Live), value));
        }
        cached(inner, &request, decode).await
    }
}

impl IntoFuture for RequestBuilder {
    type Output = Result<Response, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// Awaiting a request sends it: `client.get("/x").await` is `client.get("/x").send().await`.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Whether the response cache may answer `request`: a GET without a body or credentials
/// (a shared cache must not hand one caller's authorized answer to another).
fn is_cacheable(request: &Request) -> bool {
    request.method == Method::GET
        && request.body.is_empty()
        && !request.headers.contains_key(AUTHORIZATION)
        && !request.headers.contains_key(COOKIE)
}

/// Why a cached request's upstream call gave nothing to cache.
#[derive(Debug, Clone)]
enum NotCached {
    /// Every try failed: the stale answer may stand in.
    Failed(Error),
    /// An instance answered, but not with a 2xx: the caller's answer, not cached.
    Answered(Response),
}

/// `request` through the response cache, keyed by its path and query.
async fn cached<D: Decode>(
    inner: &Inner,
    request: &Request,
    decode: D,
) -> Result<(Response, Option<D::Output>), Error> {
    // The value of an answer fetched by this call, decoded while its attempt was judged.
    let mut fetched = None;
    let fetch = async {
        let mut answer = call::call(inner, request, decode)
            .await
            .map_err(NotCached::Failed)?;
        if !answer.response.status().is_success() {
            return Err(NotCached::Answered(answer.into_response(Source::Live)));
        }
        fetched = answer.value.take();
        Ok(CachedBody::of(answer.into_response(Source::Live)))
    };
    let use_stale = |e: &NotCached| matches!(e, NotCached::Failed(_));
    let key = request.path.as_str();
    match inner.cache.get_or_fetch_when(key, fetch, use_stale).await {
        Ok((cached, source)) => {
            let value = fetched.filter(|_| source == Source::Live);
            Ok((cached.response(source), value))
        }
        Err(NotCached::Answered(response)) => Ok((response, None)),
        Err(NotCached::Failed(error)) => Err(error),
    }
}

impl<T> Answer<T> {
    /// The answer as the public [`Response`], marked with where it came from.
    pub(super) fn into_response(self, source: Source) -> Response {
        Response::new(self.response, self.instance, source)
    }
}

impl CachedBody {
    /// What the cache keeps of a 2xx answer.
    fn of(response: Response) -> Self {
        Self { response }
    }

    /// The cached answer, marked with where it came from this time.
    fn response(self, source: Source) -> Response {
        self.response.with_source(source)
    }
}
