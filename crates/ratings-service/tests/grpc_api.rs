//! The gRPC API on the same port as the HTTP routes, called through the library.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use clap::Parser;
use discovery_client::StaticDiscovery;
use discovery_client::grpc::{self, GrpcConfig};
use ratings_api::ratings_client::RatingsClient;
use ratings_api::{GetRatingRequest, WatchRatingsRequest};
use ratings_service::Config;

/// Starts instance 3 on a port-0 loopback listener; its base URL.
async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = format!("http://{}", listener.local_addr().expect("an address"));
    let config = Config::try_parse_from(["ratings-service", "--instance", "3", "--no-register"])
        .expect("flags parse");
    tokio::spawn(ratings_service::run(
        listener,
        config,
        std::future::pending(),
    ));
    address
}

#[tokio::test]
async fn ratings_over_grpc_and_http_on_one_port() {
    let address = start().await;
    let channel = grpc::channel(
        "ratings",
        StaticDiscovery::new([address.clone()]),
        GrpcConfig::default(),
    )
    .expect("a channel");
    let mut ratings = RatingsClient::new(channel);
    let rating = ratings
        .get_rating(GetRatingRequest {
            item_id: "widget".into(),
        })
        .await
        .expect("a rating")
        .into_inner();
    assert_eq!((rating.item_id.as_str(), rating.instance), ("widget", 3));
    assert!((1..=5).contains(&rating.rating));

    let unknown = ratings
        .get_rating(GetRatingRequest {
            item_id: "unicorn".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut stream = ratings
        .watch_ratings(WatchRatingsRequest {
            item_ids: vec!["widget".into(), "gadget".into()],
            interval_ms: 20,
            rounds: 3,
        })
        .await
        .expect("a stream")
        .into_inner();
    let mut items = Vec::new();
    while let Some(rating) = stream.message().await.expect("no error mid-stream") {
        items.push(rating.item_id);
    }
    assert_eq!(items, ["widget", "gadget"].repeat(3));

    let http = reqwest::get(format!("{address}/ratings/widget"))
        .await
        .expect("an HTTP answer");
    assert_eq!(http.status(), 200, "HTTP/1.1 still served on the same port");
}
