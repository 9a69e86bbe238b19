//! Fault injection for demos and tests: added latency, injected 500s, garbage bodies, and
//! back-pressure (429 with `Retry-After`).
//!
//! The initial faults come from flags; the admin endpoint can change them at run time.
//! They apply to `GET /ratings/{item}` only: first the latency, then an error with
//! probability `error_rate`, otherwise a 429 with probability `throttle_rate`, otherwise a
//! garbage body with probability `garbage_rate`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest latency that may be injected.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// The `Retry-After` (in seconds) of a throttled answer: how long the instance asks callers
/// to stay away.
pub const THROTTLE_RETRY_AFTER_SECS: u64 = 2;

/// The faults currently injected. Serialized as the admin endpoint shows them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Faults {
    /// Milliseconds to wait before answering.
    pub latency_ms: u64,
    /// Probability (0..=1) of answering 500 with a JSON error.
    pub error_rate: f64,
    /// Probability (0..=1) of answering 200 with a body that is not JSON.
    pub garbage_rate: f64,
    /// Probability (0..=1) of answering 429 with `Retry-After:`
    /// [`THROTTLE_RETRY_AFTER_SECS`] (back-pressure, not a failure).
    pub throttle_rate: f64,
}

/// Why faults were rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    /// A rate is outside 0..=1 (or not a number).
    #[error("{name} must be between 0.0 and 1.0, got {value}")]
    Rate {
        /// Which rate.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// The latency is longer than [`MAX_LATENCY`].
    #[error("latency must be at most {} ms, got {latency_ms} ms", MAX_LATENCY.as_millis())]
    Latency {
        /// The rejected latency.
        latency_ms: u64,
    },
}

/// What a request should suffer after the latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer normally.
    Nothing,
    /// Answer 500.
    Error,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Answer 429 with `Retry-After`.
    Throttled,
}

impl Faults {
    /// No faults at all.
    pub const NONE: Faults = Faults {
        latency_ms: 0,
        error_rate: 0.0,
        garbage_rate: 0.0,
        throttle_rate: 0.0,
    };

    /// Checks the rates are in 0..=1 and the latency at most [`MAX_LATENCY`].
    pub fn validate(&self) -> Result<(), FaultsError> {
        check_rate("error_rate", self.error_rate)?;
        check_rate("garbage_rate", self.garbage_rate)?;
        check_rate("throttle_rate", self.throttle_rate)?;
        if u128::from(self.latency_ms) > MAX_LATENCY.as_millis() {
            return Err(FaultsError::Latency {
                latency_ms: self.latency_ms,
            });
        }
        Ok(())
    }

    /// The latency as a duration.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Draws what this request suffers.
    pub fn roll(&self) -> Injected {
        if self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate {
            Injected::Error
        } else if self.throttle_rate > 0.0 && rand::random::<f64>() < self.throttle_rate {
            Injected::Throttled
        } else if self.garbage_rate > 0.0 && rand::random::<f64>() < self.garbage_rate {
            Injected::Garbage
        } else {
            Injected::Nothing
        }
    }

    /// These faults with `update`'s fields replaced, validated.
    pub fn updated(self, update: FaultsUpdate) -> Result<Faults, FaultsError> {
        let faults = Faults {
            latency_ms: update.latency_ms.unwrap_or(self.latency_ms),
            error_rate: update.error_rate.unwrap_or(self.error_rate),
            garbage_rate: update.garbage_rate.unwrap_or(self.garbage_rate),
            throttle_rate: update.throttle_rate.unwrap_or(self.throttle_rate),
        };
        faults.validate()?;
        Ok(faults)
    }
}

fn check_rate(name: &'static str, value: f64) -> Result<(), FaultsError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FaultsError::Rate { name, value })
    }
}

/// A change to the faults (the body of `PUT /admin/faults`); absent fields stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    /// New latency in milliseconds.
    pub latency_ms: Option<u64>,
    /// New error rate.
    pub error_rate: Option<f64>,
    /// New garbage rate.
    pub garbage_rate: Option<f64>,
    /// New throttle rate.
    pub throttle_rate: Option<f64>,
}

/// The faults shared by all requests, changed atomically by the admin endpoint.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch {
    /// The current faults; held only to copy or replace them.
    current: Arc<Mutex<Faults>>,
}

impl FaultSwitch {
    /// A switch starting with `faults` (not validated here; see [`Faults::validate`]).
    pub fn new(faults: Faults) -> Self {
        Self {
            current: Arc::new(Mutex::new(faults)),
        }
    }

    /// The faults now in force.
    pub fn get(&self) -> Faults {
        // A panic while holding this lock cannot leave a `Copy` value half-written.
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `update` if the result is valid; otherwise changes nothing.
    pub fn update(&self, update: FaultsUpdate) -> Result<Faults, FaultsError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let updated = current.updated(update)?;
        *current = updated;
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_bounds() {
        assert_eq!(Faults::NONE.validate(), Ok(()));
        let edge = Faults {
            latency_ms: 60_000,
            error_rate: 1.0,
            garbage_rate: 1.0,
            throttle_rate: 1.0,
        };
        assert_eq!(edge.validate(), Ok(()));
        for bad in [
            Faults {
                latency_ms: 60_001,
                ..Faults::NONE
            },
            Faults {
                error_rate: 1.01,
                ..Faults::NONE
            },
            Faults {
                garbage_rate: -0.1,
                ..Faults::NONE
            },
            Faults {
                error_rate: f64::NAN,
                ..Faults::NONE
            },
            Faults {
                throttle_rate: 1.5,
                ..Faults::NONE
            },
            Faults {
                throttle_rate: f64::NAN,
                ..Faults::NONE
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_bad_update_changes_nothing() {
        let switch = FaultSwitch::new(Faults {
            latency_ms: 5,
            ..Faults::NONE
        });
        let bad = FaultsUpdate {
            latency_ms: Some(10),
            error_rate: Some(2.0),
            ..FaultsUpdate::default()
        };
        assert!(switch.update(bad).is_err());
        assert_eq!(
            switch.get(),
            Faults {
                latency_ms: 5,
                ..Faults::NONE
            }
        );
        let good = FaultsUpdate {
            error_rate: Some(0.5),
            ..FaultsUpdate::default()
        };
        assert_eq!(
            switch.update(good),
            Ok(Faults {
                latency_ms: 5,
                error_rate: 0.5,
                ..Faults::NONE
            })
        );
    }

    #[test]
    fn certain_rates_always_fire_and_zero_never() {
        let errors = Faults {
            error_rate: 1.0,
            garbage_rate: 1.0,
            ..Faults::NONE
        };
        let garbage = Faults {
            garbage_rate: 1.0,
            ..Faults::NONE
        };
        let throttled = Faults {
            throttle_rate: 1.0,
            garbage_rate: 1.0,
            ..Faults::NONE
        };
        for _ in 0..100 {
            assert_eq!(errors.roll(), Injected::Error);
            assert_eq!(garbage.roll(), Injected::Garbage);
            assert_eq!(throttled.roll(), Injected::Throttled);
            assert_eq!(Faults::NONE.roll(), Injected::Nothing);
        }
    }
}
