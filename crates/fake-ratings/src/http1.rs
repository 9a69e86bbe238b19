//! Just enough HTTP/1.1 for the socket server: read one request (its head, then a body of
//! `content-length` bytes), and write one answer that closes the connection.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest request head read; a longer one drops the connection.
const HEAD_LIMIT: usize = 64 * 1024;
/// The longest request body read; a longer `content-length` drops the connection.
const BODY_LIMIT: usize = 1024 * 1024;

/// What the server needs from a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The request target, such as `/ratings/widget?x=1`.
    pub(crate) target: String,
    /// The `traceparent` header, if sent.
    pub(crate) traceparent: Option<String>,
}

/// Reads one request from `stream`, its body included (`content-length` bytes, read and
/// dropped; chunked bodies are not understood): `None` when the peer closes first, the stream
/// fails, the head is not a request, or a limit is passed.
pub(crate) async fn read_request(stream: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() >= HEAD_LIMIT {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    if head_end > HEAD_LIMIT {
        return None;
    }
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let (_method, target) = (request_line.next()?, request_line.next()?);
    let mut traceparent = None;
    let mut content_length = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("traceparent") {
            traceparent = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<usize>().ok()?;
        }
    }
    if content_length > BODY_LIMIT {
        return None;
    }
    let target = target.to_string();
    let mut body_read = buffer.len() - (head_end + 4);
    while body_read < content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body_read += n,
        }
    }
    Some(Request {
        target,
        traceparent,
    })
}

/// A complete HTTP/1.1 answer with an `application/json` content type, that closes the
/// connection: for [`Behaviour::Raw`](crate::Behaviour::Raw) when a test wants real HTTP
/// with something odd about it.
pub fn response(status: u16, body: &[u8]) -> Vec<u8> {
    answer(status, "application/json", body)
}

/// A complete HTTP/1.1 answer that closes the connection.
pub(crate) fn answer(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Option<Request> {
        read_request(&mut &bytes[..]).await
    }

    #[tokio::test]
    async fn a_get_with_headers() {
        let got = read(
            b"GET /ratings/widget?x=1 HTTP/1.1\r\nHost: a\r\nTraceParent:  00-ab-cd-01 \r\n\r\n",
        )
        .await;
        let expected = Request {
            target: "/ratings/widget?x=1".into(),
            traceparent: Some("00-ab-cd-01".into()),
        };
        assert_eq!(got, Some(expected));
    }

    #[tokio::test]
    async fn a_post_body_is_waited_for_to_its_length() {
        let got = read(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!(got.map(|r| r.target), Some("/x".to_string()));
        // The peer closes before the whole body arrived.
        assert_eq!(
            read(b"POST /x HTTP/1.1\r\ncontent-length: 9\r\n\r\nhello").await,
            None
        );
    }

    #[tokio::test]
    async fn incomplete_malformed_or_oversized_requests_are_dropped() {
        let huge = format!(
            "POST /x HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            BODY_LIMIT + 1
        );
        let long_head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(HEAD_LIMIT + 1));
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
            huge.as_bytes(),
            long_head.as_bytes(),
        ] {
            let start = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
            assert_eq!(read(bytes).await, None, "{start:?}");
        }
    }

    #[test]
    fn response_is_complete_http() {
        let bytes = response(503, b"{}");
        assert_eq!(
            String::from_utf8(bytes).ok().as_deref(),
            Some(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: 2\r\nconnection: close\r\n\r\n{}"
            )
        );
    }
}
