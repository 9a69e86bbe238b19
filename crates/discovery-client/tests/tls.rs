//! `https://` instances over real sockets, with certificates made here: a good chain, an
//! unknown CA, an expired certificate, a name mismatch, a server that requires a client
//! certificate (with and without one), and `tls_server_name` for an address that is an IP.
//!
//! Each bad case must be `Error::Tls` naming the instance's address, open only that
//! instance's breaker, and leave the call to be served by a good instance.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use discovery_client::breaker::BreakerState;
use discovery_client::http::Version;
use discovery_client::{
    Error, Hedging, Instance, ServiceClient, ServiceClientBuilder, StaticDiscovery, TLS_SERVER_NAME,
};
use fake_ratings::{Behaviour, FakeRatings, Serve};
use test_certs::{Issued, TestCa};

#[derive(Debug, serde::Deserialize)]
struct Rating {
    instance: u32,
}

const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

async fn https(instance: u32, issued: &Issued) -> FakeRatings {
    let serve = Serve::tls(&issued.cert_pem, &issued.key_pem);
    FakeRatings::serve(instance, Behaviour::Ratings, serve).await
}

/// A client of `instances` (ids 1, 2, ... in order) trusting only `ca`, whose first failure
/// opens a breaker for a minute.
fn client(ca: &TestCa, instances: &[&FakeRatings]) -> ServiceClientBuilder {
    let addresses: Vec<String> = instances.iter().map(|f| f.url.clone()).collect();
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses))
        .tls_roots_only(ca.cert_pem())
        .timeout(Duration::from_secs(2))
        .failure_limit(1)
        .retest_delay(Duration::from_secs(60))
        .hedging(Hedging::Off)
}

fn states(client: &ServiceClient) -> Vec<BreakerState> {
    client.instances().iter().map(|s| s.state).collect()
}

#[tokio::test]
async fn a_good_chain_serves_over_h2_negotiated_by_alpn() {
    let ca = TestCa::new("good CA");
    let (one, two) = (
        https(1, &ca.server(&NAMES)).await,
        https(2, &ca.server(&NAMES)).await,
    );
    let c = client(&ca, &[&one, &two]).build().expect("client");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let answer = c.get("/ratings/widget").no_cache().await.expect("answer");
        assert_eq!(answer.version(), Version::HTTP_2);
        seen.push(answer.json::<Rating>().expect("rating").instance);
    }
    assert_eq!(seen, [1, 2, 1, 2]);
    assert!(one.received().iter().all(|r| r.version == Version::HTTP_2));
    assert_eq!(states(&c), [BreakerState::Closed, BreakerState::Closed]);
}

