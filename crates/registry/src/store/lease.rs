//! Lease secrets: random 128-bit values, shown as hex, compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

/// The secret that proves ownership of a registration.
///
/// Only the instance that registered learns it; it must present it (header `X-Lease`) to
/// heartbeat, deregister, or move its id to another address. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease(String);

impl Lease {
    /// Draws a fresh secret from the thread-local CSPRNG.
    pub fn generate() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// The secret as 32 lowercase hex digits, to hand to the instance.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lease(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_128_bit_hex_and_distinct() {
        let a = Lease::generate();
        let b = Lease::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn matches_only_the_exact_secret() {
        let lease = Lease::generate();
        assert!(lease.matches(lease.as_str()));
        assert!(!lease.matches(""));
        assert!(!lease.matches(&lease.as_str()[..31]));
        assert!(!lease.matches(Lease::generate().as_str()));
        assert!(!lease.matches(&format!("{}0", lease.as_str())));
    }

    #[test]
    fn debug_hides_the_secret() {
        let lease = Lease::generate();
        assert!(!format!("{lease:?}").contains(lease.as_str()));
    }
}
