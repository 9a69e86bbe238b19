//! [`TlsError`]: why a server's certificate and key cannot be used.

use std::io;

/// Why a certificate chain and key cannot be served, naming the file (or PEM given in code)
/// at fault. Each message is complete enough to print as is after the program's name.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("{given} needs {missing} too (give both, or neither to serve plain HTTP)")]
    Incomplete {
        /// The flag that was given.
        given: &'static str,
        /// The flag that was not.
        missing: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: io::Error,
    },
    /// No `CERTIFICATE` PEM block where the certificate chain should be.
    #[error("no certificate in {file}: expected a PEM -----BEGIN CERTIFICATE----- block")]
    NoCertificate {
        /// Where the certificate chain was read from.
        file: String,
    },
    /// A `CERTIFICATE` block that does not decode.
    #[error("malformed certificate in {file}: {reason}")]
    BadCertificate {
        /// Where the certificate chain was read from.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No private key PEM block where the key should be.
    #[error(
        "no private key in {file}: expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block"
    )]
    NoKey {
        /// Where the key was read from.
        file: String,
    },
    /// A key block that does not decode, or a kind of key that cannot sign.
    #[error("unusable private key in {file}: {reason}")]
    BadKey {
        /// Where the key was read from.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the private key in {key_file} does not match the certificate in {cert_file}")]
    KeyMismatch {
        /// Where the certificate chain was read from.
        cert_file: String,
        /// Where the key was read from.
        key_file: String,
    },
    /// The crypto provider refused the protocol versions (not expected with `ring`).
    #[error("TLS set-up: {0}")]
    Provider(String),
}
