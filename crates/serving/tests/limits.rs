//! `Server`'s limits on real loopback sockets: a slowloris client and a silent one are
//! closed after the header-read timeout, an idle keep-alive connection after the idle
//! timeout (a long request in flight is not cut), and at the connection cap a new client is
//! served in place of an idle connection, or refused quickly when every connection is busy;
//! normal requests keep working meanwhile. Time is paused (tokio moves it on whenever every
//! task waits), so the timeouts are the real defaults or seconds long and the tests are fast.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serving::Server;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// `GET /` answers `ok`; `GET /slow` answers once `release` is notified.
fn app(release: Arc<Notify>) -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(move || {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                "finished"
            }
        }),
    )
}

/// Serves `app` on a free loopback port with `configure`'s limits.
async fn start(configure: impl FnOnce(Server) -> Server, release: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = configure(Server::new(listener));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(app(release), std::future::pending()));
    addr
}

/// One request on `stream` (kept alive), and its answer's body.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    // Both answers here are short with a content-length: read until the body is complete.
    loop {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed mid-answer: {answer:?}");
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() == length {
                assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
                return body.to_owned();
            }
        }
    }
}

/// A fresh connection, one request, closed.
async fn one_request(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    request(&mut stream, "/").await
}

/// Waits (at most a minute) for the server to close `stream`, reading and discarding
/// whatever it sends first; how long that took.
async fn closed_after(stream: &mut (impl AsyncRead + Unpin)) -> Duration {
    let start = Instant::now();
    let mut buffer = [0_u8; 1024];
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_client_is_closed_after_the_header_timeout_and_others_are_served() {
    let addr = start(|server| server, Arc::new(Notify::new())).await;
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    // One header byte every 3 s, as the attack does, while normal requests go on.
    let trickle = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    let closed = tokio::spawn(async move { closed_after(&mut reader).await });
    for _ in 0..5 {
        assert_eq!(one_request(addr).await, "ok");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let closed = closed.await.unwrap();
    trickle.abort();
    // Closed at the default header-read timeout.
    assert!(
        closed >= Duration::from_secs(10) && closed < Duration::from_millis(10_100),
        "{closed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_after_the_header_timeout() {
    let addr = start(
        |server| server.header_read_timeout(Duration::from_secs(2)),
        Arc::new(Notify::new()),
    )
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let closed = closed_after(&mut silent).await;
    assert!(
        closed >= Duration::from_secs(2) && closed < Duration::from_millis(2100),
        "{closed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_but_not_a_long_request() {
    let release = Arc::new(Notify::new());
    let addr = start(
        |server| {
            server
                .header_read_timeout(Duration::from_secs(2))
                .idle_timeout(Duration::from_secs(5))
        },
        Arc::clone(&release),
    )
    .await;

    // A request that takes longer than both timeouts is answered, on a connection that is
    // then reused before its idle timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let releaser = {
        let release = Arc::clone(&release);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            release.notify_one();
        })
    };
    assert_eq!(request(&mut stream, "/slow").await, "finished");
    releaser.await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(request(&mut stream, "/").await, "ok");

    // Then left idle: closed after the idle timeout, not the (shorter) header timeout.
    let closed = closed_after(&mut stream).await;
    assert!(
        closed >= Duration::from_secs(5) && closed < Duration::from_millis(5100),
        "{closed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_a_new_client_takes_the_place_of_an_idle_connection() {
    let addr = start(|server| server.max_connections(3), Arc::new(Notify::new())).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(request(&mut stream, "/").await, "ok");
        idle.push(stream);
        // Each idle for a different time.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The cap is full of idle keep-alive connections; new clients are still served, each
    // in place of the longest-idle one.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(one_request(addr).await, "ok");
        assert!(started.elapsed() < Duration::from_millis(100));
    }
    // The first idle connection was the first closed.
    let closed = closed_after(&mut idle[0]).await;
    assert!(closed < Duration::from_millis(10), "{closed:?}");
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_with_every_connection_busy_a_new_client_is_refused_quickly_or_served_when_one_finishes()
 {
    let release = Arc::new(Notify::new());
    let addr = start(|server| server.max_connections(2), Arc::clone(&release)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    // Both requests are in flight (a paused clock moves on only once every task waits).
    tokio::time::sleep(Duration::from_millis(10)).await;

    // A third client is closed after the short wait: no answer, never a hang.
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let closed = closed_after(&mut refused).await;
    assert!(closed <= Duration::from_millis(300), "{closed:?}");

    // One that arrives while a request finishes is served.
    let waiting = tokio::spawn(one_request(addr));
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.notify_one();
    assert_eq!(get_answer(&mut busy[0]).await, "finished");
    drop(busy.remove(0));
    let answer = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("served, not left hanging")
        .unwrap();
    assert_eq!(answer, "ok");
    release.notify_one();
}

/// The body of the answer already requested on `stream`.
async fn get_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed mid-answer");
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if text.ends_with("finished") {
            return text.rsplit("\r\n\r\n").next().unwrap().to_owned();
        }
    }
}
