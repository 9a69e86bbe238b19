//! The test bed of the TLS scenarios: three ratings instances serving HTTPS (h2 and
//! http/1.1 by ALPN) with a certificate from a throwaway CA made at run time, and, for nginx
//! to terminate TLS in front of, three plain ones.

use std::path::PathBuf;

use test_certs::{Issued, TestCa};

use crate::peers::PeerKind;
use crate::servers::{Binaries, Server};

/// Ratings instances over TLS, the CA that signed their certificate, and nginx if it runs.
pub struct TlsBed {
    /// Ratings instances 1..=3 serving HTTPS (not registered anywhere).
    pub instances: Vec<Server>,
    /// Ratings instances 1..=3 over plain HTTP, for nginx to terminate TLS in front of;
    /// empty without nginx.
    pub plain: Vec<Server>,
    /// The CA every client trusts (and only it).
    pub ca_pem: String,
    /// The certificate (for `localhost` and `127.0.0.1`) and key the instances and nginx
    /// serve.
    pub certificate: Issued,
    /// nginx, if installed and not left out.
    pub nginx: Option<PathBuf>,
    /// One line per peer left out, saying why.
    pub skipped: Vec<String>,
    /// Holds the instances' certificate and key files; removed on drop.
    _files: tempfile::TempDir,
}

impl TlsBed {
    /// Makes a CA and a server certificate, starts three instances serving HTTPS with it,
    /// and, when `with_nginx` and nginx is installed (and not left out with `no_nginx`),
    /// three plain ones.
    pub async fn start(
        bins: &Binaries,
        with_nginx: bool,
        no_nginx: bool,
    ) -> Result<TlsBed, String> {
        let ca = TestCa::new("discovery bench CA");
        let certificate = ca.server(&["localhost", "127.0.0.1"]);
        let files = tempfile::Builder::new()
            .prefix("discovery-bench-tls-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let cert = files.path().join("server.pem");
        let key = files.path().join("server.key");
        for (path, pem) in [(&cert, &certificate.cert_pem), (&key, &certificate.key_pem)] {
            std::fs::write(path, pem).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        let mut instances = Vec::new();
        for n in 1..=3 {
            instances.push(bins.ratings_tls(n, &cert, &key).await?);
        }
        let mut skipped = Vec::new();
        let nginx = match (with_nginx, no_nginx, PeerKind::Nginx.find()) {
            (false, _, _) => None,
            (true, true, _) => {
                skipped.push("nginx (TLS) skipped: left out with --no-nginx".to_string());
                None
            }
            (true, false, None) => {
                skipped.push(
                    "nginx (TLS) skipped: not installed (install it with `apt-get install -y nginx`)"
                        .to_string(),
                );
                None
            }
            (true, false, Some(path)) => Some(path),
        };
        let mut plain = Vec::new();
        if nginx.is_some() {
            for n in 1..=3 {
                plain.push(bins.ratings(n, None).await?);
            }
        }
        Ok(TlsBed {
            instances,
            plain,
            ca_pem: ca.cert_pem(),
            certificate,
            nginx,
            skipped,
            _files: files,
        })
    }

    /// The HTTPS instances' base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.instances.iter().map(|s| s.url.clone()).collect()
    }

    /// The HTTPS instances' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.instances
            .iter()
            .filter_map(|s| s.url.rsplit(':').next()?.trim_end_matches('/').parse().ok())
            .collect()
    }

    /// Every instance, HTTPS and plain: what the CPU figures count.
    pub fn all_instances(&self) -> Vec<&Server> {
        self.instances.iter().chain(&self.plain).collect()
    }
}
