//! A real HTTPS server nobody here wrote: nginx (Debian's package) serving the ratings
//! answer over TLS with HTTP/2, as one instance of a `ServiceClient` beside two fake
//! instances over plain HTTP. Its certificate comes from test-certs; nginx runs unprivileged
//! from a temporary prefix on a free loopback port, started the way the bench harness starts
//! its peers (`bench::peers`).
//!
//! Skipped with a message when nginx is not installed (`apt-get install -y nginx`), unless
//! `CI` is set: then a missing nginx fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bench::peers::{Peer, PeerKind};
use discovery_client::breaker::BreakerState;
use discovery_client::{Balance, Error, Event, Hedging, ServiceClient, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings, STANDARD_ITEMS, rating_of};
use serde_json::{Value, json};
use test_certs::{Issued, TestCa};

/// The instance number nginx's answers report (the fakes report 1 and 2).
const NGINX_INSTANCE: u32 = 9;

/// The header nginx adds to every answer: the protocol the request came over
/// (`$server_protocol`: `HTTP/2.0` for h2).
const PROTOCOL_HEADER: &str = "x-server-protocol";

/// Whether this is a CI run, where a missing nginx is a failure rather than a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The nginx program; `None`, after saying so, when it is not installed and this is not CI.
fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    match PeerKind::Nginx.find() {
        Some(program) => Some(program),
        None if in_ci() => {
            panic!("{test}: nginx is not installed and CI is set (apt-get install -y nginx)")
        }
        None => {
            eprintln!("skipped {test}: nginx is not installed (apt-get install -y nginx)");
            None
        }
    }
}

/// nginx answering as a fake ratings instance does (`Behaviour::Ratings`): the standard items'
/// JSON, 404 `{"error":"unknown item"}` for anything else; over TLS with h2 offered by ALPN.
fn ratings_config(dir: &Path, listen: SocketAddr) -> String {
    let dir = dir.display();
    let items: String = STANDARD_ITEMS
        .iter()
        .map(|item| {
            let answer =
                json!({"item_id": item, "rating": rating_of(item), "instance": NGINX_INSTANCE});
            format!("        location = /ratings/{item} {{ return 200 '{answer}'; }}\n")
        })
        .collect();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {listen} ssl http2;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        default_type application/json;
        add_header X-Server-Protocol $server_protocol always;
{items}        location / {{ return 404 '{{\"error\":\"unknown item\"}}'; }}
    }}
}}
"
    )
}

/// nginx over TLS with `certificate`, and two fake instances over plain HTTP.
struct Instances {
    nginx: Peer,
    fakes: Vec<FakeRatings>,
}

impl Instances {
    async fn start(program: &Path, certificate: &Issued) -> Instances {
        let nginx = Peer::nginx(program, Some(certificate), ratings_config)
            .await
            .unwrap_or_else(|e| panic!("nginx did not start: {e}"));
        assert!(nginx.url.starts_with("https://127.0.0.1:"), "{}", nginx.url);
        let mut fakes = Vec::new();
        for n in 1..=2 {
            fakes.push(FakeRatings::start(n, Behaviour::Ratings).await);
        }
        Instances { nginx, fakes }
    }

    fn addresses(&self) -> Vec<String> {
        let mut all = vec![self.nginx.url.clone()];
        all.extend(self.fakes.iter().map(|f| f.url.clone()));
        all
    }

