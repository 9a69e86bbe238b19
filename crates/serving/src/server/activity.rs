//! [`Activity`]: what one connection is doing (requests in flight, idle since when, a
//! request's headers begun), and so when it has been unfinished or idle too long.
//!
//! The rules, for a connection with no request in flight:
//!
//! - **Headers** ([`Timeouts::header_read`]): a new connection must complete its TLS
//!   handshake (if any) and send its first request's headers within this time of being
//!   accepted; on an HTTP/1.1 keep-alive connection, a request whose first byte has arrived
//!   must have all its headers within this time of that byte. A client that sends nothing,
//!   or a header byte every few seconds (slowloris), is closed then.
//! - **Idle** ([`Timeouts::idle`]): a connection that has answered at least one request and
//!   has not begun another (HTTP/1.1 keep-alive, or HTTP/2 with no stream open) is closed
//!   after this long. Bytes on an idle HTTP/2 connection (pings, window updates) do not
//!   count as a request begun.
//!
//! A request is in flight from the moment its headers have been read until its response is
//! ready; while one is, neither rule applies (a registry blocking query may wait a minute).
//! Writing the response out counts as idle time, so a reader that never reads is closed by
//! the idle rule too.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever an HTTP/1.1
//! connection goes idle (so it also closes keep-alive connections after the same short
//! time), and it does not cover the first bytes that decide between HTTP/1.1 and HTTP/2.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::Service;

/// The two time limits of [`Activity`] (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// The TLS handshake and a request's headers must arrive within this.
    pub(crate) header_read: Duration,
    /// A connection with no request begun is closed after this.
    pub(crate) idle: Duration,
}

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A handshake or request headers not finished within the header-read timeout: close
    /// at once, nothing is in flight.
    Headers,
    /// No request begun within the idle timeout: close gracefully (HTTP/2: GOAWAY).
    Idle,
    /// Closed to make room for a new connection at the connection cap.
    Evicted,
}

/// One connection's activity, shared by its IO ([`Watched`]), its service ([`Counted`]),
/// its task (which waits on [`expired`](Self::expired)) and the connection cap (which
/// looks for the longest-idle connection to close).
#[derive(Debug)]
pub(crate) struct Activity {
    /// The limits this connection is held to.
    timeouts: Timeouts,
    /// What the connection is doing; a std mutex held only to read or set a few fields.
    state: Mutex<State>,
    /// Woken when the deadline may have moved earlier (the connection went idle, a request
    /// began arriving, or it was evicted), so [`expired`](Self::expired) looks again.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Requests whose headers have been read and whose response is not ready yet.
    in_flight: usize,
    /// When the connection was accepted, or when its last request in flight finished.
    idle_since: Instant,
    /// Whether any request has begun: until one has, the header-read rule applies.
    served: bool,
    /// HTTP/2: bytes while idle are frames, not the start of a request.
    multiplexed: bool,
    /// HTTP/1.1: when the first byte of the next request arrived on an idle connection.
    next_request_since: Option<Instant>,
    /// Told to close to make room at the connection cap.
    evicted: bool,
}

impl Activity {
    /// A connection accepted now, with nothing received yet.
    pub(crate) fn new(timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            timeouts,
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
                multiplexed: false,
                next_request_since: None,
                evicted: false,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the fields are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers have been read: it is in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.served = true;
        state.multiplexed = version == Version::HTTP_2;
        state.next_request_since = None;
        InFlight {
            activity: Arc::clone(self),
        }
    }

    fn finish(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.next_request_since = None;
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Bytes arrived on the connection.
    fn received(&self) {
        let mut state = self.state();
        if state.in_flight == 0
            && state.served
            && !state.multiplexed
            && state.next_request_since.is_none()
        {
            state.next_request_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Asks the connection to close now (it had no request in flight when chosen).
    pub(crate) fn evict(&self) {
        self.state().evicted = true;
        self.changed.notify_one();
    }

    /// Since when the connection has had no request in flight; `None` while one is, or
    /// once it has been evicted.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let state = self.state();
        (state.in_flight == 0 && !state.evicted).then_some(state.idle_since)
    }

    /// When the connection's time runs out as things stand, and why; `None` while a
    /// request is in flight.
    pub(crate) fn deadline(&self) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.evicted {
            return Some((state.idle_since, Expiry::Evicted));
        }
        if state.in_flight > 0 {
            return None;
        }
        if !state.served {
            return Some((
                state.idle_since + self.timeouts.header_read,
                Expiry::Headers,
            ));
        }
        if let Some(since) = state.next_request_since {
            return Some((since + self.timeouts.header_read, Expiry::Headers));
        }
        Some((state.idle_since + self.timeouts.idle, Expiry::Idle))
    }

    /// Completes when the connection's time has run out, saying why.
    pub(crate) async fn expired(&self) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in flight on its connection; dropping it (the response is ready, or the
/// request was abandoned) ends it.
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.finish();
    }
}

/// A connection's IO, telling its [`Activity`] when bytes arrive.
#[derive(Debug)]
pub(crate) struct Watched<I> {
    /// The TCP or TLS stream.
    io: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A connection's service, counting each request in flight in its [`Activity`].
#[derive(Debug, Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = self.activity.begin(request.version());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    async fn expires_after(activity: &Activity) -> (Duration, Expiry) {
        let start = Instant::now();
        let why = activity.expired().await;
        (start.elapsed(), why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_timeout_for_its_first_request() {
        let activity = Activity::new(TIMEOUTS);
        // Bytes of an unfinished first request do not extend it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        activity.received();
        let (after, why) = expires_after(&activity).await;
        assert_eq!((after, why), (Duration::from_secs(7), Expiry::Headers));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_has_the_idle_timeout_then_the_header_timeout() {
        let activity = Activity::new(TIMEOUTS);
        drop(activity.begin(Version::HTTP_11));
        assert_eq!(
            expires_after(&activity).await,
            (Duration::from_secs(75), Expiry::Idle)
        );

        let activity = Activity::new(TIMEOUTS);
        drop(activity.begin(Version::HTTP_11));
        let waiting = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { expires_after(&activity).await })
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The next request's first byte: its headers must follow within 10 s.
        activity.received();
        assert_eq!(
            waiting.await.unwrap(),
            (Duration::from_secs(40), Expiry::Headers)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn frames_on_an_idle_http2_connection_are_not_a_request() {
        let activity = Activity::new(TIMEOUTS);
        drop(activity.begin(Version::HTTP_2));
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.received();
        assert_eq!(activity.deadline().map(|(_, why)| why), Some(Expiry::Idle));
        assert_eq!(
            expires_after(&activity).await,
            (Duration::from_secs(45), Expiry::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_while_a_request_is_in_flight() {
        let activity = Activity::new(TIMEOUTS);
        let in_flight = activity.begin(Version::HTTP_11);
        assert_eq!(activity.deadline(), None);
        assert_eq!(activity.idle_since(), None);
        let waiting = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { expires_after(&activity).await })
        };
        // A blocking query of ten minutes.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waiting.is_finished());
        drop(in_flight);
        assert_eq!(
            waiting.await.unwrap(),
            (Duration::from_secs(675), Expiry::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_ends_the_wait_at_once() {
        let activity = Activity::new(TIMEOUTS);
        assert!(activity.idle_since().is_some());
        let waiting = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { expires_after(&activity).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        activity.evict();
        assert_eq!(
            waiting.await.unwrap(),
            (Duration::from_secs(1), Expiry::Evicted)
        );
        assert_eq!(activity.idle_since(), None, "not chosen twice");
    }
}
