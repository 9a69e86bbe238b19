//! `Server` on real loopback sockets: HTTPS over HTTP/1.1 and HTTP/2 with a test CA, h2c
//! with prior knowledge, failed or unfinished handshakes that leave the server serving, and
//! a graceful shutdown that finishes the request in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use discovery_client::transport::{HttpClient, TlsConfig};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serving::{Server, ServerTls};
use test_certs::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// A server on a free loopback port, and how to stop it.
struct Running {
    url: String,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(tls: Option<ServerTls>, router: Router) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = Server::new(listener);
        if let Some(tls) = tls {
            server = server.tls(tls);
        }
        let url = server.url().unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(router, async {
            let _ = stopped.await;
        }));
        Running {
            url,
            addr,
            stop: Some(stop),
            served,
        }
    }

    fn shut_down(&mut self) {
        let _ = self.stop.take().expect("once").send(());
    }
}

/// A CA, and a server certificate it signed for 127.0.0.1.
fn certificates() -> (TestCa, ServerTls) {
    let ca = TestCa::new("serving tests CA");
    let issued = ca.server(&["localhost", "127.0.0.1"]);
    let tls = ServerTls::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    (ca, tls)
}

/// The library's client, trusting only `ca`.
fn https_client(ca: &TestCa) -> HttpClient {
    HttpClient::builder()
        .tls(TlsConfig::new().roots_only(ca.cert_pem()).unwrap())
        .build()
        .unwrap()
}

/// `GET /` answers who asked.
fn peer_app() -> Router {
    Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    )
}

/// GETs `url` through `client`: status, protocol version, body.
async fn fetch(client: &HttpClient, url: &str) -> Result<(StatusCode, Version, String), String> {
    let request = http::Request::get(url).body(Bytes::new()).unwrap();
    let response = client
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, version, String::from_utf8(body.to_vec()).unwrap()))
}

/// A TLS connection to `addr` trusting `ca`, offering `alpn`.
async fn tls_connect(
    ca: &TestCa,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends a `GET /` by hand over HTTP/1.1 and reads the whole answer.
async fn http1_by_hand(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn https_speaks_h2_to_a_client_that_offers_it_and_http1_to_one_that_does_not() {
    let (ca, tls) = certificates();
    let server = Running::start(Some(tls), peer_app()).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // The library's client offers h2 and http/1.1 by ALPN: the server picks h2.
    let answer = fetch(&https_client(&ca), &server.url).await.unwrap();
    assert_eq!(
        answer,
        (StatusCode::OK, Version::HTTP_2, "127.0.0.1".to_owned())
    );

    // A client that offers only http/1.1 gets it.
    let stream = tls_connect(&ca, server.addr, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let answer = http1_by_hand(stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("127.0.0.1"), "{answer}");

    // One that offers no ALPN at all is served in what it speaks.
    let stream = tls_connect(&ca, server.addr, &[]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let answer = http1_by_hand(stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[tokio::test]
async fn plain_tcp_speaks_http1_and_h2c_with_prior_knowledge() {
    let server = Running::start(None, peer_app()).await;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );

    let answer = fetch(&HttpClient::new(), &server.url).await.unwrap();
    assert_eq!(
        answer,
        (StatusCode::OK, Version::HTTP_11, "127.0.0.1".to_owned())
    );
    let h2c = HttpClient::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let answer = fetch(&h2c, &server.url).await.unwrap();
    assert_eq!(
        answer,
        (StatusCode::OK, Version::HTTP_2, "127.0.0.1".to_owned())
    );
}

#[tokio::test]
async fn clients_that_fail_their_handshake_do_not_stop_the_server() {
    let (ca, tls) = certificates();
    let server = Running::start(Some(tls), peer_app()).await;

    // A client that trusts another CA gives up on the certificate.
    let stranger = https_client(&TestCa::new("another CA"));
    let refused = fetch(&stranger, &server.url).await.unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    // Plain HTTP on the TLS port.
    let plain = TcpStream::connect(server.addr).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut plain = plain;
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        answer
    })
    .await
    .expect("the server closes a connection that is not TLS");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    // A client that connects and leaves at once.
    drop(TcpStream::connect(server.addr).await.unwrap());

    let answer = fetch(&https_client(&ca), &server.url).await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
    assert!(!server.served.is_finished());
}

/// A router whose `GET /slow` says when it has started and answers when released.
fn slow_app(started: Arc<Notify>, release: Arc<Notify>) -> Router {
    Router::new().route(
        "/slow",
        get(move || {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            async move {
                started.notify_one();
                release.notified().await;
                "finished"
            }
        }),
    )
}

/// Starts `GET /slow`, shuts the server down while it is in flight, and checks that the
/// server stops accepting, waits for the answer, and then returns.
async fn shutdown_finishes_the_request_in_flight(
    tls: Option<ServerTls>,
    client: HttpClient,
    version: Version,
) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let mut server =
        Running::start(tls, slow_app(Arc::clone(&started), Arc::clone(&release))).await;
    let url = format!("{}/slow", server.url);
    let in_flight = tokio::spawn(async move { fetch(&client, &url).await });
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the request reached its handler");

    server.shut_down();
    // The listener closes: new connections are refused while the request is still running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(server.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = tokio::time::timeout(Duration::from_millis(200), &mut server.served).await;
    assert!(waiting.is_err(), "serve returned with a request in flight");

    release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(answer, (StatusCode::OK, version, "finished".to_owned()));
    tokio::time::timeout(Duration::from_secs(5), &mut server.served)
        .await
        .expect("serve returns once the connection has closed")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_http1_request_in_flight() {
    shutdown_finishes_the_request_in_flight(None, HttpClient::new(), Version::HTTP_11).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_h2_request_in_flight_over_tls() {
    let (ca, tls) = certificates();
    shutdown_finishes_the_request_in_flight(Some(tls), https_client(&ca), Version::HTTP_2).await;
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_connections_at_once() {
    let (ca, tls) = certificates();
    let mut server = Running::start(Some(tls), peer_app()).await;
    // An HTTP/2 connection left open in the client's pool, and a TLS handshake never begun.
    let client = https_client(&ca);
    assert_eq!(fetch(&client, &server.url).await.unwrap().0, StatusCode::OK);
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    server.shut_down();
    tokio::time::timeout(Duration::from_secs(5), &mut server.served)
        .await
        .expect("idle connections do not hold up the shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_handshake_is_dropped_after_ten_seconds() {
    let (ca, tls) = certificates();
    let server = Running::start(Some(tls), peer_app()).await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // It sends no ClientHello: the server waits for one, then closes the connection.
    let mut buffer = [0_u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buffer))
        .await
        .expect("the server closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    // The server itself is still serving.
    let answer = fetch(&https_client(&ca), &server.url).await.unwrap();
    assert_eq!(answer.0, StatusCode::OK);
}
