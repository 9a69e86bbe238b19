//! `watch`: the ratings instances as the market sees them, redrawn every second.
//!
//! Polls the market's `/api/status` and prints it as a table (breaker state, attempts in
//! flight, requests, failures, recent latency per instance), then its
//! `/api/status/history` as a breaker timeline: one line per instance, one character per
//! second (`─` closed, `█` open, `▒` retest) over the last `--timeline` seconds, and the last
//! events with their times. On a terminal it clears the screen and redraws in
//! place, with breaker states in colour; into a pipe or file it prints one plain table per
//! poll. Ctrl-C stops it; `--count N` stops it after N polls. `make watch` runs it. An
//! `https://` market is reached through the library's client, trusting the system's roots
//! and `--ca-file`'s.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use clap::Parser;
use discovery_client::transport::{HttpClient, TlsConfig};
use http_body_util::BodyExt;
use market_app::status::{HistoryReport, StatusReport, table, timeline};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// How long one poll may take, connecting included.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Clears the screen and moves the cursor home.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// Watch the market's view of the ratings instances.
#[derive(Debug, Parser)]
#[command(name = "watch", version)]
struct Args {
    /// Base URL of the market (http:// or https://).
    #[arg(long, env = "MARKET_URL", default_value = "http://127.0.0.1:5000", value_parser = parse_market)]
    market: String,

    /// Also trust the CA certificates in this PEM file for an https:// market.
    #[arg(long, env = "WATCH_CA_FILE")]
    ca_file: Option<PathBuf>,

    /// Time between polls (`1s`, `500ms`, ...).
    #[arg(long, env = "WATCH_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    interval: Duration,

    /// Seconds of breaker timeline drawn under the table (0: no timeline).
    #[arg(long, env = "WATCH_TIMELINE", default_value_t = 60)]
    timeline: usize,

    /// Stop after this many polls (default: until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let http = match http_client(args.ca_file.as_ref()) {
        Ok(http) => http,
        Err(error) => {
            eprintln!("watch: {error}");
            return ExitCode::from(2);
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let url = format!("{}/api/status", args.market);
    let history_url = format!("{}/api/status/history", args.market);
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut polls = 0u64;
    while args.count.is_none_or(|count| polls < count) {
        let frame = async {
            ticks.tick().await;
            let report = fetch::<StatusReport>(&http, &url).await;
            let mut frame = match report {
                Ok(report) => table::render(&report, &args.market, terminal),
                Err(error) => return table::render_unreachable(&args.market, &error),
            };
            if args.timeline > 0 {
                frame.push('\n');
                match fetch::<HistoryReport>(&http, &history_url).await {
                    Ok(history) => frame.push_str(&timeline::render(
                        &history,
                        &args.market,
                        args.timeline,
                        terminal,
                    )),
                    Err(error) => frame.push_str(&format!("no timeline: {error}\n")),
                }
            }
            frame
        };
        let frame = tokio::select! {
            _ = &mut ctrl_c => break,
            frame = frame => frame,
        };
        polls += 1;
        if !draw(&frame, terminal) {
            // stdout is gone (the pipe was closed): nobody is watching.
            break;
        }
    }
    ExitCode::SUCCESS
}

/// The client polls go through: the system's roots, and `ca_file`'s.
fn http_client(ca_file: Option<&PathBuf>) -> Result<HttpClient, String> {
    let mut tls = TlsConfig::new();
    if let Some(path) = ca_file {
        let fail = |reason: String| format!("--ca-file {}: {reason}", path.display());
        let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        tls = tls
            .add_root_certificate(pem)
            .map_err(|e| fail(e.to_string()))?;
    }
    HttpClient::builder()
        .connect_timeout(POLL_TIMEOUT)
        .tls(tls)
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))
}

/// GETs and decodes one of the market's status answers, within [`POLL_TIMEOUT`].
async fn fetch<T: DeserializeOwned>(http: &HttpClient, url: &str) -> Result<T, String> {
    let request = axum::http::Request::get(url)
        .body(Bytes::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        // The library's error names the cause: connection refused, a certificate, ...
        let response = http
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| discovery_client::Error::from_leaf(e, url).to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(POLL_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {POLL_TIMEOUT:?}"))??;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    serde_json::from_slice::<T>(&body).map_err(|e| format!("{url} did not answer as expected: {e}"))
}

/// Prints one frame; false if stdout cannot be written any more.
fn draw(frame: &str, terminal: bool) -> bool {
    let updated = humantime::format_rfc3339_seconds(SystemTime::now());
    let text = if terminal {
        format!("{CLEAR}{frame}\nupdated {updated} · Ctrl-C to stop\n")
    } else {
        format!("{frame}updated {updated}\n\n")
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).is_ok() && stdout.flush().is_ok()
}

fn parse_market(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(trimmed.to_owned()),
        _ => Err(format!("{value:?} is not a URL like http://127.0.0.1:5000")),
    }
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval < Duration::from_millis(50) {
        return Err("the interval must be at least 50ms".into());
    }
    Ok(interval)
}
