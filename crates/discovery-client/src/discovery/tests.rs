//! [`InstanceStream`]: discovery sets turned into `Change::Insert` / `Change::Remove`.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, poll_fn};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{broadcast, mpsc};
use tower::discover::Change;

use super::*;
use crate::events::{Event, EventBus};

/// A discovery source the test drives: `watch` hands the sink to the test.
#[derive(Debug)]
pub(crate) struct Scripted {
    pub(crate) sinks: mpsc::UnboundedSender<DiscoverySink>,
}

impl Discovery for Scripted {
    fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let _ = self.sinks.send(sink);
        futures::future::pending().boxed()
    }
}

async fn scripted() -> (InstanceStream, DiscoverySink, broadcast::Receiver<Event>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bus = EventBus::new(64);
    let events = bus.subscribe();
    let stream = InstanceStream::new("ratings", Scripted { sinks: tx })
        .expect("inside a runtime")
        .events(bus);
    let sink = rx.recv().await.expect("discovery started");
    (stream, sink, events)
}

fn instance(id: &str) -> Instance {
    Instance::new(id, format!("http://instance-{id}"))
}

/// The changes that are ready now, without waiting for more.
async fn ready_changes(stream: &mut InstanceStream) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(Ok(Some(change))) =
        tokio::time::timeout(Duration::from_millis(50), stream.try_next()).await
    {
        seen.push(match change {
            Change::Insert(address, instance) => format!("+{address} {}", instance.id),
            Change::Remove(address) => format!("-{address}"),
        });
    }
    seen
}

#[tokio::test]
async fn sets_become_inserts_and_removes_keyed_by_address() {
    let (mut stream, sink, mut events) = scripted().await;
    sink.publish(vec![instance("2"), instance("1")]);
    assert_eq!(
        ready_changes(&mut stream).await,
        ["+http://instance-1 1", "+http://instance-2 2"]
    );
    sink.publish(vec![instance("2"), instance("3")]);
    assert_eq!(
        ready_changes(&mut stream).await,
        ["-http://instance-1", "+http://instance-3 3"]
    );
    // Same address, new metadata: inserted again (a replacement), nothing removed.
    let mut relabelled = instance("2");
    relabelled.metadata.insert("zone".into(), "b".into());
    sink.publish(vec![relabelled, instance("3")]);
    assert_eq!(ready_changes(&mut stream).await, ["+http://instance-2 2"]);
    // The same set again changes nothing.
    sink.publish(vec![instance("3")]);
    sink.publish(vec![instance("3")]);
    assert_eq!(ready_changes(&mut stream).await, ["-http://instance-2"]);

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(match event {
            Event::InstanceAdded { id, .. } => format!("added {id}"),
            Event::InstanceRemoved { id, .. } => format!("removed {id}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "added 1",
            "added 2",
            "removed 1",
            "added 3",
            "removed 2",
            "added 2",
            "removed 2"
        ]
    );
}

#[tokio::test]
async fn outages_keep_the_instances_and_are_published_once_each() {
    let (mut stream, sink, mut events) = scripted().await;
    sink.publish(vec![instance("1")]);
    assert_eq!(ready_changes(&mut stream).await, ["+http://instance-1 1"]);
    let _ = events.try_recv(); // added 1
    sink.outage("registry unreachable");
    sink.recovered();
    assert!(
        ready_changes(&mut stream).await.is_empty(),
        "nothing removed"
    );
    assert_eq!(
        events.try_recv().expect("outage"),
        Event::DiscoveryOutage {
            service: "ratings".into(),
            reason: "registry unreachable".into()
        }
    );
    assert_eq!(
        events.try_recv().expect("recovered"),
        Event::DiscoveryRecovered {
            service: "ratings".into()
        }
    );
}

#[tokio::test]
async fn every_set_is_marked_settled_and_a_first_outage_unavailable() {
    let (mut stream, sink, _events) = scripted().await;
    let next = |stream: &mut InstanceStream| {
        let update = poll_fn(|cx| stream.poll_update(cx)).now_or_never();
        match update {
            Some(Some(Update::Settled)) => "settled".to_string(),
            Some(Some(Update::Unavailable(why))) => format!("unavailable: {why}"),
            Some(Some(Update::Changed(Change::Insert(a, _)))) => format!("+{a}"),
            Some(Some(Update::Changed(Change::Remove(a)))) => format!("-{a}"),
            Some(None) => "end".to_string(),
            None => "pending".to_string(),
        }
    };
    assert_eq!(next(&mut stream), "pending");
    sink.outage("down from the start");
    assert_eq!(
        next(&mut stream),
        "unavailable: down from the start",
        "nothing is coming: say so, and why"
    );
    sink.publish(Vec::new());
    assert_eq!(next(&mut stream), "settled", "an empty set is an answer");
    sink.outage("down again");
    assert_eq!(
        next(&mut stream),
        "pending",
        "an outage after an answer keeps the set"
    );
}

#[tokio::test]
async fn endpoints_turn_each_instance_into_a_service() {
    let (stream, sink, _events) = scripted().await;
    let mut endpoints = stream.endpoints(|instance| format!("service for {}", instance.id));
    sink.publish(vec![instance("1")]);
    let change = endpoints.next().await.expect("change").expect("infallible");
    assert!(
        matches!(change, Change::Insert(ref a, ref s) if a == "http://instance-1" && s == "service for 1"),
        "{change:?}"
    );
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let error = InstanceStream::new("ratings", StaticDiscovery::new(["http://a"])).unwrap_err();
    assert!(matches!(error, crate::Error::Config(_)), "{error:?}");
}
