//! Watches the registry's listing of the ratings service through a fault, to show that no
//! registration was lost: the listing must never name fewer instances than are alive.
//!
//! A [`ListingWatch`] asks `GET /v1/services/ratings` every 50 ms (1 s limit each) from
//! its start until [`ListingWatch::stop`]. An answer that is not a 200 with an instance
//! list (the registry killed, or its store without quorum) is counted as unanswered, not as
//! a drop: the registry said nothing about its registrations then.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the listing is read.
const EVERY: Duration = Duration::from_millis(50);

/// What the watch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Reads answered 200 with an instance list.
    pub answered: u64,
    /// Reads that failed or were answered otherwise.
    pub unanswered: u64,
    /// The fewest instances any answered read listed, with their ids.
    pub fewest: Option<Vec<String>>,
    /// The first unanswered read's reason, for the report.
    pub first_unanswered: Option<String>,
}

impl Listing {
    /// One line for the report: `fewest 3 (1,2,3) in 120 answers, 4 unanswered (why)`.
    pub fn summary(&self) -> String {
        let fewest = self.fewest.as_ref().map_or("none".to_owned(), |ids| {
            format!("{} ({})", ids.len(), ids.join(","))
        });
        let mut line = format!(
            "fewest listed {fewest} in {} answers, {} unanswered",
            self.answered, self.unanswered
        );
        if let Some(why) = &self.first_unanswered {
            line.push_str(&format!(" (first: {why})"));
        }
        line
    }

    fn record(&mut self, read: Result<Vec<String>, String>) {
        match read {
            Ok(ids) => {
                self.answered += 1;
                if self.fewest.as_ref().is_none_or(|f| ids.len() < f.len()) {
                    self.fewest = Some(ids);
                }
            }
            Err(why) => {
                self.unanswered += 1;
                self.first_unanswered.get_or_insert(why);
            }
        }
    }
}

/// The running watch.
pub struct ListingWatch {
    /// Ends the watch.
    stop: oneshot::Sender<()>,
    /// The watching task, which returns what it saw.
    task: JoinHandle<Listing>,
}

impl ListingWatch {
    /// Starts reading `registry_url`'s ratings listing.
    pub fn start(registry_url: String, http: reqwest::Client) -> ListingWatch {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let url = format!("{registry_url}/v1/services/ratings");
            let mut listing = Listing::default();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Ends when `stop` fires (or its sender is dropped).
            loop {
                tokio::select! {
                    _ = &mut stopped => return listing,
                    _ = tick.tick() => listing.record(read(&http, &url).await),
                }
            }
        });
        ListingWatch { stop, task }
    }

    /// Stops the watch and returns what it saw.
    pub async fn stop(self) -> Listing {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// One read of the listing: the ids listed, or why there was no listing.
async fn read(http: &reqwest::Client, url: &str) -> Result<Vec<String>, String> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "{status}: {}",
            body.chars().take(80).collect::<String>()
        ));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("not JSON: {e}"))?;
    let mut ids: Vec<String> = body["instances"]
        .as_array()
        .ok_or("no instance list")?
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fewest_listing_is_kept_and_failures_are_apart() {
        let mut listing = Listing::default();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        listing.record(Ok(ids(&["1", "2", "3"])));
        listing.record(Err("503".into()));
        listing.record(Ok(ids(&["1", "3"])));
        listing.record(Ok(ids(&["1", "2", "3"])));
        listing.record(Err("refused".into()));
        assert_eq!(listing.answered, 3);
        assert_eq!(listing.unanswered, 2);
        assert_eq!(listing.fewest, Some(ids(&["1", "3"])));
        assert_eq!(listing.first_unanswered.as_deref(), Some("503"));
        assert!(
            listing
                .summary()
                .starts_with("fewest listed 2 (1,3) in 3 answers")
        );
    }
}
