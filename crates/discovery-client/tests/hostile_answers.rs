//! Property tests of the client's response decoding over real sockets: a fake instance (and a
//! fake registry) answers arbitrary bytes, and the client always comes back with a typed
//! answer: the decoded value when the body really is one, a typed error otherwise, never a
//! panic and never a hang (each call ends within a small multiple of its timeout).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::Duration;

use discovery_client::{Error, RegistryDiscovery, ServiceClient, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings, response};
use proptest::prelude::*;
use serde::Deserialize;
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// What the market decodes a ratings answer as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Rating {
    item_id: String,
    rating: u8,
    instance: u16,
}

/// The per-attempt timeout; every call must end well within a few of these.
const TIMEOUT: Duration = Duration::from_millis(300);

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Which property owns a fake (properties run in parallel, so each needs its own).
#[derive(Clone, Copy)]
enum Owner {
    StatusAndBody = 0,
    AnyBytes = 1,
    LyingFraming = 2,
}

/// A fake instance per property and a client that only ever calls it, never opening its
/// breaker, never retrying and never avoiding it after a 429, so each case is exactly one
/// request and one answer.
fn instance(owner: Owner) -> &'static (FakeRatings, ServiceClient) {
    static INSTANCES: [OnceLock<(FakeRatings, ServiceClient)>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    INSTANCES[owner as usize].get_or_init(|| {
        runtime().block_on(async {
            let fake = FakeRatings::start(1, Behaviour::Ratings).await;
            let client = ServiceClient::builder("ratings")
                .discovery(StaticDiscovery::new([fake.url.clone()]))
                .timeout(TIMEOUT)
                .failure_limit(u32::MAX)
                .max_retries(0)
                .max_retry_after(Duration::ZERO)
                .build()
                .expect("client");
            (fake, client)
        })
    })
}

/// Serves `raw` as the instance's whole answer and calls `get_json::<Rating>`.
fn call_with(owner: Owner, raw: Vec<u8>) -> (Result<Rating, Error>, Duration) {
    let (fake, client) = instance(owner);
    fake.set(Behaviour::Raw(raw));
    runtime().block_on(async {
        let started = Instant::now();
        let result = client.get_json::<Rating>("/ratings/widget").await;
        (result, started.elapsed())
    })
}

/// Bodies: arbitrary bytes, arbitrary JSON, real ratings, and ratings that are nearly right.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let json_leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let json = json_leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let rating = (".{0,10}", any::<i64>(), any::<i64>()).prop_map(|(id, rating, instance)| {
        serde_json::json!({"item_id": id, "rating": rating % 300, "instance": instance % 70_000})
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json.prop_map(|v| v.to_string().into_bytes()),
        rating.prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// Statuses with a body (204, 205 and 304 never carry one, so they are left out).
fn statuses() -> impl Strategy<Value = u16> {
    (200_u16..600).prop_filter("has a body", |s| ![204, 205, 304].contains(s))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A well-formed HTTP answer with any status and body: a 2xx body that is a rating is
    /// that rating, any other 2xx body is `Decode`, a 429 is `Overloaded`, any other status
    /// is `Status`.
    #[test]
    fn any_status_and_body_gives_the_value_or_a_typed_error(status in statuses(), body in bodies()) {
        let expected = serde_json::from_slice::<Rating>(&body);
        let (result, took) = call_with(Owner::StatusAndBody, response(status, &body));
        prop_assert!(took < TIMEOUT * 2, "took {:?}", took);
        match (status, result) {
            (200..=299, Ok(rating)) => prop_assert_eq!(Some(rating), expected.ok()),
            (200..=299, Err(Error::Decode { .. })) => prop_assert!(expected.is_err()),
            (429, Err(Error::Overloaded { .. })) => {}
            (s, Err(Error::Status { status, .. })) if !(200..=299).contains(&s) => {
                prop_assert_eq!(status, s);
            }
            (s, other) => prop_assert!(false, "status {} gave {:?}", s, other),
        }
    }

    /// Bytes that need not be HTTP at all: never a panic or a hang, always a typed error
    /// (or, for bytes that happen to be a valid answer, the value).
    #[test]
    fn any_bytes_on_the_wire_give_a_typed_error(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let (result, took) = call_with(Owner::AnyBytes, raw);
        prop_assert!(took < TIMEOUT * 2, "took {:?}", took);
        match result {
            Ok(_) | Err(Error::Http { .. } | Error::Timeout { .. } | Error::Status { .. } | Error::Decode { .. } | Error::Overloaded { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    /// HTTP framing that lies (a content length longer or shorter than the body, a body cut
    /// short by the connection closing): a typed error or the value, never a panic.
    #[test]
    fn lying_framing_gives_a_typed_error(
        status in statuses(),
        body in bodies(),
        claimed in 0_usize..600,
    ) {
        let mut raw = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {claimed}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let (result, took) = call_with(Owner::LyingFraming, raw);
        prop_assert!(took < TIMEOUT * 2, "took {:?}", took);
        match result {
            Ok(_) | Err(Error::Http { .. } | Error::Timeout { .. } | Error::Status { .. } | Error::Decode { .. } | Error::Overloaded { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}

/// Registry answers: arbitrary bytes, JSON of the wrong shape, and well-shaped answers whose
/// instance addresses are nonsense (never a real host: nothing may leave loopback).
fn registry_answers() -> impl Strategy<Value = Vec<u8>> {
    let nonsense_address = "[a-z]{0,5}[:/]{0,3}[ -~]{0,20}".prop_filter("not an http URL", |a| {
        !a.to_ascii_lowercase().starts_with("http")
    });
    let instance = (".{0,8}", nonsense_address)
        .prop_map(|(id, address)| serde_json::json!({"id": id, "address": address}));
    let listing = (any::<u64>(), prop::collection::vec(instance, 0..3))
        .prop_map(|(index, instances)| serde_json::json!({"index": index, "instances": instances}));
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        Just(br#"{"index": "seven", "instances": []}"#.to_vec()),
        Just(br#"{"index": 3, "instances": [{"id": 5}]}"#.to_vec()),
        listing.prop_map(|v| v.to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A registry that answers garbage (or lists garbage): the client's call still ends
    /// quickly with a typed error.
    #[test]
    fn a_registry_answering_garbage_gives_a_typed_error(status in statuses(), body in registry_answers()) {
        let result = runtime().block_on(async {
            let registry = FakeRatings::start(0, Behaviour::Raw(response(status, &body))).await;
            let client = ServiceClient::builder("ratings")
                .discovery(RegistryDiscovery::new(&registry.url))
                .timeout(TIMEOUT)
                .max_retries(0)
                .build()
                .expect("client");
            let started = Instant::now();
            let result = client.get("/ratings/widget").await;
            (result.map(|r| r.status()), started.elapsed())
        });
        let (result, took) = result;
        prop_assert!(took < TIMEOUT * 3, "took {:?}", took);
        match result {
            Err(
                Error::AllInstancesDown { .. }
                | Error::Discovery(_)
                | Error::Http { .. }
                | Error::InvalidRequest(_)
                | Error::Timeout { .. },
            ) => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
