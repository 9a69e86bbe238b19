//! An instance that accepts TCP connections and never answers: the worst kind of sick
//! instance, because nothing is refused and nothing is reset. Only a timeout notices it.
//!
//! It reads and discards whatever a client sends until the client gives up and closes, and
//! counts the connections it holds at once: once a client's breaker has opened, that count
//! shows how many probes the client lets through at a time.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The most connections held open at once; later ones are closed at once (which a client
/// sees as a reset, not a hang), so the black hole's memory stays bounded.
const MAX_HELD: usize = 4096;

/// Connection counts, shared with the accept loop.
#[derive(Debug, Default)]
struct Counts {
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Connections held right now.
    held: AtomicUsize,
    /// The most held at once since the last reset.
    max_held: AtomicUsize,
}

/// A loopback listener that accepts and holds connections without reading or writing.
/// Dropping it closes the listener and every held connection.
#[derive(Debug)]
pub struct BlackHole {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// Connection counts.
    counts: Arc<Counts>,
    /// The accept loop; aborting it closes the listener (held connections end as their
    /// clients give up).
    task: JoinHandle<()>,
}

impl BlackHole {
    /// Listens on a free loopback port.
    pub async fn start() -> io::Result<BlackHole> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(accept(listener, Arc::clone(&counts)));
        Ok(BlackHole { url, counts, task })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// The most connections held at once since the last [`BlackHole::reset_max_held`].
    pub fn max_held(&self) -> usize {
        self.counts.max_held.load(Ordering::SeqCst)
    }

    /// Starts counting the most held at once afresh, from those held now.
    pub fn reset_max_held(&self) {
        let held = self.counts.held.load(Ordering::SeqCst);
        self.counts.max_held.store(held, Ordering::SeqCst);
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait a little rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        let held = counts.held.fetch_add(1, Ordering::SeqCst) + 1;
        if held > MAX_HELD {
            counts.held.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        counts.max_held.fetch_max(held, Ordering::SeqCst);
        tokio::spawn(hold(stream, Arc::clone(&counts)));
    }
}

/// Reads and discards until the client closes, never writing a byte.
async fn hold(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut sink = [0_u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
    counts.held.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn accepts_and_never_answers() {
        let hole = BlackHole::start().await.expect("listen");
        let http = reqwest::Client::new();
        let answer = http
            .get(format!("{}/ratings/widget", hole.url()))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        let error = answer.expect_err("no answer");
        assert!(error.is_timeout(), "{error}");
        assert_eq!((hole.accepted(), hole.max_held()), (1, 1));
        // The client gave up and closed: nothing is held any more.
        for _ in 0..100 {
            if hole.counts.held.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the closed connection is still counted");
    }
}
