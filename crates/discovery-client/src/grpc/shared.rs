//! [`SharedBalancer`]: a channel's balancer, shared by the channel's clones and picked from
//! in each caller's own task, so that a call is never handed to another task on its way to
//! an instance.
//!
//! ```text
//!   caller's task: lock ─▶ poll_ready ─▶ ready: call, unlock ─▶ await the instance's answer
//!                                   └──▶ not ready: unlock, wait to be woken, try again
//! ```
//!
//! The balancer is polled with one waker of its own, which wakes every caller waiting for
//! it: whichever caller polled last, a discovery change or an instance becoming ready
//! reaches all the callers that found nothing ready. Readiness and the call are made under
//! one lock, so the instance one caller was given a permit for is the one it calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::util::BoxService;
use tower::{BoxError, Service};

use super::channel::ResponseBody;

/// What the balancer, and a call through it, answers.
pub(super) type Answer = Result<http::Response<ResponseBody>, BoxError>;

/// The balancer and what is under it, boxed; its errors are [`tonic::Status`]es.
pub(super) type Stack = BoxService<http::Request<Body>, http::Response<ResponseBody>, BoxError>;

/// A balancer that every clone of a channel calls through (see the [module docs](self)).
#[derive(Clone)]
pub(super) struct SharedBalancer {
    shared: Arc<Shared>,
}

/// What the clones share.
struct Shared {
    /// The balancer, locked by one caller at a time while it picks.
    stack: Mutex<Stack>,
    /// The callers that found nothing ready.
    waiters: Arc<Waiters>,
    /// The waker the balancer is polled with: wakes every waiter.
    waker: Waker,
}

/// The callers waiting for the balancer to be ready.
#[derive(Default)]
struct Waiters {
    /// How many times the waiters were woken (changed with `wakers` locked): a caller
    /// that saw the balancer not ready before a wake-up is woken at once instead of
    /// waiting for the next.
    wake_ups: AtomicU64,
    /// The callers' wakers, until the next wake-up.
    wakers: Mutex<Vec<Waker>>,
}

impl SharedBalancer {
    /// Shares `stack` between the clones.
    pub(super) fn new(stack: Stack) -> Self {
        let waiters = Arc::new(Waiters::default());
        let waker = Waker::from(Arc::clone(&waiters));
        Self {
            shared: Arc::new(Shared {
                stack: Mutex::new(stack),
                waiters,
                waker,
            }),
        }
    }

    /// Sends `request` to the instance the balancer picks once it is ready: at once if it
    /// is ready now (the request is not kept), otherwise when the future is polled.
    pub(super) fn call(&self, request: http::Request<Body>) -> Pick {
        let state = match self.shared.ready(None) {
            Readiness::Ready(mut stack) => State::Called(stack.call(request)),
            Readiness::Failed(error) => State::Called(failed(error)),
            Readiness::NotReady => State::Picking(Some(Box::new(request))),
        };
        Pick {
            shared: Arc::clone(&self.shared),
            state,
        }
    }
}

/// Whether the balancer can take a call now.
enum Readiness<'a> {
    /// It can: locked for it.
    Ready(MutexGuard<'a, Stack>),
    /// It failed: what every call is answered.
    Failed(BoxError),
    /// Not yet.
    NotReady,
}

impl Shared {
    /// The balancer, locked, if it can take a call now; if not, `waker` (if any) is woken
    /// when it may.
    fn ready(&self, waker: Option<&Waker>) -> Readiness<'_> {
        let seen = self.waiters.wake_ups();
        let mut stack = lock(&self.stack);
        match stack.poll_ready(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(Ok(())) => Readiness::Ready(stack),
            Poll::Ready(Err(error)) => Readiness::Failed(error),
            Poll::Pending => {
                drop(stack);
                if let Some(waker) = waker {
                    self.waiters.wait(seen, waker);
                }
                Readiness::NotReady
            }
        }
    }
}

