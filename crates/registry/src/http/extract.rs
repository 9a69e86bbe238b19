//! Extractors that validate as they extract and fail with [`ApiError`].
//!
//! Wrapping axum's `Json`, `Path` and `Query` here means a handler only ever sees input
//! that passed the rules in [`crate::validate`], and every rejection has our JSON shape.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Json, Path, Query, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::validate::{self, ValidationError};

/// Name of the header carrying a lease secret.
pub const LEASE_HEADER: &str = "x-lease";

/// A JSON body (`Content-Type: application/json`), with rejections as [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// The `{service}` path segment, validated.
#[derive(Debug, Clone)]
pub struct ServicePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(service) = Path::<String>::from_request_parts(parts, state).await?;
        validate::name("service", &service)?;
        Ok(Self(service))
    }
}

/// The `{service}` and `{id}` path segments, validated.
#[derive(Debug, Clone)]
pub struct InstancePath {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((service, id)) =
            Path::<(String, String)>::from_request_parts(parts, state).await?;
        validate::name("service", &service)?;
        validate::name("instance id", &id)?;
        Ok(Self { service, id })
    }
}

/// The blocking-query parameters `index` and `wait` (both optional).
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    /// Index the client last saw; present means "block until it changes".
    pub index: Option<u64>,
    /// How long to block at most (before capping at `--max-wait`).
    pub wait: Option<Duration>,
    /// The store epoch `index` was read in, if the client says.
    pub epoch: Option<u64>,
}

/// The raw strings, parsed by hand so the error names the parameter.
#[derive(Debug, Deserialize)]
struct RawWatchQuery {
    index: Option<String>,
    wait: Option<String>,
    epoch: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WatchQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<RawWatchQuery>::from_request_parts(parts, state).await?;
        let index = raw
            .index
            .map(|index| {
                index
                    .parse::<u64>()
                    .map_err(|_| ValidationError::new("index must be a non-negative integer"))
            })
            .transpose()?;
        let wait = raw
            .wait
            .map(|wait| {
                humantime::parse_duration(&wait)
                    .map_err(|_| ValidationError::new("wait must be a duration like 500ms or 30s"))
            })
            .transpose()?;
        let epoch = raw
            .epoch
            .map(|epoch| {
                epoch
                    .parse::<u64>()
                    .map_err(|_| ValidationError::new("epoch must be a non-negative integer"))
            })
            .transpose()?;
        Ok(Self { index, wait, epoch })
    }
}

/// The peer's IP address, when the server was started with connect info (as [`crate::run`]
/// does); `None` for requests that did not come over a socket (`oneshot` in tests).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(peer))
    }
}

/// The lease secret from `X-Lease`, if present and text.
pub fn lease(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(LEASE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}
