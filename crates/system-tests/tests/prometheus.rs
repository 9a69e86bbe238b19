//! A real Prometheus against the real system: the registry, three ratings instances and the
//! market, with the shipped `deploy/prometheus/prometheus.yml` (its addresses pointed at
//! this test's programs, its intervals shortened to 1 s) and rules.
//!
//! Prometheus finds the ratings instances through the registry's `/v1/prometheus/targets`
//! (all three are scraped); a paused instance shows as down and an open breaker, a stopped
//! one (deregistered) leaves the discovered targets; every recording rule and every panel
//! query of `deploy/grafana/market-ratings.json` runs and returns data, and every alert
//! expression runs without error (they return data only when firing: promtool's tests in
//! `deploy/prometheus/tests/` cover that).
//!
//! Needs Debian's `prometheus` (`apt-get install -y prometheus`). Without it on `PATH` the
//! test says so and passes as skipped, unless `CI` is set: then it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use system_tests::*;
use tokio::time::Instant;

/// How long Prometheus may take to see something: a handful of 1 s scrapes and refreshes.
const PATIENCE: Duration = Duration::from_secs(30);

/// A Prometheus process on a free loopback port, with its configuration and data in a
/// temporary directory.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` with `config` and waits until it is ready.
    async fn start(binary: &Path, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        prometheus
            .eventually("Prometheus to be ready", || {
                let ready = ready.clone();
                async move {
                    let answer = http().get(&ready).send().await.ok()?;
                    answer.status().is_success().then_some(())
                }
            })
            .await;
        prometheus
    }

    /// Its log so far, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// [`eventually`] within [`PATIENCE`], with Prometheus' log in the failure message.
    async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what}; Prometheus' log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /api/v1/{path}` with `query` (URL-encoded here): the answer's `data`, or the
    /// answer's error as `Err`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let params: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        let url = format!("{}/api/v1/{path}?{}", self.url, params.join("&"));
        let answer: Value = http()
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("{}: {}", answer["errorType"], answer["error"]))
        }
    }

    /// The instant vector `expr` evaluates to now; panics if the query fails.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api("query", &[("query", expr)])
            .await
            .unwrap_or_else(|e| panic!("query {expr:?} failed: {e}"));
        match &data["result"] {
            Value::Array(samples) => samples.clone(),
            // A scalar or string result counts as one sample.
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The `prometheus` program; `None` (after saying why) when it is not installed and this is
/// not CI.
fn prometheus_binary() -> Option<PathBuf> {
    let found = on_path(&["prometheus"]);
    if found.is_none() {
        let message = "prometheus is not on PATH; install it with `apt-get install -y prometheus`";
        assert!(
            !in_ci(),
            "CI is set, so the Prometheus test must run: {message}"
        );
        eprintln!("SKIPPED the Prometheus test: {message}");
    }
    found
}

/// `value` percent-encoded for a query string (everything but unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `text` with `from` replaced by `to`, which must occur in it: the shipped file changing
/// under the test must fail it, not quietly test something else.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/prometheus/prometheus.yml no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// The shipped `deploy/prometheus/prometheus.yml`, pointed at `registry` and `market`,
/// scraping, discovering and evaluating every second, with the shipped rules.
fn config(registry: &Proc, market: &Proc) -> String {
    let deploy = workspace_dir().join("deploy/prometheus");
    let shipped = std::fs::read_to_string(deploy.join("prometheus.yml")).expect("prometheus.yml");
    let host = |proc: &Proc| proc.url.trim_start_matches("http://").to_owned();
    let rules = format!("{}/", deploy.join("rules").display());
    let config = replace(&shipped, "127.0.0.1:8500", &host(registry));
    let config = replace(&config, "127.0.0.1:5000", &host(market));
    let config = replace(&config, "scrape_interval: 5s", "scrape_interval: 1s");
    let config = replace(
        &config,
        "evaluation_interval: 5s",
        "evaluation_interval: 1s",
    );
    let config = replace(&config, "refresh_interval: 5s", "refresh_interval: 1s");
    replace(&config, "- rules/", &format!("- {rules}"))
}

/// The value of a sample of an instant vector.
fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// Every `expr` of the Grafana dashboard's panels.
fn dashboard_queries(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("dashboard JSON");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("a target's expr").to_owned())
        .collect();
    assert!(
        queries.len() >= 10,
        "a dashboard with its queries: {queries:?}"
    );
    queries
}

