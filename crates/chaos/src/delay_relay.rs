//! A TCP relay that holds every chunk of bytes for a set delay in each direction: a slow
//! link in user space, for a kernel without `sch_netem`.
//!
//! It listens on a free loopback port and relays each connection to one target address
//! (the `netdelay` scenario's instance, across a veth into its namespace). A chunk read
//! from either side at time `t` is written to the other side at `t + delay`, in the order
//! read, so the bytes arrive late but whole and in order, and a stream of chunks keeps its
//! rate (the link is long, not narrow). A new connection is opened to the target one round
//! trip late, as a TCP handshake over the slow link would be. The delay can change while
//! connections are open ([`DelayRelay::set_delay`]); chunks read afterwards get the new one.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections (more are closed at once), and at most
//! [`CHUNKS_IN_FLIGHT`] chunks of at most [`CHUNK`] bytes held per direction (a side that
//! sends faster waits, as TCP's window would make it).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most connections relayed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most chunks held per direction of one connection.
pub const CHUNKS_IN_FLIGHT: usize = 64;
/// The largest chunk read at once.
pub const CHUNK: usize = 16 * 1024;
/// How long opening a connection to the target may take before the client's is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running relay; dropping it closes the listener and every relayed connection.
#[derive(Debug)]
pub struct DelayRelay {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// The delay each way, in µs, read for every chunk.
    delay_us: Arc<AtomicU64>,
    /// The accept loop, which owns the relayed connections' tasks.
    task: JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on a free loopback port and relays to `target`, with no delay yet.
    pub async fn start(target: SocketAddr) -> io::Result<DelayRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let delay_us = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept(listener, target, Arc::clone(&delay_us)));
        Ok(DelayRelay {
            url,
            delay_us,
            task,
        })
    }

    /// Its base URL: what clients call instead of the target.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Holds every chunk read from now on for `each_way` (zero: none).
    pub fn set_delay(&self, each_way: Duration) {
        let us = u64::try_from(each_way.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(us, Ordering::SeqCst);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn delay(delay_us: &AtomicU64) -> Duration {
    Duration::from_micros(delay_us.load(Ordering::SeqCst))
}

async fn accept(listener: TcpListener, target: SocketAddr, delay_us: Arc<AtomicU64>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // Closed at once: the client sees a reset, not a hang.
        };
        let delay_us = Arc::clone(&delay_us);
        connections.spawn(async move {
            let _ = relay(client, target, &delay_us).await;
            drop(slot);
        });
    }
}

/// Relays one connection until both sides have closed, or either fails.
async fn relay(client: TcpStream, target: SocketAddr, delay_us: &AtomicU64) -> io::Result<()> {
    // The handshake over the slow link: there and back before the first byte can go.
    tokio::time::sleep(delay(delay_us) * 2).await;
    let server = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect to the target"))??;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        carry(client_read, server_write, delay_us),
        carry(server_read, client_write, delay_us),
    )?;
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay_us` after it was read; shuts `to` down once
/// `from` has ended and every chunk is written.
async fn carry(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    delay_us: &AtomicU64,
) -> io::Result<()> {
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buffer = vec![0_u8; CHUNK];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, io::Error>(());
            }
            let at = Instant::now() + delay(delay_us);
            if chunks.send((at, buffer[..n].to_vec())).await.is_err() {
                return Ok(()); // The writer failed; it reports why.
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// An echo server on a free loopback port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn connect(relay: &DelayRelay) -> TcpStream {
        let addr = relay.url().trim_start_matches("http://");
        TcpStream::connect(addr).await.expect("connect")
    }

    #[tokio::test(start_paused = true)]
    async fn each_chunk_arrives_a_delay_late_each_way_and_in_order() {
        let relay = DelayRelay::start(echo().await).await.expect("relay");
        relay.set_delay(Duration::from_millis(100));
        let mut stream = connect(&relay).await;
        let started = Instant::now();
        stream.write_all(b"one ").await.expect("write");
        stream.write_all(b"two").await.expect("write");
        let mut answer = [0_u8; 7];
        stream.read_exact(&mut answer).await.expect("echo");
        assert_eq!(&answer, b"one two");
        // The handshake's round trip, then there and back: 400 ms.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(450),
            "{took:?}"
        );
        // On an open connection, one round trip.
        let started = Instant::now();
        stream.write_all(b"three").await.expect("write");
        let mut answer = [0_u8; 5];
        stream.read_exact(&mut answer).await.expect("echo");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_healed_link_relays_at_once() {
        let relay = DelayRelay::start(echo().await).await.expect("relay");
        let mut stream = connect(&relay).await;
        let started = Instant::now();
        stream.write_all(b"ping").await.expect("write");
        let mut answer = [0_u8; 4];
        stream.read_exact(&mut answer).await.expect("echo");
        assert_eq!(&answer, b"ping");
        assert!(started.elapsed() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_closed_client_closes_the_target_side() {
        let relay = DelayRelay::start(echo().await).await.expect("relay");
        let mut stream = connect(&relay).await;
        stream.write_all(b"bye").await.expect("write");
        stream.shutdown().await.expect("shut down");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the echo server saw the end and closed")
            .expect("read");
        assert_eq!(answer, b"bye");
    }
}