    /// A client over all three that trusts only `ca_pem`, picks in turn and never hedges
    /// (so which instance serves which call is exact), one failure opening a breaker.
    fn client(&self, ca_pem: &str, retries: u32) -> ServiceClient {
        ServiceClient::builder("ratings")
            .discovery(StaticDiscovery::new(self.addresses()))
            .tls_roots_only(ca_pem)
            .balance(Balance::RoundRobin)
            .hedging(Hedging::Off)
            .failure_limit(1)
            .retest_delay(Duration::from_secs(60))
            .max_retries(retries)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

/// Each instance's breaker state, by address.
fn states(client: &ServiceClient) -> BTreeMap<String, BreakerState> {
    client
        .instances()
        .into_iter()
        .map(|s| (s.address, s.state))
        .collect()
}

#[tokio::test]
async fn nginx_over_https_serves_its_turn_over_http2() {
    let Some(program) = nginx_or_skip("nginx_over_https_serves_its_turn_over_http2") else {
        return;
    };
    let ca = TestCa::new("nginx test CA");
    let instances = Instances::start(&program, &ca.server(&["localhost", "127.0.0.1"])).await;
    let client = instances.client(&ca.cert_pem(), 2);

    let mut answered_by = BTreeMap::<String, usize>::new();
    for call in 0..12 {
        let item = STANDARD_ITEMS[call % STANDARD_ITEMS.len()];
        let answer = client
            .get(&format!("/ratings/{item}"))
            .no_cache()
            .await
            .unwrap_or_else(|e| panic!("call {call} for {item}: {e}"));
        assert_eq!(answer.status(), 200, "{answer:?}");
        let address = answer.instance().address.clone();
        let protocol = answer.headers().get(PROTOCOL_HEADER).cloned();
        let body: Value = answer.json().unwrap();
        assert_eq!(body["item_id"], item, "{body}");
        assert_eq!(body["rating"], json!(rating_of(item)), "{body}");
        if address == instances.nginx.url {
            assert_eq!(body["instance"], NGINX_INSTANCE, "{body}");
            // nginx saw the request arrive over HTTP/2: h2 was negotiated by ALPN.
            assert_eq!(
                protocol.as_ref().and_then(|p| p.to_str().ok()),
                Some("HTTP/2.0"),
                "nginx's answer to call {call}"
            );
        } else {
            assert_ne!(body["instance"], NGINX_INSTANCE, "{body}");
            assert!(protocol.is_none(), "a fake answered with {protocol:?}");
        }
        *answered_by.entry(address).or_default() += 1;
    }
    // In turn over three instances, nothing failing: four calls each.
    let expected: BTreeMap<String, usize> =
        instances.addresses().into_iter().map(|a| (a, 4)).collect();
    assert_eq!(answered_by, expected);
    let unknown = client.get_json::<Value>("/ratings/nope").await;
    assert!(
        matches!(&unknown, Err(Error::Status { status: 404, .. })),
        "{unknown:?}"
    );
    for status in client.instances() {
        assert_eq!(status.state, BreakerState::Closed, "{}", status.address);
        assert_eq!(status.failures, 0, "{}", status.address);
    }
}

#[tokio::test]
async fn nginx_with_a_certificate_from_another_ca_fails_tls_and_only_its_breaker_opens() {
    let test = "nginx_with_a_certificate_from_another_ca_fails_tls_and_only_its_breaker_opens";
    let Some(program) = nginx_or_skip(test) else {
        return;
    };
    let nginx_ca = TestCa::new("the CA that signed nginx's certificate");
    let trusted = TestCa::new("the only CA the client trusts");
    let instances = Instances::start(&program, &nginx_ca.server(&["localhost", "127.0.0.1"])).await;

    // Without retries the failure reaches the caller: a TLS error naming nginx.
    let once = instances.client(&trusted.cert_pem(), 0);
    let mut failures = Vec::new();
    for _ in 0..3 {
        match once.get("/ratings/widget").no_cache().await {
            Ok(answer) => assert_ne!(answer.instance().address, instances.nginx.url),
            Err(error) => failures.push(error),
        }
    }
    match failures.as_slice() {
        [Error::Tls { address, message }] => {
            assert_eq!(address, &instances.nginx.url);
            assert!(message.contains("certificate"), "{message}");
        }
        other => panic!("expected exactly one Error::Tls, got {other:?}"),
    }

    // With retries, the call that tries nginx first is served by another instance; nginx's
    // breaker, and only its breaker, opens; later calls all go to the fakes.
    let retrying = instances.client(&trusted.cert_pem(), 2);
    let mut events = retrying.subscribe();
    for call in 0..9 {
        let answer = retrying
            .get("/ratings/widget")
            .no_cache()
            .await
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(answer.status(), 200);
        assert_ne!(
            answer.instance().address,
            instances.nginx.url,
            "call {call}"
        );
    }
    for (address, state) in states(&retrying) {
        let expected = match address == instances.nginx.url {
            true => BreakerState::Open,
            false => BreakerState::Closed,
        };
        assert_eq!(state, expected, "{address}");
    }
    let nginx = retrying
        .instances()
        .into_iter()
        .find(|s| s.address == instances.nginx.url)
        .unwrap();
    assert_eq!((nginx.requests, nginx.failures), (1, 1), "{nginx:?}");
    let mut opened = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::BreakerOpened { address, .. } = event {
            opened.push(address);
        }
    }
    assert_eq!(opened, std::slice::from_ref(&instances.nginx.url));
}
