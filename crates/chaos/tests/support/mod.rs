//! A fake ratings instance on a loopback port whose behaviour a test switches at will, and
//! which counts what it receives: requests, and how many it holds at once.
//!
//! Raw TCP rather than a web framework, so it can also answer bytes that are not HTTP at all.
//! Every answer closes its connection, so each request is a connection of its own.

#![allow(dead_code, clippy::expect_used)] // each test file uses part of this

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the fake does with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a valid rating.
    Rating,
    /// 500 with a JSON error.
    Fail,
    /// Never answers (holds the connection until the client gives up).
    Hang,
    /// Writes exactly these bytes, then closes (they need not be HTTP).
    Raw(Vec<u8>),
}

/// A fake instance; dropping it stops the listener.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Fake {
    pub async fn start(mode: Mode) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            hits: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Fake { url, shared, task }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = mode;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Requests being held right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests held at once since the last [`Fake::reset_max`].
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_max(&self) {
        self.shared
            .max_in_flight
            .store(self.in_flight(), Ordering::SeqCst);
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port that refuses connections at once: bound but never listening, and held
/// for as long as this lives, so no other test's listener can be given the same port (a
/// released port can be, and then a client still calling the "dead" URL reaches it).
pub struct Refusing {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _socket: tokio::net::TcpSocket,
}

impl Refusing {
    pub fn bind() -> Refusing {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let url = format!("http://{}", socket.local_addr().expect("addr"));
        Refusing {
            url,
            _socket: socket,
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        };
        tokio::spawn(serve(stream, Arc::clone(&shared)));
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    // Read the request head (the fakes are only ever sent GETs without a body).
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mode = shared.mode.lock().expect("mode").clone();
    match mode {
        Mode::Rating => {
            let body = br#"{"item_id":"widget","rating":4,"instance":7}"#;
            let _ = stream.write_all(&response(200, body)).await;
        }
        Mode::Fail => {
            let _ = stream
                .write_all(&response(500, br#"{"error":"injected"}"#))
                .await;
        }
        Mode::Hang => {
            // Held until the client gives up and closes the connection.
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        Mode::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
        }
    }
    let _ = stream.shutdown().await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// A complete HTTP/1.1 answer that closes the connection.
pub fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
