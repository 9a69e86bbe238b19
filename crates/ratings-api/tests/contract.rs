//! The hand-written messages hold to proto/ratings.proto: every message the file declares
//! has a Rust type whose field names (from its `Debug`) and wire tags (from its encoding,
//! every field set) are the file's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::collections::BTreeMap;

use prost::Message;
use ratings_api::{GetRatingRequest, PROTO, Rating, WatchRatingsRequest};

/// Each message of the .proto: its fields as (name, number), in the file's order.
fn declared() -> BTreeMap<String, Vec<(String, u32)>> {
    let mut messages = BTreeMap::new();
    let mut current: Option<(String, Vec<(String, u32)>)> = None;
    for line in PROTO.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("message ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            current = Some((name, Vec::new()));
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                messages.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut() {
            let Some((left, number)) = line.trim_end_matches(';').split_once('=') else {
                continue;
            };
            let name = left.split_whitespace().last().expect("a field name");
            let number = number.trim().parse().expect("a field number");
            fields.push((name.to_string(), number));
        }
    }
    messages
}

/// The field names a message's `Debug` shows, in order.
fn names(debug: &str) -> Vec<String> {
    let inner = debug.split_once('{').expect("a struct").1;
    inner
        .split(", ")
        .filter_map(|field| field.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// The field numbers on the wire of a message with every field set, in order.
fn tags(bytes: &[u8]) -> Vec<u32> {
    let mut buf = bytes;
    let mut tags = Vec::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).expect("a key");
        let (tag, wire_type) = ((key >> 3) as u32, key & 7);
        match wire_type {
            0 => {
                prost::encoding::decode_varint(&mut buf).expect("a varint");
            }
            2 => {
                let len = prost::encoding::decode_varint(&mut buf).expect("a length");
                buf = &buf[len as usize..];
            }
            other => panic!("unexpected wire type {other}"),
        }
        if tags.last() != Some(&tag) {
            tags.push(tag);
        }
    }
    tags
}

fn check(name: &str, message: &impl Message, debug: String) {
    let declared = declared();
    let fields = declared
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not in ratings.proto"));
    let (want_names, want_tags): (Vec<_>, Vec<_>) = fields.iter().cloned().unzip();
    assert_eq!(names(&debug), want_names, "{name}'s field names");
    assert_eq!(
        tags(&message.encode_to_vec()),
        want_tags,
        "{name}'s field numbers"
    );
}

#[test]
fn messages_match_the_proto() {
    let request = GetRatingRequest {
        item_id: "widget".into(),
    };
    check("GetRatingRequest", &request, format!("{request:?}"));
    let rating = Rating {
        item_id: "widget".into(),
        rating: 4,
        instance: 2,
    };
    check("Rating", &rating, format!("{rating:?}"));
    let watch = WatchRatingsRequest {
        item_ids: vec!["widget".into(), "gadget".into()],
        interval_ms: 100,
        rounds: 3,
    };
    check("WatchRatingsRequest", &watch, format!("{watch:?}"));
    assert_eq!(
        declared().len(),
        3,
        "every message in ratings.proto has a Rust type checked here"
    );
}

#[test]
fn the_service_routes_match_the_proto() {
    assert!(PROTO.contains("package ratings.v1;"));
    assert!(PROTO.contains("rpc GetRating(GetRatingRequest) returns (Rating);"));
    assert!(PROTO.contains("rpc WatchRatings(WatchRatingsRequest) returns (stream Rating);"));
    use ratings_api::ratings_server::{Ratings, RatingsServer};
    fn named<T: Ratings>() -> &'static str {
        <RatingsServer<T> as tonic::server::NamedService>::NAME
    }
    struct Nothing;
    #[tonic::async_trait]
    impl Ratings for Nothing {
        async fn get_rating(
            &self,
            _: tonic::Request<GetRatingRequest>,
        ) -> Result<tonic::Response<Rating>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
        type WatchRatingsStream = std::pin::Pin<
            Box<
                dyn tonic::codegen::tokio_stream::Stream<Item = Result<Rating, tonic::Status>>
                    + Send,
            >,
        >;
        async fn watch_ratings(
            &self,
            _: tonic::Request<WatchRatingsRequest>,
        ) -> Result<tonic::Response<Self::WatchRatingsStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
    }
    assert_eq!(named::<Nothing>(), ratings_api::SERVICE_NAME);
}
