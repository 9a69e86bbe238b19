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
    /// What every attempt sends; turned into a [`Request`] only when one is sent (a cache
    /// hit builds none).
    parts: Parts,
    /// Whether a GET may be served from (and stored in) the response cache.
    cache: bool,
    /// The first thing that was wrong with the request, reported by `send`.
    invalid: Option<Error>,
}

/// A request as the builder holds it.
#[derive(Debug)]
struct Parts {
    method: Method,
    /// Path and query as given, with `.query(..)` pairs appended: also the cache key.
    path: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    retries: Option<u32>,
    idempotent: Option<bool>,
}

impl Parts {
    /// The request for `path` (taken out of these parts, as the cache key) under `client`'s
    /// rules, with this request's own overrides.
    fn request_at(self, client: &Inner, path: &str) -> Result<Request, Error> {
        let path = Request::parse_path(path)?;
        let idempotent = self.method.is_idempotent() || client.retry_non_idempotent;
        Ok(Request {
            retryable: self.idempotent.unwrap_or(idempotent),
            method: self.method,
            path,
            headers: self.headers,
            body: self.body,
            timeout: self.timeout.unwrap_or(client.timeout),
            deadline: self.deadline.or(client.deadline),
            max_retries: self.retries.unwrap_or(client.max_retries),
        })
    }

    /// Whether the response cache may answer it: a GET without a body or credentials (a
    /// shared cache must not hand one caller's authorized answer to another).
    fn is_cacheable(&self) -> bool {
        self.method == Method::GET
            && self.body.is_empty()
            && !self.headers.contains_key(AUTHORIZATION)
            && !self.headers.contains_key(COOKIE)
    }
}

impl RequestBuilder {
    pub(super) fn new(client: &ServiceClient, method: Method, path: &str) -> Self {
        Self {
            client: client.clone(),
            parts: Parts {
                method,
                path: path.to_string(),
                headers: HeaderMap::new(),
                body: Bytes::new(),
                timeout: None,
                deadline: None,
                retries: None,
                idempotent: None,
            },
            cache: true,
            invalid: None,
        }
    }

    /// Keeps the first error.
    fn refuse(mut self, error: Error) -> Self {
        self.invalid.get_or_insert(error);
        self
    }

    /// Adds a header (after any of the same name).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let name = match HeaderName::try_from(name) {
            Ok(name) => name,
            Err(e) => {
                return self.refuse(Error::InvalidRequest(format!("header name: {}", e.into())));
            }
        };
        match HeaderValue::try_from(value) {
            Ok(value) => {
                self.parts.headers.append(name, value);
                self
            }
            Err(e) => self.refuse(Error::InvalidRequest(format!(
                "header {name} value: {}",
                e.into()
            ))),
        }
    }

    /// Adds these headers, replacing any of the same names.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        if self.parts.headers.is_empty() {
            self.parts.headers = headers;
        } else {
            self.parts.headers.extend(headers);
        }
        self
    }

    /// Sets `Authorization: Bearer <token>`, marked sensitive (kept out of debug output).
    pub fn bearer_auth(mut self, token: impl std::fmt::Display) -> Self {
        match HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.parts.headers.insert(AUTHORIZATION, value);
                self
            }
            Err(_) => self.refuse(Error::InvalidRequest(
                "bearer token: invalid characters".into(),
            )),
        }
    }

    /// Appends `query` to the path's query string, URL-encoded: a slice of pairs, a map, or
    /// any struct that serializes as one (as serde_urlencoded does).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) if encoded.is_empty() => self,
            Ok(encoded) => {
                let separator = match self.parts.path.split_once('?') {
                    Some((_, existing)) if !existing.is_empty() => '&',
                    Some(_) => {
                        self.parts.path.pop();
                        '?'
                    }
                    None => '?',
                };
                self.parts.path.push(separator);
                self.parts.path.push_str(&encoded);
                self
            }
            Err(e) => self.refuse(Error::InvalidRequest(format!("query: {e}"))),
        }
    }

    /// Sends `body` as JSON, with `Content-Type: application/json` (unless a content type
    /// was set already).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(json) => {
                self.parts.body = Bytes::from(json);
                self.parts
                    .headers
                    .entry(CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                self
            }
            Err(e) => self.refuse(Error::InvalidRequest(format!("JSON body: {e}"))),
        }
    }

    /// Sends `body` as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.parts.body = body.into();
        self
    }

    /// This request's per-attempt timeout, in place of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            return self.refuse(Error::InvalidRequest(
                "timeout must be greater than zero".into(),
            ));
        }
        self.parts.timeout = Some(timeout);
        self
    }

    /// This request's overall deadline across its attempts, in place of the client's.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        if deadline.is_zero() {
            return self.refuse(Error::InvalidRequest(
                "deadline must be greater than zero".into(),
            ));
        }
        self.parts.deadline = Some(deadline);
        self
    }

    /// Retries on other instances for this request, in place of the client's
    /// [`max_retries`](crate::ServiceClientBuilder::max_retries) (0: one attempt only).
    /// Retries still need room in the retry budget.
    pub fn retries(mut self, retries: u32) -> Self {
        self.parts.retries = Some(retries);
        self
    }

    /// Whether this request may be sent more than once (retried, hedged). Default: as its
    /// method says (GET, PUT, DELETE, HEAD, OPTIONS yes; POST, PATCH no), or yes for all if
    /// the client allows retrying non-idempotent requests.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.parts.idempotent = Some(idempotent);
        self
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
        let Self {
            client,
            mut parts,
            cache,
            invalid,
        } = self;
        if let Some(error) = invalid {
            return Err(error);
        }
        let inner = &*client.inner;
        let key = std::mem::take(&mut parts.path);
        if !(cache && parts.is_cacheable()) {
            let request = parts.request_at(inner, &key)?;
            let answer = call::call(inner, &request, AsIs).await?;
            return Ok(answer.into_response(Source::Live));
        }
        let make = || parts.request_at(inner, &key);
        let (response, _) = cached(inner, &key, make, AsIs).await?;
        Ok(response)
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

/// Why a cached request's upstream call gave nothing to cache.
#[derive(Debug, Clone)]
enum NotCached {
    /// Every try failed: the stale answer may stand in.
    Failed(Error),
    /// An instance answered, but not with a 2xx: the caller's answer, not cached.
    Answered(Response),
}

/// The request `make` makes, through the response cache under `key` (its path and query);
/// a hit makes no request. Shared by [`RequestBuilder::send`] and the cached shortcuts.
pub(super) async fn cached<D: Decode>(
    inner: &Inner,
    key: &str,
    make: impl FnOnce() -> Result<Request, Error>,
    decode: D,
) -> Result<(Response, Option<D::Output>), Error> {
    // The value of an answer fetched by this call, decoded while its attempt was judged.
    let mut fetched = None;
    let fetch = async {
        let request = make().map_err(NotCached::Failed)?;
        let mut answer = call::call(inner, &request, decode)
            .await
            .map_err(NotCached::Failed)?;
        if !answer.response.status().is_success() {
            return Err(NotCached::Answered(answer.into_response(Source::Live)));
        }
        fetched = answer.value.take();
        Ok(CachedBody::of(answer.into_response(Source::Live)))
    };
    let use_stale = |e: &NotCached| matches!(e, NotCached::Failed(_));
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
