//! [`ServerTls`]: the certificate chain and private key a TLS server presents, loaded from
//! PEM and checked before anything is bound.
//!
//! The crypto provider is rustls' `ring`, given explicitly: the process-wide default
//! provider is never read or installed, so that no other crate's rustls features can make
//! building a server config panic, and a fresh machine builds it with only the Rust
//! toolchain. Protocols: TLS 1.2 and 1.3. ALPN offers `h2` then `http/1.1`, so a client that
//! speaks both gets HTTP/2; one that offers no ALPN gets whichever it opens with. No client
//! certificate is asked for.

mod error;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub use error::TlsError;

/// A server's TLS settings: its certificate chain and key. Cheap to clone.
///
/// ```
/// let ca = test_certs::TestCa::new("demo CA");
/// let issued = ca.server(&["localhost", "127.0.0.1"]);
/// let tls = serving::ServerTls::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())?;
/// # let _ = tls;
/// let wrong = ca.server(&["localhost"]);
/// let error = serving::ServerTls::from_pem(issued.cert_pem.as_bytes(), wrong.key_pem.as_bytes())
///     .unwrap_err();
/// assert!(error.to_string().contains("does not match"), "{error}");
/// # Ok::<_, serving::TlsError>(())
/// ```
#[derive(Clone)]
pub struct ServerTls {
    /// The rustls server config, shared by every connection.
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// `--tls-cert` and `--tls-key`: both (TLS), or neither (`None`: plain TCP).
    ///
    /// # Errors
    ///
    /// [`TlsError::Incomplete`] if only one is given; otherwise as
    /// [`from_pem_files`](Self::from_pem_files).
    pub fn from_flags(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Self::from_pem_files(cert, key).map(Some),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Incomplete {
                given: "--tls-cert",
                missing: "--tls-key",
            }),
            (None, Some(_)) => Err(TlsError::Incomplete {
                given: "--tls-key",
                missing: "--tls-cert",
            }),
        }
    }

    /// The certificate chain in the PEM file `cert` (leaf first, then any intermediates)
    /// and its private key in the PEM file `key` (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file: it cannot be read, holds no certificate or key, one
    /// does not decode, or the key is not the certificate's.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                file: path.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        Self::build(
            &cert_pem,
            &cert.display().to_string(),
            &key_pem,
            &key.display().to_string(),
        )
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM in memory.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files), naming "the certificate PEM" or "the
    /// key PEM".
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::build(
            cert_chain_pem,
            "the certificate PEM",
            key_pem,
            "the key PEM",
        )
    }

    /// What accepts TLS connections with these settings.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    fn build(
        cert_pem: &[u8],
        cert_file: &str,
        key_pem: &[u8],
        key_file: &str,
    ) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCertificate {
                file: cert_file.to_owned(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                file: cert_file.to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey {
                file: key_file.to_owned(),
            },
            other => TlsError::BadKey {
                file: key_file.to_owned(),
                reason: other.to_string(),
            },
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            // `ring` supports the default versions: kept as an error rather than a panic.
            .map_err(|e| TlsError::Provider(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert_file: cert_file.to_owned(),
                    key_file: key_file.to_owned(),
                },
                other => TlsError::BadKey {
                    file: key_file.to_owned(),
                    reason: other.to_string(),
                },
            })?;
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// The crypto provider every server config here is given: `ring`, which builds with only
/// the Rust toolchain (aws-lc-rs needs cmake and more). rustls 0.23.48 deprecated it for
/// lacking post-quantum key exchange; X25519 and the NIST curves it has are what our
/// clients offer.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: LazyLock<Arc<rustls::crypto::CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use test_certs::TestCa;

    use super::*;

    /// Writes `files` (name, contents) into a fresh directory.
    fn files(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = files
            .iter()
            .map(|(name, contents)| {
                let path = dir.path().join(name);
                std::fs::write(&path, contents).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    #[test]
    fn a_matching_pair_of_files_loads() {
        let issued = TestCa::new("ca").server(&["localhost"]);
        let (_dir, paths) = files(&[
            ("server.pem", &issued.cert_pem),
            ("server.key", &issued.key_pem),
        ]);
        let tls = ServerTls::from_flags(Some(&paths[0]), Some(&paths[1])).unwrap();
        assert!(tls.is_some());
        assert!(ServerTls::from_flags(None, None).unwrap().is_none());
    }

    #[test]
    fn one_flag_without_the_other_is_refused() {
        let path = Path::new("server.pem");
        let error = ServerTls::from_flags(Some(path), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--tls-cert needs --tls-key too (give both, or neither to serve plain HTTP)"
        );
        let error = ServerTls::from_flags(None, Some(path)).unwrap_err();
        assert!(
            error.to_string().starts_with("--tls-key needs --tls-cert"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let issued = TestCa::new("ca").server(&["localhost"]);
        let (dir, paths) = files(&[("server.key", &issued.key_pem)]);
        let missing = dir.path().join("nope.pem");
        let error = ServerTls::from_pem_files(&missing, &paths[0]).unwrap_err();
        assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot read {}: ", missing.display())),
            "{message}"
        );
    }

    #[test]
    fn a_file_without_a_certificate_is_named() {
        let issued = TestCa::new("ca").server(&["localhost"]);
        // The key and the certificate given the wrong way round.
        let (_dir, paths) = files(&[
            ("server.pem", &issued.cert_pem),
            ("server.key", &issued.key_pem),
        ]);
        let error = ServerTls::from_pem_files(&paths[1], &paths[0]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "no certificate in {}: expected a PEM -----BEGIN CERTIFICATE----- block",
                paths[1].display()
            )
        );
    }

    #[test]
    fn a_file_without_a_key_is_named() {
        let issued = TestCa::new("ca").server(&["localhost"]);
        let (_dir, paths) = files(&[("server.pem", &issued.cert_pem), ("empty.key", "")]);
        let error = ServerTls::from_pem_files(&paths[0], &paths[1]).unwrap_err();
        assert!(matches!(error, TlsError::NoKey { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("no private key in {}", paths[1].display())),
            "{error}"
        );
    }

    #[test]
    fn a_malformed_certificate_is_named() {
        let garbage = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let issued = TestCa::new("ca").server(&["localhost"]);
        let (_dir, paths) = files(&[("bad.pem", garbage), ("server.key", &issued.key_pem)]);
        let error = ServerTls::from_pem_files(&paths[0], &paths[1]).unwrap_err();
        assert!(
            matches!(error, TlsError::BadCertificate { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&paths[0].display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_names_both_files() {
        let ca = TestCa::new("ca");
        let (one, other) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
        let (_dir, paths) = files(&[("server.pem", &one.cert_pem), ("other.key", &other.key_pem)]);
        let error = ServerTls::from_pem_files(&paths[0], &paths[1]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the private key in {} does not match the certificate in {}",
                paths[1].display(),
                paths[0].display()
            )
        );
    }
}
