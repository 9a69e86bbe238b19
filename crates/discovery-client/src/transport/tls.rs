//! [`TlsConfig`]: what the client trusts and who it says it is, for `https://` instances and
//! registries; and [`ServerNames`], the names certificates are checked against.
//!
//! The crypto provider is rustls' `ring`, given to every config explicitly: the process-wide
//! default provider is never read or installed, so whatever rustls features other crates in
//! a program turn on, building a client never panics for want of a provider, and a fresh
//! machine builds it with only the Rust toolchain.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use http::Uri;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::Error;

/// What a client trusts and presents over TLS.
///
/// By default the system's root certificates (as `rustls-native-certs` finds them: the
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` variables, else the distribution's bundle); add private
/// CAs with [`add_root_certificate`](Self::add_root_certificate), or trust only them with
/// [`roots_only`](Self::roots_only); present a client certificate (mTLS) with
/// [`identity`](Self::identity). Protocols: TLS 1.2 and 1.3. Certificates are checked
/// against the address's host name (or IP), or an instance's `tls_server_name` metadata.
///
/// ```
/// use discovery_client::transport::TlsConfig;
///
/// let ca = test_certs::TestCa::new("private CA");
/// let client = ca.client("market");
/// let tls = TlsConfig::new()
///     .roots_only(ca.cert_pem())?
///     .identity(client.cert_pem, client.key_pem)?;
/// # let _ = tls;
/// assert!(TlsConfig::new().add_root_certificate("not a certificate").is_err());
/// # Ok::<_, discovery_client::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Whether the system's roots are trusted too.
    no_system_roots: bool,
    /// Roots added by the caller.
    roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and its key, for mTLS.
    identity: Option<Arc<Identity>>,
}

#[derive(PartialEq, Eq)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("system_roots", &!self.no_system_roots)
            .field("added_roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// The system's roots, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `pem` holds no certificate or a malformed one.
    pub fn add_root_certificate(mut self, pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        self.roots
            .extend(certificates(pem.as_ref(), "root certificate")?);
        Ok(self)
    }

    /// Trusts only the CA certificates in `pem`, not the system's.
    ///
    /// # Errors
    ///
    /// As [`add_root_certificate`](Self::add_root_certificate).
    pub fn roots_only(mut self, pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        self.roots = certificates(pem.as_ref(), "root certificate")?;
        self.no_system_roots = true;
        Ok(self)
    }

    /// Also trusts the CA certificates in the PEM file at `path` (a `--ca-file`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file if it cannot be read or holds no certificate.
    pub fn add_root_certificate_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
        self.add_root_certificate(pem)
            .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))
    }

    /// Presents this client certificate chain (leaf first) and private key (PKCS#8, PKCS#1
    /// or SEC1 PEM) to servers that ask for one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if either does not parse, or the key does not suit the certificate.
    pub fn identity(
        mut self,
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        let chain = certificates(cert_chain_pem.as_ref(), "client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_ref())
            .map_err(|e| Error::Config(format!("client key: {e}")))?;
        self.identity = Some(Arc::new(Identity { chain, key }));
        // The key must suit the certificate: find out now, not at the first handshake.
        self.client_config(&[])?;
        Ok(self)
    }

    /// A rustls client config with these settings, the `ring` provider and these ALPN
    /// protocols.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, Error> {
        let mut roots = RootCertStore::empty();
        if !self.no_system_roots {
            // A system certificate rustls cannot parse is skipped, as browsers do.
            roots.add_parsable_certificates(system_roots().iter().cloned());
        }
        for root in &self.roots {
            roots
                .add(root.clone())
                .map_err(|e| Error::Config(format!("root certificate: {e}")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|e| Error::Config(format!("client certificate and key: {e}")))?,
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// The crypto provider every config here is given: `ring`, which builds with only the Rust
/// toolchain (aws-lc-rs needs cmake and more). rustls 0.23.48 deprecated it for lacking
/// post-quantum key exchange; X25519 and the NIST curves it has are what the servers we call
/// offer today.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: LazyLock<Arc<rustls::crypto::CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}

/// The certificates in `pem`; at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what}: {e}")))?;
    if certificates.is_empty() {
        return Err(Error::Config(format!(
            "{what}: no PEM CERTIFICATE block found"
        )));
    }
    Ok(certificates)
}

/// The system's root certificates, read once per process. None found is not an error here
/// (a private CA may be all a program needs): it is logged, and public servers then fail
/// their handshakes with [`Error::Tls`] naming an unknown issuer.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            tracing::warn!(errors = ?found.errors,
                "no system root certificates found: only added roots are trusted");
        }
        found.certs
    });
    &ROOTS
}

/// The names certificates are checked against, by `host:port`, where an instance's
/// `tls_server_name` metadata says so; any other address is checked against its own host.
/// Shared by an [`HttpClient`](super::HttpClient)'s clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerNames {
    by_authority: Arc<DashMap<String, ServerName<'static>>>,
}

impl ServerNames {
    /// Checks certificates at `address` (an `https://` URL) against `name` from now on.
    pub(crate) fn insert(&self, address: &str, name: &str) -> Result<(), Error> {
        let uri: Uri = address
            .parse()
            .map_err(|e| Error::Config(format!("address {address:?}: {e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Config(format!("address {address:?} has no host")))?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| Error::Config(format!("tls_server_name {name:?}: {e}")))?;
        self.by_authority.insert(authority.to_string(), name);
        Ok(())
    }

    /// The name to check the certificate of `uri`'s server against.
    pub(crate) fn resolve(&self, uri: &Uri) -> Result<ServerName<'static>, Error> {
        let named = uri
            .authority()
            .and_then(|authority| self.by_authority.get(authority.as_str()));
        if let Some(name) = named {
            return Ok(name.clone());
        }
        let host = uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        ServerName::try_from(host.to_string())
            .map_err(|e| Error::InvalidRequest(format!("TLS server name {host:?}: {e}")))
    }
}

/// The rustls error in `error`'s chain, if any: what [`Error::Tls`] reports.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error::source` skips the error it wraps, which may itself be an `io::Error`
        // wrapping rustls' (hyper-rustls reports a failed handshake so): look inside.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_nested_io_errors() {
        let handshake = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let connect = io::Error::other(handshake);
        let found = tls_failure(&connect);
        assert!(
            found
                .as_deref()
                .is_some_and(|m| m.contains("invalid peer certificate")),
            "{found:?}"
        );
        assert_eq!(tls_failure(&io::Error::other("reset")), None);
    }
}
