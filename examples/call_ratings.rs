//! Calls the ratings service through a registry, as another team's application would.
//!
//! ```text
//! make registry                      # terminal 1
//! make startRatings COUNT=2          # terminal 2
//! cargo run -p examples --example call-ratings -- http://127.0.0.1:8500
//! ```
//!
//! It fetches a rating ten times, one call every 500 ms, printing which instance answered
//! and every breaker or discovery event it is told about. Pause an instance meanwhile
//! (`make pauseRatings INSTANCE=1`) to see its breaker open.

use std::time::Duration;

use discovery_client::{RegistryDiscovery, ServiceClient};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Rating {
    item_id: String,
    rating: u8,
    instance: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let registry = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8500".to_string());

    let ratings = ServiceClient::builder("ratings")
        .discovery(RegistryDiscovery::new(registry))
        .timeout(Duration::from_secs(1))
        .failure_limit(1)
        .retest_delay(Duration::from_secs(5))
        .build()?;

    let mut events = ratings.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("event: {event:?}");
        }
    });

    for _ in 0..10 {
        match ratings.get_json::<Rating>("/ratings/widget").await {
            Ok(r) => println!(
                "{} is rated {}/5 (instance {})",
                r.item_id, r.rating, r.instance
            ),
            Err(e) => println!("no rating: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
