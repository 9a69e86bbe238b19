//! A bounded open-loop load generator for the market.
//!
//! Open loop: requests leave on a fixed schedule (`rate` per second) whether or not earlier
//! ones have answered, as real users do, so a slow market shows up as latency and shed
//! requests rather than as a politely lower rate. Bounded three ways: by the schedule, by a
//! concurrency cap (a request that would exceed it is not sent and counted as shed), and by
//! a hard maximum duration after which the generator stops by itself.
//!
//! Each request is judged as a user would judge the page: three in four ask for
//! `/api/items` (JSON, with each rating's source), one in four for the HTML page `/`. A
//! request fails on a transport error or timeout, on any status but 200, or when the page
//! does not show its four items. Served pages are also checked for stale ratings, items
//! without a rating, and ratings that differ from the true ones learned before the faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::tally::{Tally, Verdict};

/// The true rating of each item, learned while every instance was healthy.
pub type Truth = BTreeMap<String, u64>;

/// How hard and how long to push.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Requests per second.
    pub rate: u32,
    /// Most requests in flight at once; more are shed, not queued.
    pub concurrency: usize,
    /// Bound on each request; a request that takes longer has failed.
    pub request_timeout: Duration,
    /// The generator stops by itself after this long even if nobody stops it.
    pub max_duration: Duration,
}

/// A running load; [`Load::stop`] ends it and returns what it saw.
#[derive(Debug)]
pub struct Load {
    /// Tells the generator to stop sending.
    stop: watch::Sender<bool>,
    /// The generator, which returns the tally once in-flight requests are done.
    task: JoinHandle<Tally>,
}

impl Load {
    /// Starts sending requests to the market at `market` (its base URL). Must be called
    /// inside a tokio runtime.
    pub fn start(market: &str, truth: Truth, config: LoadConfig) -> Load {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive(market.to_owned(), Arc::new(truth), config, stopped));
        Load { stop, task }
    }

    /// Stops sending, waits for the requests in flight (each is bounded by the request
    /// timeout) and returns the tally.
    pub async fn stop(self) -> Tally {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_else(|error| {
            let mut tally = Tally::default();
            let crashed = format!("load generator crashed: {error}");
            tally.record(Verdict::failed(crashed), Duration::ZERO);
            tally
        })
    }
}

async fn drive(
    market: String,
    truth: Arc<Truth>,
    config: LoadConfig,
    mut stopped: watch::Receiver<bool>,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let http = match reqwest::Client::builder()
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            let mut tally = Tally::default();
            tally.record(
                Verdict::failed(format!("HTTP client: {error}")),
                Duration::ZERO,
            );
            return tally;
        }
    };
    let cap = config.concurrency.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    let period = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    // Open loop: if the generator itself was delayed, catch up rather than lower the rate.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let deadline = started + config.max_duration;
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => break,
            () = tokio::time::sleep_until(deadline) => break,
        }
        if *stopped.borrow() {
            break;
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            lock(&tally).shed += 1;
            continue;
        };
        let page = sent % 4 == 3;
        sent += 1;
        let (http, market, truth, tally) = (
            http.clone(),
            market.clone(),
            Arc::clone(&truth),
            Arc::clone(&tally),
        );
        tokio::spawn(async move {
            let began = Instant::now();
            let verdict = if page {
                fetch_page(&http, &market, &truth).await
            } else {
                fetch_items(&http, &market, &truth).await
            };
            lock(&tally).record(verdict, began.elapsed());
            drop(permit);
        });
    }
    let elapsed = started.elapsed();
    // Every request in flight ends within its timeout; wait for them (with a margin).
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        config.request_timeout + Duration::from_secs(1),
        permits.acquire_many(all),
    )
    .await;
    let mut tally = std::mem::take(&mut *lock(&tally));
    tally.elapsed = elapsed;
    tally
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // Recording is a few additions; a panic cannot leave the tally half-updated.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `GET /api/items`: 200, four items, each rating checked.
async fn fetch_items(http: &reqwest::Client, market: &str, truth: &Truth) -> Verdict {
    let body = match get(http, &format!("{market}/api/items")).await {
        Ok(body) => body,
        Err(failed) => return failed,
    };
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(&body) else {
        return Verdict::failed(format!("/api/items: not JSON: {}", excerpt(&body)));
    };
    let Some(items) = answer["items"].as_array() else {
        return Verdict::failed(format!("/api/items: no items: {}", excerpt(&body)));
    };
    if items.len() != truth.len() {
        return Verdict::failed(format!("/api/items: {} items", items.len()));
    }
    let mut verdict = Verdict::default();
    for item in items {
        let id = item["id"].as_str().unwrap_or_default();
        match item["rating_source"].as_str() {
            Some("stale") => verdict.stale = true,
            Some("none") => verdict.unrated = true,
            _ => {}
        }
        if let Some(rating) = item["rating"].as_u64() {
            verdict.wrong |= truth.get(id) != Some(&rating);
        }
    }
    verdict
}

/// `GET /`: 200, four item sections, each shown rating checked.
async fn fetch_page(http: &reqwest::Client, market: &str, truth: &Truth) -> Verdict {
    let html = match get(http, &format!("{market}/")).await {
        Ok(html) => html,
        Err(failed) => return failed,
    };
    let sections = html.matches("<section class=\"item\"").count();
    if sections != truth.len() {
        return Verdict::failed(format!("/: {sections} item sections"));
    }
    let mut verdict = Verdict {
        stale: html.contains("data-source=\"stale\""),
        unrated: html.contains("data-source=\"none\""),
        ..Verdict::default()
    };
    for (id, rating) in truth {
        let Some(shown) = shown_rating(&html, id) else {
            continue;
        };
        verdict.wrong |= shown != *rating;
    }
    verdict
}

/// The rating shown in item `id`'s section of the page, if it shows one.
fn shown_rating(html: &str, id: &str) -> Option<u64> {
    let start = html.find(&format!("id=\"item-{id}\""))?;
    let section = &html[start..];
    let section = section
        .find("</section>")
        .map_or(section, |end| &section[..end]);
    let marker = "class=\"rating-number\">";
    let number = &section[section.find(marker)? + marker.len()..];
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// GETs `url`; the body of a 200, or the failed verdict.
async fn get(http: &reqwest::Client, url: &str) -> Result<String, Verdict> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| Verdict::failed(format!("{url}: {e}")))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| Verdict::failed(format!("{url}: body: {e}")))?;
    if status != reqwest::StatusCode::OK {
        return Err(Verdict::failed(format!(
            "{url}: {status}: {}",
            excerpt(&body)
        )));
    }
    Ok(body)
}

fn excerpt(body: &str) -> String {
    body.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rating_shown_in_each_section() {
        let html = "<section class=\"item\" id=\"item-widget\"><p><span class=\"rating-number\">4</span>/5</p></section>\
                    <section class=\"item\" id=\"item-gadget\"><p>no rating yet</p></section>\
                    <section class=\"item\" id=\"item-gizmo\"><span class=\"rating-number\">3</span></section>";
        assert_eq!(shown_rating(html, "widget"), Some(4));
        assert_eq!(
            shown_rating(html, "gadget"),
            None,
            "not the next item's rating"
        );
        assert_eq!(shown_rating(html, "gizmo"), Some(3));
        assert_eq!(shown_rating(html, "doohickey"), None);
    }
}
