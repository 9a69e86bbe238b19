//! A discovery source of your own: instances listed in a JSON file, read again whenever the
//! file changes. The second worked example of the `Discovery` trait (the first is in its
//! documentation).
//!
//! ```text
//! make registry & make startRatings COUNT=2          # or any ratings instances
//! echo '[{"id": "1", "address": "http://127.0.0.1:8001"}]' > instances.json
//! cargo run -p examples --example file-discovery -- instances.json
//! # meanwhile, add the second instance; the next calls use it:
//! echo '[{"id": "1", "address": "http://127.0.0.1:8001"},
//!        {"id": "2", "address": "http://127.0.0.1:8002"}]' > instances.json
//! ```
//!
//! The file is checked every 500 ms (its modification time and size) and at once when the
//! client asks for a fresh look (a breaker opened on a refused connection). A file that
//! cannot be read or parsed is an outage: the last good list stays in use, and the outage
//! is reported once, and its end once.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use discovery_client::discovery::{Discovery, DiscoverySink};
use discovery_client::{Event, Instance, ServiceClient};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

/// Instances listed in a JSON file: `[{"id": "1", "address": "http://..", "metadata": {}}]`.
#[derive(Debug, Clone)]
struct FileDiscovery {
    /// The file to read.
    path: PathBuf,
    /// How often to check whether it changed.
    every: Duration,
}

impl Discovery for FileDiscovery {
    fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let this = self.clone();
        async move {
            // What the file looked like when it was last read, to read it only on a change.
            let mut seen: Option<(SystemTime, u64)> = None;
            let mut in_outage = false;
            while !sink.is_closed() {
                match this.read_if_changed(&mut seen) {
                    Ok(Some(instances)) => {
                        if in_outage {
                            in_outage = false;
                            sink.recovered();
                        }
                        if !sink.publish(instances) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        // Read again next time, even if the file does not change.
                        seen = None;
                        if !in_outage {
                            in_outage = true;
                            sink.outage(reason);
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(this.every) => {}
                    () = sink.refresh_requested() => seen = None,
                }
            }
        }
        .boxed()
    }
}

impl FileDiscovery {
    /// The instances in the file, if it changed since `seen` (which is updated).
    fn read_if_changed(
        &self,
        seen: &mut Option<(SystemTime, u64)>,
    ) -> Result<Option<Vec<Instance>>, String> {
        let name = self.path.display();
        let meta = std::fs::metadata(&self.path).map_err(|e| format!("{name}: {e}"))?;
        let stamp = (
            meta.modified().map_err(|e| format!("{name}: {e}"))?,
            meta.len(),
        );
        if *seen == Some(stamp) {
            return Ok(None);
        }
        let text = std::fs::read(&self.path).map_err(|e| format!("{name}: {e}"))?;
        let instances: Vec<Instance> = serde_json::from_slice(&text)
            .map_err(|e| format!("{name}: not a JSON list of instances: {e}"))?;
        *seen = Some(stamp);
        Ok(Some(instances))
    }
}

#[derive(Debug, Deserialize)]
struct Rating {
    item_id: String,
    rating: u8,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "instances.json".to_string());
    let ratings = ServiceClient::builder("ratings")
        .discovery(FileDiscovery {
            path: path.into(),
            every: Duration::from_millis(500),
        })
        .timeout(Duration::from_secs(1))
        .build()?;
    let mut events = ratings.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::InstanceAdded { id, address, .. } = &event {
                println!("event: instance {id} added at {address}");
            } else {
                println!("event: {event:?}");
            }
        }
    });
    for _ in 0..20 {
        match ratings.get_json::<Rating>("/ratings/widget").await {
            Ok(r) => println!("{} has {} stars", r.item_id, r.rating),
            Err(error) => println!("no rating: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
