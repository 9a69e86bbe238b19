//! A throwaway certificate authority for tests and demos: a CA made in memory, and the
//! server and client certificates it signs (good, expired, or for other names), as PEM.
//!
//! ```
//! let ca = test_certs::TestCa::new("demo CA");
//! let server = ca.server(&["localhost", "127.0.0.1"]);
//! assert!(server.cert_pem.contains("BEGIN CERTIFICATE"));
//! assert!(server.key_pem.contains("PRIVATE KEY"));
//! assert!(ca.cert_pem().contains("BEGIN CERTIFICATE"));
//! ```

use std::io;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (one PEM block).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// A certificate authority made in memory. Each [`TestCa::new`] is a new, unrelated one, so a
/// certificate of one CA is "signed by an unknown CA" to a client that trusts another.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose certificate's common name is `name`.
    ///
    /// # Panics
    ///
    /// If rcgen cannot make a key or sign (it can, with its `ring` provider): this crate is
    /// for tests and demos only.
    #[allow(clippy::expect_used)]
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        Self { issuer }
    }

    /// The CA's certificate, to trust (`--ca-file`, `add_root_certificate`).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from yesterday
    /// for a year.
    pub fn server(&self, names: &[&str]) -> Issued {
        self.sign(
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Current,
        )
    }

    /// A server certificate for `names` that expired yesterday.
    pub fn expired_server(&self, names: &[&str]) -> Issued {
        self.sign(
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Expired,
        )
    }

    /// A client certificate (for mTLS) whose common name is `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.sign(
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            Validity::Current,
        )
    }

    #[allow(clippy::expect_used)]
    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, validity: Validity) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("certificate names");
        params.distinguished_name = common_name(names.first().map_or("test", String::as_str));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let day = rcgen::date_time_ymd(2000, 1, 2) - rcgen::date_time_ymd(2000, 1, 1);
        let now = std::time::SystemTime::now();
        let now = rcgen::date_time_ymd(1970, 1, 1)
            + now
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970");
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - day, now + day * 365),
            Validity::Expired => (now - day * 30, now - day),
        };
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `ca.pem` and, for `names`, `server.pem` / `server.key` and a client pair
    /// `client.pem` / `client.key` into `dir` (created if needed).
    pub fn write_to(&self, dir: &Path, names: &[&str]) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let server = self.server(names);
        let client = self.client("client");
        std::fs::write(dir.join("ca.pem"), self.cert_pem())?;
        std::fs::write(dir.join("server.pem"), server.cert_pem)?;
        std::fs::write(dir.join("server.key"), server.key_pem)?;
        std::fs::write(dir.join("client.pem"), client.cert_pem)?;
        std::fs::write(dir.join("client.key"), client.key_pem)?;
        Ok(())
    }
}

enum Validity {
    Current,
    Expired,
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}