/// Page loads every 100 ms until dropped, so there is traffic to measure.
fn shoppers(market: &Proc) -> tokio::task::JoinHandle<()> {
    let page = market.url.clone();
    tokio::spawn(async move {
        let client = http();
        loop {
            let _ = client.get(&page).send().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn prometheus_discovers_instances_through_the_registry_and_every_query_has_data() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let registry = registry(&[]).await;
    // A short TTL: heartbeats every second, so the heartbeat queries have data at once.
    let mut r1 = ratings(1, &registry, &["--ttl", "3s"]).await;
    let mut r2 = ratings(2, &registry, &["--ttl", "3s"]).await;
    let _r3 = ratings(3, &registry, &["--ttl", "3s"]).await;
    wait_for_instances(&registry, "ratings", &["1", "2", "3"]).await;
    let market = market(&registry, &["--timeout", "300ms"]).await;
    let traffic = shoppers(&market);
    let prometheus = &Prometheus::start(&binary, &config(&registry, &market)).await;

    // Three ratings targets, found through the registry, all up.
    let up = prometheus
        .eventually("three ratings targets up", || async move {
            let up = prometheus.query(r#"up{service="ratings"} == 1"#).await;
            (up.len() == 3).then_some(up)
        })
        .await;
    let mut ids: Vec<&str> = up
        .iter()
        .map(|s| s["metric"]["instance_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    assert!(up.iter().all(|s| s["metric"]["job"] == "ratings"), "{up:?}");
    for job in ["registry", "market"] {
        let query = format!(r#"up{{job="{job}"}} == 1"#);
        let query = &query;
        prometheus
            .eventually(&format!("the {job} target up"), || async move {
                (prometheus.query(query).await.len() == 1).then_some(())
            })
            .await;
    }

    // Ctrl-Z instance 1 and stop instance 2 (it deregisters).
    r1.pause();
    assert!(r2.terminate().await, "instance 2 stops cleanly");
    let stopped = r2.url.trim_start_matches("http://").to_owned();
    let stopped = &stopped;
    prometheus
        .eventually(
            "instance 2 to leave the discovered targets",
            || async move {
                let targets = prometheus
                    .api("targets", &[("state", "active")])
                    .await
                    .ok()?;
                let active: Vec<String> = targets["activeTargets"]
                    .as_array()?
                    .iter()
                    .filter_map(|t| t["labels"]["instance"].as_str().map(str::to_owned))
                    .collect();
                (!active.is_empty() && !active.contains(stopped)).then_some(())
            },
        )
        .await;
    let open_breaker = &format!(
        r#"discovery_client_breaker_state{{service="ratings", instance="{}"}} > 0"#,
        r1.url
    );
    let paused = prometheus
        .eventually("instance 1 down, and its breaker open", || async move {
            let down = prometheus
                .query(r#"up{service="ratings", instance_id="1"} == 0"#)
                .await;
            let open = prometheus.query(open_breaker).await;
            (down.len() == 1 && open.len() == 1).then_some(open)
        })
        .await;
    assert!(value(&paused[0]) >= 1.0, "retest or open: {paused:?}");
    let up = prometheus.query(r#"up{service="ratings"} == 1"#).await;
    let ids: Vec<&str> = up
        .iter()
        .map(|s| s["metric"]["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["3"], "only instance 3 is up: {up:?}");

    // Every rule, as Prometheus loaded it from deploy/prometheus/rules/: it evaluates
    // without error; recording rules return data, alert expressions run.
    let groups = prometheus.api("rules", &[]).await.expect("rules");
    let rules: Vec<Value> = groups["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(rules.len() >= 20, "the shipped rules are loaded: {groups}");
    for rule in &rules {
        let (name, expr) = (
            rule["name"].as_str().unwrap(),
            rule["query"].as_str().unwrap(),
        );
        if rule["type"] == "recording" {
            prometheus
                .eventually(
                    &format!("recording rule {name} ({expr}) to have data"),
                    || async move { (!prometheus.query(expr).await.is_empty()).then_some(()) },
                )
                .await;
        } else {
            prometheus.query(expr).await;
        }
        prometheus
            .eventually(&format!("rule {name} to evaluate"), || async move {
                let groups = prometheus.api("rules", &[]).await.ok()?;
                let rule = groups["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .find(|r| r["name"] == name)?;
                match rule["health"].as_str()? {
                    "ok" => Some(()),
                    "err" => panic!("rule {name} fails: {}", rule["lastError"]),
                    _ => None,
                }
            })
            .await;
    }

    // Every panel of the Grafana dashboard has data.
    let dashboard = workspace_dir().join("deploy/grafana/market-ratings.json");
    for expr in dashboard_queries(&dashboard) {
        let expr = &expr;
        prometheus
            .eventually(
                &format!("dashboard query {expr} to have data"),
                || async move { (!prometheus.query(expr).await.is_empty()).then_some(()) },
            )
            .await;
    }
    traffic.abort();
    r1.resume();
}

#[test]
fn queries_are_percent_encoded() {
    assert_eq!(
        encode(r#"up{job="a b"} > 0"#),
        "up%7Bjob%3D%22a%20b%22%7D%20%3E%200"
    );
}
