//! [`CacheService`]: serves `GET`s from the response cache.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::Method;
use tower::Service;

use super::ResponseCache;
use crate::Error;

/// Serves `GET` requests from the response cache; made by [`CacheLayer`](super::CacheLayer).
///
/// - The key is the request's path and query. Other methods go straight to the inner service.
/// - A 2xx answer is cached and returned with [`Source::Live`](super::Source::Live) in its extensions; answers
///   from the cache carry [`Source::Cache`](super::Source::Cache). Concurrent misses of one key make a single
///   upstream call, whose answer all of them receive.
/// - When the upstream call fails (an error, or a 5xx answer) and an earlier good answer is
///   known, that answer is returned with [`Source::Stale`](super::Source::Stale); otherwise the error (or the 5xx
///   answer) comes through. Other answers (4xx) come through as they are, never cached.
///
/// The inner service must be `Clone` (each miss calls a clone); put a
/// [`Buffer`](https://docs.rs/tower/latest/tower/buffer/index.html) in between for one that
/// is not, such as [`Balancer`](crate::balance::Balancer).
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use discovery_client::cache::{CacheConfig, CacheLayer};
/// use discovery_client::Source;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(Bytes::from_static(b"{\"rating\":4}")))
/// });
/// let cached = CacheLayer::new("ratings", CacheConfig::default()).layer(upstream);
/// let get = || http::Request::get("/ratings/widget").body(()).unwrap();
/// let first = cached.clone().oneshot(get()).await.unwrap();
/// assert_eq!(first.extensions().get::<Source>(), Some(&Source::Live));
/// let second = cached.oneshot(get()).await.unwrap();
/// assert_eq!(second.extensions().get::<Source>(), Some(&Source::Cache));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CacheService<S> {
    /// The upstream service (a balancer over instances, typically).
    inner: S,
    /// Whole answers by path, shared by every clone.
    cache: ResponseCache<http::Response<Bytes>>,
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, cache: ResponseCache<http::Response<Bytes>>) -> Self {
        Self { inner, cache }
    }

    /// Forgets every cached answer, fresh and stale.
    pub fn clear(&self) {
        self.cache.clear();
    }
}

/// Why a miss produced no answer to cache.
#[derive(Clone)]
enum Miss {
    /// Upstream answered, but not with a 2xx: passed through, never cached.
    Answer(http::Response<Bytes>),
    /// Upstream failed.
    Failed(Error),
}

impl<S, B> Service<http::Request<B>> for CacheService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Bytes>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<Error>,
    B: Send + 'static,
{
    type Response = http::Response<Bytes>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The ready service goes with the request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.method() != Method::GET {
            return Box::pin(async move { inner.call(request).await.map_err(Into::into) });
        }
        let key = match request.uri().path_and_query() {
            Some(pq) => pq.as_str().to_string(),
            None => request.uri().path().to_string(),
        };
        let cache = self.cache.clone();
        Box::pin(async move {
            let fetch = async move {
                match inner.call(request).await {
                    Ok(answer) if answer.status().is_success() => Ok(answer),
                    Ok(answer) => Err(Miss::Answer(answer)),
                    Err(error) => Err(Miss::Failed(error.into())),
                }
            };
            let use_stale = |miss: &Miss| match miss {
                Miss::Answer(answer) => answer.status().is_server_error(),
                Miss::Failed(_) => true,
            };
            match cache.get_or_fetch_when(&key, fetch, use_stale).await {
                Ok((mut answer, source)) => {
                    answer.extensions_mut().insert(source);
                    Ok(answer)
                }
                Err(Miss::Answer(answer)) => Ok(answer),
                Err(Miss::Failed(error)) => Err(error),
            }
        })
    }
}
