//! `grpc::channel` against real tonic servers of the ratings gRPC API on loopback: which
//! statuses open which breakers, a paused instance, a stream longer than the per-attempt
//! timeout, and connection sharing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use discovery_client::breaker::BreakerState;
use discovery_client::events::EventBus;
use discovery_client::grpc::{self, GrpcChannel, GrpcConfig};
use discovery_client::{Balance, Event, Hedging, StaticDiscovery};
use futures::{Stream, StreamExt};
use ratings_api::ratings_client::RatingsClient;
use ratings_api::ratings_server::{Ratings, RatingsServer};
use ratings_api::{GetRatingRequest, Rating, WatchRatingsRequest};
use tokio::sync::{Notify, broadcast, oneshot};
use tonic::{Code, Request, Response, Status};

/// A test instance's mode that answers every `GetRating` `UNAVAILABLE` (0, the default,
/// serves).
const UNAVAILABLE: u8 = 1;

/// One instance's behaviour, shared with its server.
#[derive(Debug, Default)]
struct Behaviour {
    number: u32,
    mode: AtomicU8,
    paused: AtomicBool,
    resumed: Notify,
    calls: AtomicUsize,
}

impl Behaviour {
    /// Waits while the instance is paused (as a SIGSTOPped process: nothing answers).
    async fn wait_while_paused(&self) {
        while self.paused.load(Ordering::SeqCst) {
            let resumed = self.resumed.notified();
            if !self.paused.load(Ordering::SeqCst) {
                break;
            }
            resumed.await;
        }
    }
}

#[derive(Debug, Clone)]
struct TestRatings(Arc<Behaviour>);

type RatingStream = Pin<Box<dyn Stream<Item = Result<Rating, Status>> + Send>>;

#[tonic::async_trait]
impl Ratings for TestRatings {
    async fn get_rating(
        &self,
        request: Request<GetRatingRequest>,
    ) -> Result<Response<Rating>, Status> {
        let me = &self.0;
        me.calls.fetch_add(1, Ordering::SeqCst);
        me.wait_while_paused().await;
        if me.mode.load(Ordering::SeqCst) == UNAVAILABLE {
            return Err(Status::unavailable("instance is draining"));
        }
        let item_id = request.into_inner().item_id;
        if item_id == "missing" {
            return Err(Status::not_found(format!("no item {item_id}")));
        }
        Ok(Response::new(Rating {
            item_id,
            rating: 4,
            instance: me.number,
        }))
    }

    type WatchRatingsStream = RatingStream;

