//! Per-instance circuit breaker.
//!
//! The breaker is a small state machine, kept apart from the question "was this call a
//! failure?" (see [`crate::classify`]) and from I/O, so it can be tested on paused time:
//!
//! ```text
//!            failure_limit consecutive failures
//!   Closed ─────────────────────────────────────▶ Open
//!     ▲                                            │ retest delay passes
//!     │ probe succeeds                             ▼
//!     └──────────────────────────────────────── Retest ──▶ Open (probe fails)
//! ```
//!
//! In `Retest` exactly one request (the probe) is admitted at a time; everyone else is turned
//! away until the probe's outcome is known. A probe whose caller gives up (its [`Permit`] is
//! dropped unrecorded) frees the slot for the next caller.
//!
//! Every transition is reported back to the caller as a [`Transition`], so the layer that owns
//! the breaker can log it and publish an event with the instance's name and address.
//!
//! Results of requests admitted in an earlier state (say, a slow request let in while Closed
//! that ends after the breaker opened) are ignored: only the state they were admitted in may
//! act on them. Each transition bumps a generation counter to tell them apart.

mod config;
mod state;

pub use config::BreakerConfig;
pub use state::{Breaker, BreakerState, Permit, Transition};

#[cfg(test)]
mod tests;