/// Instance 1 is served with `bad`; instance 2 is good. The first call goes to instance 1
/// and fails with `Error::Tls` naming it; the next is served by instance 2, and only
/// instance 1's breaker is open.
async fn only_the_bad_instance_is_taken_out(
    ca: &TestCa,
    bad: FakeRatings,
    configure: impl Fn(ServiceClientBuilder) -> ServiceClientBuilder,
    expected: &str,
) {
    let good = https(2, &ca.server(&NAMES)).await;
    let c = configure(client(ca, &[&bad, &good]).max_retries(0))
        .build()
        .expect("client");
    match c.get("/ratings/widget").no_cache().await {
        Err(Error::Tls { address, message }) => {
            assert_eq!(address, bad.url);
            assert!(
                message.to_lowercase().contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
        other => panic!("expected Error::Tls from {}, got {other:?}", bad.url),
    }
    assert!(
        Error::Tls {
            address: String::new(),
            message: String::new()
        }
        .is_instance_failure()
    );
    for _ in 0..3 {
        let rating: Rating = c.get_json("/ratings/widget").await.expect("served by 2");
        assert_eq!(rating.instance, 2);
    }
    assert_eq!(states(&c), [BreakerState::Open, BreakerState::Closed]);
}

#[tokio::test]
async fn an_unknown_ca_is_a_tls_error_of_that_instance_only() {
    let ca = TestCa::new("trusted CA");
    let stranger = TestCa::new("unknown CA");
    let bad = https(1, &stranger.server(&NAMES)).await;
    only_the_bad_instance_is_taken_out(&ca, bad, |b| b, "issuer").await;
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_error_of_that_instance_only() {
    let ca = TestCa::new("trusted CA");
    let bad = https(1, &ca.expired_server(&NAMES)).await;
    only_the_bad_instance_is_taken_out(&ca, bad, |b| b, "expired").await;
}

#[tokio::test]
async fn a_name_mismatch_is_a_tls_error_of_that_instance_only() {
    let ca = TestCa::new("trusted CA");
    let bad = https(1, &ca.server(&["somewhere.else.example"])).await;
    only_the_bad_instance_is_taken_out(&ca, bad, |b| b, "not valid for name").await;
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_refuses_a_client_without_one() {
    let ca = TestCa::new("trusted CA");
    let issued = ca.server(&NAMES);
    let serve = Serve::tls(&issued.cert_pem, &issued.key_pem).require_client_cert(ca.cert_pem());
    let bad = FakeRatings::serve(1, Behaviour::Ratings, serve).await;
    only_the_bad_instance_is_taken_out(&ca, bad, |b| b, "certificate").await;
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_requires_one() {
    let ca = TestCa::new("trusted CA");
    let issued = ca.server(&NAMES);
    let serve = Serve::tls(&issued.cert_pem, &issued.key_pem).require_client_cert(ca.cert_pem());
    let strict = FakeRatings::serve(1, Behaviour::Ratings, serve).await;
    let me = ca.client("market");
    let c = client(&ca, &[&strict])
        .identity(&me.cert_pem, &me.key_pem)
        .build()
        .expect("client");
    let rating: Rating = c.get_json("/ratings/widget").await.expect("mTLS call");
    assert_eq!(rating.instance, 1);
}

#[tokio::test]
async fn tls_server_name_metadata_names_the_certificate_of_an_ip_address() {
    let ca = TestCa::new("trusted CA");
    let named = https(1, &ca.server(&["ratings.internal"])).await;
    let mut instance = Instance::new("1", &named.url);
    let with_name = |instance: Instance| {
        ServiceClient::builder("ratings")
            .discovery(StaticDiscovery::from_instances(vec![instance]))
            .tls_roots_only(ca.cert_pem())
            .build()
            .expect("client")
    };
    // Checked against 127.0.0.1, the certificate does not match.
    let unnamed = with_name(instance.clone());
    assert!(
        matches!(
            unnamed.get_json::<Rating>("/ratings/widget").await,
            Err(Error::Tls { .. })
        ),
        "the certificate is for ratings.internal only"
    );
    instance
        .metadata
        .insert(TLS_SERVER_NAME.into(), "ratings.internal".into());
    let c = with_name(instance);
    let rating: Rating = c.get_json("/ratings/widget").await.expect("named call");
    assert_eq!(rating.instance, 1);
}

#[tokio::test]
async fn pem_that_does_not_parse_is_a_config_error_at_build() {
    let refused = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(["https://127.0.0.1:1"]))
        .add_root_certificate(
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .build();
    assert!(matches!(refused, Err(Error::Config(m)) if m.contains("root certificate")));
    let ca = TestCa::new("CA");
    let (one, other) = (ca.client("a"), ca.client("b"));
    let mismatched = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(["https://127.0.0.1:1"]))
        .identity(&one.cert_pem, &other.key_pem)
        .build();
    assert!(
        matches!(&mismatched, Err(Error::Config(m)) if m.contains("client certificate and key")),
        "{mismatched:?}"
    );
}

#[tokio::test]
async fn a_tower_endpoint_for_an_instance_checks_its_tls_server_name() {
    use discovery_client::bytes::Bytes;
    use discovery_client::transport::{HttpClient, HttpEndpoint, TlsConfig};
    use tower::ServiceExt;

    let ca = TestCa::new("trusted CA");
    let named = https(1, &ca.server(&["ratings.internal"])).await;
    let http = HttpClient::builder()
        .tls(TlsConfig::new().roots_only(ca.cert_pem()).expect("CA"))
        .build()
        .expect("client");
    let get = || {
        http::Request::get("/ratings/widget")
            .body(Bytes::new())
            .unwrap()
    };
    let mut instance = Instance::new("1", &named.url);
    let plain = HttpEndpoint::for_instance(http.clone(), &instance).expect("endpoint");
    assert!(matches!(plain.oneshot(get()).await, Err(Error::Tls { .. })));
    instance
        .metadata
        .insert(TLS_SERVER_NAME.into(), "ratings.internal".into());
    let endpoint = HttpEndpoint::for_instance(http, &instance).expect("endpoint");
    let answer = endpoint.oneshot(get()).await.expect("named call");
    assert_eq!(answer.status(), 200);
}