/// An answer that is an error.
fn failed(error: BoxError) -> BoxFuture<'static, Answer> {
    Box::pin(std::future::ready(Err(error)))
}

/// One call through a [`SharedBalancer`]: picking, then the instance's answer.
pub(super) struct Pick {
    shared: Arc<Shared>,
    state: State,
}

enum State {
    /// Waiting for the balancer; the request until it is sent.
    Picking(Option<Box<http::Request<Body>>>),
    /// Sent; the answer under way.
    Called(BoxFuture<'static, Answer>),
}

impl Future for Pick {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = &mut *self;
        if let State::Picking(request) = &mut this.state {
            match this.shared.ready(Some(cx.waker())) {
                Readiness::Ready(mut stack) => {
                    let Some(request) = request.take() else {
                        // Polled again after it ended: it has nothing more to give.
                        return Poll::Pending;
                    };
                    this.state = State::Called(stack.call(*request));
                }
                Readiness::Failed(error) => this.state = State::Called(failed(error)),
                Readiness::NotReady => return Poll::Pending,
            }
        }
        match &mut this.state {
            State::Called(answer) => answer.as_mut().poll(cx),
            State::Picking(_) => Poll::Pending,
        }
    }
}

impl Waiters {
    /// How many wake-ups there have been.
    fn wake_ups(&self) -> u64 {
        self.wake_ups.load(Ordering::Acquire)
    }

    /// Has `waker` woken at the next wake-up, or at once if there was one since `seen`.
    fn wait(&self, seen: u64, waker: &Waker) {
        let mut wakers = lock(&self.wakers);
        if self.wake_ups.load(Ordering::Acquire) != seen {
            drop(wakers);
            waker.wake_by_ref();
        } else if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = {
            let mut wakers = lock(&self.wakers);
            self.wake_ups.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Locks `mutex`, also after a caller panicked holding it: the other callers go on with
/// the balancer as that call left it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    /// A stack that is not ready until its gate opens, remembering only the last waker it
    /// was polled with (as a real service does), and answers each call with its path.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Gate {
        fn open(&self) {
            self.open.store(true, Ordering::Release);
            if let Some(waker) = lock(&self.waker).take() {
                waker.wake();
            }
        }
    }

    impl Service<http::Request<Body>> for Gate {
        type Response = http::Response<ResponseBody>;
        type Error = BoxError;
        type Future = BoxFuture<'static, Answer>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.open.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            *lock(&self.waker) = Some(cx.waker().clone());
            Poll::Pending
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let path = request.uri().path().to_owned();
            Box::pin(async move { Err(Box::new(tonic::Status::not_found(path)) as BoxError) })
        }
    }

    fn request(path: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    fn answered(answer: Answer) -> String {
        let error = answer.expect_err("the gate answers with an error");
        error
            .downcast_ref::<tonic::Status>()
            .unwrap()
            .message()
            .to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn every_caller_waiting_for_the_balancer_is_woken_when_it_is_ready() {
        let gate = Gate::default();
        let balancer = SharedBalancer::new(BoxService::new(gate.clone()));
        // Each caller in a task of its own: the stack keeps only the last one's waker.
        let callers: Vec<_> = (0..10)
            .map(|n| tokio::spawn(balancer.clone().call(request(&format!("/call/{n}")))))
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(callers.iter().all(|caller| !caller.is_finished()));
        gate.open();
        for (n, caller) in callers.into_iter().enumerate() {
            let answer = tokio::time::timeout(Duration::from_secs(1), caller)
                .await
                .expect("a waiting caller was never woken")
                .unwrap();
            assert_eq!(answered(answer), format!("/call/{n}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_balancer_is_called_in_the_callers_own_task() {
        let gate = Gate::default();
        gate.open();
        let balancer = SharedBalancer::new(BoxService::new(gate));
        let answer = balancer.call(request("/now")).await;
        assert_eq!(answered(answer), "/now");
    }
}
