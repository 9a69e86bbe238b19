//! Per-thread stripes: state that every caller updates on every call, split so that threads
//! calling at the same time write different cache lines.
//!
//! Each thread is handed a stripe index, in turn, the first time it asks; a structure keeps
//! [`STRIPES`] copies of its hot counter, each [`Padded`] onto lines of its own, and a thread
//! touches only its own copy on the hot path. With no more threads than stripes (a tokio
//! runtime has one worker per core) no two threads share one; with more, the extra threads
//! share a stripe, which stays correct (the copies are atomics) and only contends again.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Stripes per structure.
pub(crate) const STRIPES: usize = 16;

/// Hands each thread its stripe, in turn.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe.
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// The calling thread's stripe, `0..STRIPES` (0 while the thread is being torn down).
#[inline]
pub(crate) fn current() -> usize {
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// A value alone on its cache lines: 128 bytes, as adjacent-line prefetch pairs 64-byte lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// [`STRIPES`] padded values made by `make`.
pub(crate) fn striped<T>(make: impl FnMut() -> T) -> Box<[Padded<T>]> {
    std::iter::repeat_with(make)
        .take(STRIPES)
        .map(Padded)
        .collect()
}
