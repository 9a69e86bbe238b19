//! [`BaseUrl`]: an instance's address, parsed once, joined with each request's path.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};

use crate::Error;

/// An instance's base address (such as `http://127.0.0.1:8001` or `http://host/api`),
/// parsed when discovery reports the instance; or why it does not parse, which fails each
/// request to it with [`Error::InvalidRequest`] (a caller's error, tripping no breaker).
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    /// The address as discovery gave it, without a trailing `/`.
    address: Arc<str>,
    /// Its parts, or why it has none.
    parts: Result<Parts, Arc<str>>,
}

#[derive(Debug, Clone)]
struct Parts {
    scheme: Scheme,
    authority: Authority,
    /// The path prefix without a trailing `/` (empty for a bare origin).
    prefix: Arc<str>,
}

impl BaseUrl {
    /// Parses `address`.
    pub(crate) fn new(address: &str) -> Self {
        let address = address.trim_end_matches('/');
        Self {
            address: Arc::from(address),
            parts: Parts::parse(address).map_err(Arc::from),
        }
    }

    /// The address as given, without a trailing `/`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The absolute URI of `path_and_query` at this instance: the address's path prefix,
    /// then the path and query as given (neither re-parsed nor normalised).
    pub(crate) fn join(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, Error> {
        let invalid = |reason: &dyn std::fmt::Display| {
            let path = path_and_query.map_or("/", PathAndQuery::as_str);
            let url = format!("{}{path}", self.address);
            Error::InvalidRequest(format!("URL {url:?}: {reason}"))
        };
        let parts = self.parts.as_ref().map_err(|reason| invalid(reason))?;
        let path_and_query = match (parts.prefix.is_empty(), path_and_query) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let joined = format!("{}{}", parts.prefix, pq.map_or("/", PathAndQuery::as_str));
                PathAndQuery::try_from(joined).map_err(|e| invalid(&e))?
            }
        };
        Uri::builder()
            .scheme(parts.scheme.clone())
            .authority(parts.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| invalid(&e))
    }
}

impl Parts {
    fn parse(address: &str) -> Result<Parts, String> {
        let uri: Uri = address.parse().map_err(|e| format!("{e}"))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err("not an absolute URL (scheme and host needed)".into());
        };
        let prefix = match &parts.path_and_query {
            Some(pq) if pq.query().is_some() => {
                return Err("a base address cannot have a query".into());
            }
            Some(pq) => pq.path().trim_end_matches('/'),
            None => "",
        };
        Ok(Parts {
            scheme,
            authority,
            prefix: Arc::from(prefix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(address: &str, path: &str) -> Result<String, Error> {
        let path: PathAndQuery = path.parse().expect("path");
        BaseUrl::new(address)
            .join(Some(&path))
            .map(|u| u.to_string())
    }

    #[test]
    fn the_path_and_query_go_to_the_instance_as_given() {
        let paths = [
            "/",
            "/ratings/widget",
            "/ratings/widget?x=1&y=%20z",
            "/a/../b/./c",
            "//double/slash",
            "/x?",
            "/%7Euser/caf%C3%A9",
            "/p?q=a?b",
        ];
        for (address, prefix) in [
            ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
            ("http://localhost", "http://localhost"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://127.0.0.1:8001/api", "http://127.0.0.1:8001/api"),
            ("http://127.0.0.1:8001/api/", "http://127.0.0.1:8001/api"),
            (
                "https://ratings.example:8443",
                "https://ratings.example:8443",
            ),
        ] {
            for path in paths {
                assert_eq!(
                    join(address, path).expect("valid"),
                    format!("{prefix}{path}"),
                    "{address} + {path}"
                );
            }
        }
    }

    #[test]
    fn an_address_that_does_not_parse_fails_each_request_by_name() {
        for address in ["not a url", "127.0.0.1:8001", "/relative", "http://h/?q=1"] {
            let error = join(address, "/x").expect_err("invalid");
            assert!(
                matches!(&error, Error::InvalidRequest(m) if m.contains(address)),
                "{address}: {error:?}"
            );
        }
    }
}
