//! W3C Trace Context: the `traceparent` header that carries one trace across processes.
//!
//! ```text
//! traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//!              ^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^ ^^
//!         version  trace-id (16 bytes)             parent-id (8 b.)  flags (01 = sampled)
//! ```
//!
//! The market starts a trace for each page load (or continues the one its caller sent) and
//! sends a child context (same trace id, new span id) on each ratings call; every service
//! logs the trace id, so one page load can be followed through all the terminals.
//!
//! Parsing follows the specification (<https://www.w3.org/TR/trace-context/>): lowercase hex
//! only, no all-zero ids, version `ff` is invalid, and a version above `00` may carry more
//! fields after a `-`, which are ignored. A malformed header is not an error for the
//! request: the receiving service simply treats the request as untraced.

use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The length of a version-00 `traceparent` value.
const V00_LEN: usize = 55;

/// The `sampled` bit of the trace flags, the only flag version 00 defines.
const SAMPLED: u8 = 0x01;

/// A 16-byte trace id; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span (parent) id; shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// One position in a trace: the trace it belongs to, the span at this position, and the
/// trace flags. As a header value it is a version-00 `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The whole trace's id, the same in every process.
    trace_id: TraceId,
    /// This span's id; sent as the `parent-id` of calls made from it.
    span_id: SpanId,
    /// Trace flags; only the sampled bit is kept.
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Too short, too long for version 00, or extra fields not introduced by `-`.
    #[error("traceparent has the wrong length")]
    Length,
    /// The fields are not separated by `-` where they should be.
    #[error("traceparent fields must be separated by '-'")]
    Delimiter,
    /// A field holds something other than lowercase hex digits.
    #[error("traceparent fields must be lowercase hex")]
    Hex,
    /// Version `ff`, which the specification forbids.
    #[error("traceparent version ff is invalid")]
    Version,
    /// The trace id is all zeros.
    #[error("traceparent trace-id must not be all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent parent-id must not be all zeros")]
    ZeroParentId,
    /// The header appears more than once or is not visible ASCII.
    #[error("traceparent header is repeated or not text")]
    Header,
}

impl TraceContext {
    /// A new trace: random trace and span ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId(random_nonzero()),
            span_id: SpanId(random_nonzero()),
            flags: SAMPLED,
        }
    }

    /// A context from its parts; `None` if either id is all zeros.
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            flags: if sampled { SAMPLED } else { 0 },
        })
    }

    /// A child span of this one: the same trace and flags, a new random span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId(random_nonzero()),
            ..*self
        }
    }

    /// The trace id, the same across every process the trace passes through.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Whether the caller asked for the trace to be recorded.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Parses a `traceparent` value (surrounding spaces and tabs allowed).
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < V00_LEN {
            return Err(TraceParentError::Length);
        }
        let version = hex_field::<1>(&bytes[0..2])?;
        match version[0] {
            0xff => return Err(TraceParentError::Version),
            0x00 if bytes.len() != V00_LEN => return Err(TraceParentError::Length),
            // A later version may append fields, but only after a '-'.
            _ if bytes.len() > V00_LEN && bytes[V00_LEN] != b'-' => {
                return Err(TraceParentError::Length);
            }
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        let trace_id = hex_field::<16>(&bytes[3..35])?;
        let span_id = hex_field::<8>(&bytes[36..52])?;
        let [flags] = hex_field::<1>(&bytes[53..55])?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if span_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            flags: flags & SAMPLED,
        })
    }

    /// The context a request's headers carry: `Ok(None)` without a `traceparent`, an error
    /// for a malformed or repeated one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, TraceParentError> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TraceParentError::Header);
        }
        let text = value.to_str().map_err(|_| TraceParentError::Header)?;
        Self::parse(text).map(Some)
    }

    /// This context as a `traceparent` header value.
    pub fn header_value(&self) -> HeaderValue {
        // Only hex digits and '-': always a valid header value.
        HeaderValue::from_str(&self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// A header map holding just this context's `traceparent`, for a call made from it.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, self.header_value());
        headers
    }
}

impl fmt::Display for TraceContext {
    /// The version-00 `traceparent` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl FromStr for TraceContext {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn hex_field<const N: usize>(digits: &[u8]) -> Result<[u8; N], TraceParentError> {
    if digits.len() != 2 * N {
        return Err(TraceParentError::Length);
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Ok(out)
}

fn hex_digit(digit: u8) -> Result<u8, TraceParentError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(TraceParentError::Hex),
    }
}

/// Random bytes, never all zeros (an all-zero id is invalid).
fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let context = TraceContext::parse(VALID).unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.sampled());
        assert_eq!(context.to_string(), VALID);
        assert_eq!(context.header_value(), VALID);
        assert_eq!(VALID.parse::<TraceContext>(), Ok(context));
    }

    #[test]
    fn unsampled_and_padded_headers_parse() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::parse(unsampled).unwrap().sampled());
        assert!(TraceContext::parse(&format!(" {VALID}\t")).is_ok());
        // Unknown flag bits are dropped, not propagated.
        let flags = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff";
        assert!(
            TraceContext::parse(flags)
                .unwrap()
                .to_string()
                .ends_with("-01")
        );
    }

    #[test]
    fn a_later_version_may_append_fields() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let context = TraceContext::parse(future).unwrap();
        assert_eq!(context.to_string(), VALID, "re-sent as version 00");
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceContext::parse(glued), Err(TraceParentError::Length));
    }

    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        use TraceParentError::*;
        for (value, why) in [
            ("", Length),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                Length,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Hex,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                Hex,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Delimiter,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                Delimiter,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Hex,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroParentId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                Hex,
            ),
            (
                "not a traceparent at all, but long enough to be checked!!",
                Hex,
            ),
        ] {
            assert_eq!(TraceContext::parse(value), Err(why), "{value:?}");
        }
    }

    #[test]
    fn headers_without_one_have_none_and_repeated_ones_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&headers), Ok(None));
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        let context = TraceContext::from_headers(&headers).unwrap().unwrap();
        assert_eq!(context.to_string(), VALID);
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(
            TraceContext::from_headers(&headers),
            Err(TraceParentError::Header)
        );
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
        assert_eq!(
            TraceContext::from_headers(&headers),
            Err(TraceParentError::Length)
        );
    }

    #[test]
    fn children_keep_the_trace_and_get_new_spans() {
        let root = TraceContext::new_root();
        assert!(root.sampled());
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_ne!(TraceContext::new_root().trace_id(), root.trace_id());
        // What is sent parses back to the same context.
        let sent = child.headers();
        assert_eq!(TraceContext::from_headers(&sent), Ok(Some(child)));
    }

    #[test]
    fn parts_with_zero_ids_are_refused() {
        assert!(TraceContext::from_parts([0; 16], [1; 8], true).is_none());
        assert!(TraceContext::from_parts([1; 16], [0; 8], true).is_none());
        let context = TraceContext::from_parts([0xab; 16], [0xcd; 8], false).unwrap();
        assert_eq!(
            context.to_string(),
            "00-abababababababababababababababab-cdcdcdcdcdcdcdcd-00"
        );
        assert_eq!(context.trace_id().to_bytes(), [0xab; 16]);
        assert_eq!(context.span_id().to_bytes(), [0xcd; 8]);
    }
}