    async fn watch_ratings(
        &self,
        request: Request<WatchRatingsRequest>,
    ) -> Result<Response<RatingStream>, Status> {
        let request = request.into_inner();
        let number = self.0.number;
        let every = Duration::from_millis(request.interval_ms);
        let item = request.item_ids.first().cloned().unwrap_or_default();
        let stream = futures::stream::iter(0..request.rounds).then(move |_| {
            let item_id = item.clone();
            async move {
                tokio::time::sleep(every).await;
                Ok(Rating {
                    item_id,
                    rating: 4,
                    instance: number,
                })
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A tonic server on a port-0 loopback listener.
struct Instance {
    address: String,
    behaviour: Arc<Behaviour>,
    connections: Arc<AtomicUsize>,
    /// Stops the server (closing its connections) and says when it has.
    stop: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Instance {
    async fn start(number: u32) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = format!("http://{}", listener.local_addr().expect("an address"));
        let behaviour = Arc::new(Behaviour {
            number,
            ..Behaviour::default()
        });
        let mut instance = Self {
            address,
            behaviour,
            connections: Arc::new(AtomicUsize::new(0)),
            stop: None,
        };
        instance.serve(listener);
        instance
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let counted = Arc::clone(&self.connections);
        let incoming =
            tokio_stream::wrappers::TcpListenerStream::new(listener).inspect(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(RatingsServer::new(TestRatings(Arc::clone(&self.behaviour))))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        let running = tokio::spawn(async {
            let _ = server.await;
        });
        self.stop = Some((stop, running));
    }

    /// Stops the server, closing its connections, and starts a new one on the same port.
    async fn restart(&mut self) {
        if let Some((stop, running)) = self.stop.take() {
            let _ = stop.send(());
            running.await.expect("the server stopped");
        }
        let port = self.address.trim_start_matches("http://");
        let listener = tokio::net::TcpListener::bind(port)
            .await
            .expect("the same port again");
        self.serve(listener);
    }

    fn set_mode(&self, mode: u8) {
        self.behaviour.mode.store(mode, Ordering::SeqCst);
    }

    fn pause(&self) {
        self.behaviour.paused.store(true, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.behaviour.calls.load(Ordering::SeqCst)
    }
}

async fn instances(count: u32) -> Vec<Instance> {
    let mut all = Vec::new();
    for number in 1..=count {
        all.push(Instance::start(number).await);
    }
    all
}

fn client(instances: &[Instance], config: GrpcConfig) -> RatingsClient<GrpcChannel> {
    let addresses: Vec<String> = instances.iter().map(|i| i.address.clone()).collect();
    let channel = grpc::channel("ratings", StaticDiscovery::new(addresses), config)
        .expect("a channel inside a runtime");
    RatingsClient::new(channel)
}

async fn get(client: &mut RatingsClient<GrpcChannel>, item: &str) -> Result<Rating, Status> {
    let request = GetRatingRequest {
        item_id: item.into(),
    };
    client.get_rating(request).await.map(Response::into_inner)
}

/// The addresses whose breaker opened, from the events received so far.
fn opened(events: &mut broadcast::Receiver<Event>) -> Vec<String> {
    let mut addresses = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::BreakerOpened { address, .. } = event {
            addresses.push(address);
        }
    }
    addresses
}

fn config(bus: &EventBus) -> GrpcConfig {
    GrpcConfig::default()
        .balance(Balance::RoundRobin)
        .events(bus.clone())
}

#[tokio::test]
async fn unavailable_opens_only_that_instance() {
    let all = instances(3).await;
    all[1].set_mode(UNAVAILABLE);
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let mut ratings = client(&all, config(&bus));
    let mut failed = 0;
    let mut served_by = Vec::new();
    for _ in 0..12 {
        match get(&mut ratings, "widget").await {
            Ok(rating) => served_by.push(rating.instance),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1, "one UNAVAILABLE opens instance 2's breaker");
    assert_eq!(opened(&mut events), vec![all[1].address.clone()]);
    assert_eq!(all[1].calls(), 1, "no call reaches an open breaker");
    assert!(served_by.contains(&1) && served_by.contains(&3));
    assert!(!served_by.contains(&2));
}

/// What `GrpcChannel::instances` reports: every instance, by id, all closed with their
/// calls counted; then the one that answered `UNAVAILABLE` open, with its failure.
#[tokio::test]
async fn the_channel_reports_each_instance_its_breaker_and_calls() {
    let all = instances(3).await;
    let addresses: Vec<String> = all.iter().map(|i| i.address.clone()).collect();
    let bus = EventBus::new(256);
    let channel = grpc::channel("ratings", StaticDiscovery::new(addresses), config(&bus))
        .expect("a channel inside a runtime");
    let mut ratings = RatingsClient::new(channel.clone());
    for _ in 0..6 {
        get(&mut ratings, "widget").await.expect("served");
    }
    let status = channel.instances();
    let ids: Vec<&str> = status.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"], "{status:?}");
    for (instance, status) in all.iter().zip(&status) {
        assert_eq!(status.address, instance.address);
        assert_eq!(status.state, BreakerState::Closed, "{status:?}");
        assert_eq!((status.requests, status.failures), (2, 0), "{status:?}");
        assert!(status.latency_p50.is_some(), "{status:?}");
        assert_eq!(status.share, 1.0, "{status:?}");
    }
    all[1].set_mode(UNAVAILABLE);
    for _ in 0..3 {
        let _ = get(&mut ratings, "widget").await;
    }
    let status = channel.instances();
    let states: Vec<BreakerState> = status.iter().map(|s| s.state).collect();
    let open = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::Closed,
    ];
    assert_eq!(states, open, "{status:?}");
    assert_eq!((status[1].requests, status[1].failures), (3, 1));
}

#[tokio::test]
async fn not_found_opens_nothing() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let mut ratings = client(&all, config(&bus));
    for _ in 0..6 {
        let status = get(&mut ratings, "missing").await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "the application's status reaches the caller"
        );
    }
    assert!(opened(&mut events).is_empty());
    assert_eq!(
        (all[0].calls(), all[1].calls()),
        (3, 3),
        "round-robin, nobody ejected"
    );
}

#[tokio::test]
async fn a_paused_instance_is_opened_and_the_others_serve() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let config = config(&bus).timeout(Duration::from_millis(300));
    let mut ratings = client(&all, config);
    // Both instances connected and healthy first.
    for _ in 0..2 {
        get(&mut ratings, "widget").await.expect("a rating");
    }
    all[0].pause();
    let mut timed_out = 0;
    for _ in 0..6 {
        match get(&mut ratings, "widget").await {
            Ok(rating) => assert_eq!(rating.instance, 2),
            Err(status) => {
                assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
                timed_out += 1;
            }
        }
    }
    assert_eq!(timed_out, 1, "one timeout opens the paused instance");
    assert_eq!(opened(&mut events), vec![all[0].address.clone()]);
}

/// A stream six times the per-attempt timeout (3 s under 500 ms: the same property as 30 s
/// under 1 s, in a tenth of the time) runs to its end and opens nothing.
#[tokio::test]
async fn a_stream_longer_than_the_timeout_completes() {
    let all = instances(1).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let config = config(&bus).timeout(Duration::from_millis(500));
    let mut ratings = client(&all, config);
    let request = WatchRatingsRequest {
        item_ids: vec!["widget".into()],
        interval_ms: 100,
        rounds: 30,
    };
    let started = tokio::time::Instant::now();
    let mut stream = ratings
        .watch_ratings(request)
        .await
        .expect("the stream's head in time")
        .into_inner();
    let mut received = 0;
    while let Some(rating) = stream.message().await.expect("no error mid-stream") {
        assert_eq!(rating.item_id, "widget");
        received += 1;
    }
    assert_eq!(received, 30);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(opened(&mut events).is_empty());
    get(&mut ratings, "widget")
        .await
        .expect("the instance still serves");
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_per_instance() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let ratings = client(&all, config(&bus));
    let calls = (0..100).map(|_| {
        let mut ratings = ratings.clone();
        async move { get(&mut ratings, "widget").await }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(all[0].calls() + all[1].calls(), 100);
    assert!(all[0].calls() > 0 && all[1].calls() > 0);
    assert_eq!(
        (
            all[0].connections.load(Ordering::SeqCst),
            all[1].connections.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

/// The path of `GetRating`, the method marked idempotent in the retry tests.
const GET_RATING: &str = "/ratings.v1.Ratings/GetRating";

/// Round-robin, `GetRating` idempotent, hedged after a fixed 50 ms.
fn retrying(bus: &EventBus) -> GrpcConfig {
    config(bus)
        .idempotent(GET_RATING)
        .hedging(Hedging::After(Duration::from_millis(50)))
}

/// Waits (at most `within`) for instance `address`'s breaker to open.
async fn opens(events: &mut broadcast::Receiver<Event>, address: &str, within: Duration) {
    let opened = async {
        loop {
            match events.recv().await {
                Ok(Event::BreakerOpened { address: a, .. }) if a == address => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("bus closed"),
            }
        }
    };
    tokio::time::timeout(within, opened)
        .await
        .unwrap_or_else(|_| panic!("{address}'s breaker did not open in {within:?}"));
}

#[tokio::test]
async fn a_paused_instance_is_hedged_and_its_breaker_opens() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let mut ratings = client(&all, retrying(&bus).timeout(Duration::from_secs(1)));
    for _ in 0..2 {
        get(&mut ratings, "widget").await.expect("a rating");
    }
    all[0].pause();
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        let rating = get(&mut ratings, "widget").await.expect("hedged, answered");
        assert_eq!(rating.instance, 2);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answered well before the 1 s timeout: {:?}",
            started.elapsed()
        );
    }
    let mut hedged = 0;
    while let Ok(event) = events.try_recv() {
        if let Event::Hedged { slow, hedge, .. } = event {
            assert_eq!((slow.as_str(), hedge.as_str()), ("1", "2"));
            hedged += 1;
        }
    }
    assert!(hedged >= 1, "the paused instance's call was hedged");
    // The hedged-over attempt was not cancelled: its timeout opens the breaker.
    opens(&mut events, &all[0].address, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn unavailable_is_retried_on_another_instance() {
    let all = instances(2).await;
    all[0].set_mode(UNAVAILABLE);
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let mut ratings = client(&all, retrying(&bus));
    for _ in 0..6 {
        let rating = get(&mut ratings, "widget")
            .await
            .expect("retried, answered");
        assert_eq!(rating.instance, 2);
    }
    assert_eq!(
        all[0].calls(),
        1,
        "one UNAVAILABLE opens instance 1's breaker"
    );
    assert_eq!(opened(&mut events), vec![all[0].address.clone()]);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let mut ratings = client(&all, retrying(&bus));
    for _ in 0..4 {
        let status = get(&mut ratings, "missing").await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_eq!((all[0].calls(), all[1].calls()), (2, 2), "one attempt each");
}

#[tokio::test]
async fn methods_not_marked_are_neither_retried_nor_hedged() {
    let all = instances(2).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let config = config(&bus)
        .hedging(Hedging::After(Duration::from_millis(20)))
        .timeout(Duration::from_millis(300));
    let mut ratings = client(&all, config);
    for _ in 0..2 {
        get(&mut ratings, "widget").await.expect("a rating");
    }
    all[0].pause();
    let started = tokio::time::Instant::now();
    let status = get(&mut ratings, "widget").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(all[1].calls(), 1, "nothing hedged or retried on instance 2");
    all[1].set_mode(UNAVAILABLE);
    let status = get(&mut ratings, "widget").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let hedges = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, Event::Hedged { .. }))
        .count();
    assert_eq!(hedges, 0);
}

#[tokio::test]
async fn the_budget_bounds_retries() {
    let all = instances(3).await;
    for instance in &all {
        instance.set_mode(UNAVAILABLE);
    }
    let bus = EventBus::new(256);
    // No floor, one retry per two calls; breakers that do not open.
    let config = retrying(&bus)
        .failure_limit(1000)
        .min_retries_per_sec(0)
        .retry_budget(0.5);
    let mut ratings = client(&all, config);
    for _ in 0..10 {
        let status = get(&mut ratings, "widget").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    let attempts: usize = all.iter().map(Instance::calls).sum();
    assert_eq!(attempts, 15, "10 calls and the 5 retries the budget allows");
}

/// The connection to an instance that restarted (its server closed the connection) is
/// made again by the next call: no call fails, no breaker opens, and the new server
/// counts a connection of its own.
#[tokio::test]
async fn a_restarted_instance_is_connected_to_again() {
    let mut all = instances(1).await;
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let mut ratings = client(&all, config(&bus));
    get(&mut ratings, "widget").await.expect("served");
    assert_eq!(all[0].connections.load(Ordering::SeqCst), 1);
    all[0].restart().await;
    // The client's connection task sees the close (it is not a call's to find).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let rating = get(&mut ratings, "widget").await.expect("served again");
        assert_eq!(rating.instance, 1);
    }
    assert_eq!(
        all[0].connections.load(Ordering::SeqCst),
        2,
        "one new connection"
    );
    assert_eq!(opened(&mut events), Vec::<String>::new());
}

/// An instance that refuses connections fails its calls as transport failures: its
/// breaker opens, and the other instance serves.
#[tokio::test]
async fn an_instance_refusing_connections_is_opened_and_the_other_serves() {
    let all = instances(1).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let addresses = vec![refusing.clone(), all[0].address.clone()];
    let channel = grpc::channel("ratings", StaticDiscovery::new(addresses), config(&bus))
        .expect("a channel inside a runtime");
    let mut ratings = RatingsClient::new(channel);
    let mut failed = Vec::new();
    for _ in 0..6 {
        if let Err(status) = get(&mut ratings, "widget").await {
            failed.push(status.code());
        }
    }
    assert_eq!(
        failed,
        vec![Code::Unavailable],
        "one refused call opens the breaker"
    );
    assert_eq!(opened(&mut events), vec![refusing]);
    assert_eq!(all[0].calls(), 5);
}

/// A call's own deadline (`grpc-timeout`, from tonic's `Request::set_timeout`) bounds the
/// whole call, shorter than the per-attempt timeout: `DEADLINE_EXCEEDED` when it passes,
/// and the instance is not blamed for the caller's deadline. The instance takes connections
/// and never answers (as a stopped process), so only the client can end the call.
#[tokio::test]
async fn the_calls_grpc_timeout_bounds_it() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let config = config(&bus)
        .idempotent("/ratings.v1.Ratings/GetRating")
        .timeout(Duration::from_secs(3));
    let channel = grpc::channel("ratings", StaticDiscovery::new([address]), config)
        .expect("a channel inside a runtime");
    let mut ratings = RatingsClient::new(channel);
    let mut request = Request::new(GetRatingRequest {
        item_id: "widget".into(),
    });
    request.set_timeout(Duration::from_millis(150));
    let started = tokio::time::Instant::now();
    let status = ratings.get_rating(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("grpc-timeout"), "{status:?}");
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(opened(&mut events), Vec::<String>::new());
}
