//! In-process ratings endpoints on loopback sockets, each answering after a latency drawn
//! uniformly from zero to its own maximum: the endpoints of tower's
//! `examples/tower-balance.rs`, served over real sockets so that every contender (our
//! client, tower over hyper) calls them the same way.
//!
//! Each endpoint speaks just enough HTTP/1.1 for a keep-alive client sending `GET`s without
//! a body: it reads a request head, waits, and answers the ratings JSON naming itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest request head accepted; a longer one closes the connection.
const MAX_HEAD: usize = 16 * 1024;

/// Running endpoints; stopped when dropped.
pub struct Endpoints {
    /// Their base URLs, `http://127.0.0.1:PORT`, endpoint `i` answering as instance `i + 1`.
    pub urls: Vec<String>,
    /// The accept loops (their connections end with the runtime or when the client closes).
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts one endpoint per maximum latency, each on `127.0.0.1:0`.
pub async fn start(max_latencies: &[Duration]) -> Result<Endpoints, String> {
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for (i, &max) in max_latencies.iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind a loopback endpoint: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("loopback endpoint address: {e}"))?;
        urls.push(format!("http://{addr}"));
        let instance = u16::try_from(i + 1).map_err(|_| "too many endpoints".to_string())?;
        tasks.push(tokio::spawn(accept(listener, instance, max)));
    }
    Ok(Endpoints { urls, tasks })
}

async fn accept(listener: TcpListener, instance: u16, max: Duration) {
    static SEEDS: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let seed = SEEDS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1;
        tokio::spawn(connection(stream, instance, max, seed));
    }
}

/// Serves one keep-alive connection until the client closes it.
async fn connection(mut stream: TcpStream, instance: u16, max: Duration, mut seed: u64) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        let item = item_of(&head).unwrap_or("widget").to_string();
        let wait = max.mul_f64(uniform(&mut seed));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let body = format!(r#"{{"item_id":"{item}","rating":4,"instance":{instance}}}"#);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The item of `GET /ratings/{item} HTTP/1.1`, if the head starts like that.
fn item_of(head: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let path = line.split(' ').nth(1)?;
    let item = path.strip_prefix("/ratings/")?;
    item.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        .then_some(item)
}

/// A number in `0..1` from a xorshift64 state (any nonzero seed).
fn uniform(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_item_and_draws_in_range() {
        assert_eq!(
            item_of(b"GET /ratings/gizmo HTTP/1.1\r\nhost: x\r\n\r\n"),
            Some("gizmo")
        );
        assert_eq!(item_of(b"GET /health HTTP/1.1\r\n\r\n"), None);
        assert_eq!(item_of(b"GET /ratings/a\"b HTTP/1.1\r\n\r\n"), None);
        let mut seed = 12345;
        let draws: Vec<f64> = (0..1000).map(|_| uniform(&mut seed)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[tokio::test]
    async fn answers_a_ratings_client_naming_itself() {
        let endpoints = start(&[Duration::ZERO, Duration::from_millis(2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let http = reqwest::Client::new();
        for (i, url) in endpoints.urls.iter().enumerate() {
            for _ in 0..3 {
                let answer: serde_json::Value = http
                    .get(format!("{url}/ratings/gizmo"))
                    .send()
                    .await
                    .and_then(|a| a.error_for_status())
                    .unwrap_or_else(|e| panic!("{e}"))
                    .json()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(answer["instance"], i + 1);
                assert_eq!(answer["item_id"], "gizmo");
            }
        }
    }
}
