//! The status as a fixed-width text table, for the `watch` terminal program.
//!
//! ```text
//! ratings instances (as the market at http://127.0.0.1:5000 sees them)
//! ID  ADDRESS                BREAKER  IN FLIGHT  REQUESTS  FAILURES  P50 MS  P99 MS  SHARE %
//! 1   http://127.0.0.1:8001  closed           0        12         0    1.23    4.56    100.0
//! 2   http://127.0.0.1:8002  open             1         7         1       —       —    100.0
//! ratings shown: 17 live, 0 cache, 1 stale, 0 none
//! ```
//!
//! SHARE % is the instance's share of the balancer's turns (below 100 while it answers much
//! slower than the others, or ramps up after slow start); an instance that pushed back shows
//! `closed, pushed back` in the breaker column while it is left alone.
//!
//! With `colour`, breaker states are green (closed), yellow (retest) or red (open); the
//! columns are padded before colouring, so they line up either way.

use std::fmt::Write as _;

use super::report::{InstanceReport, StatusReport};

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Column titles; the first three are aligned left, the numbers right.
const TITLES: [&str; COLUMNS] = [
    "ID",
    "ADDRESS",
    "BREAKER",
    "IN FLIGHT",
    "REQUESTS",
    "FAILURES",
    "P50 MS",
    "P99 MS",
    "SHARE %",
];

/// How many columns there are.
const COLUMNS: usize = 9;

/// Which column holds the breaker state (coloured after padding).
const STATE: usize = 2;

/// Renders `report`, fetched from the market at `market`, as lines of text. Each column is
/// as wide as its widest cell.
pub fn render(report: &StatusReport, market: &str, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} instances (as the market at {market} sees them)",
        report.service
    );
    let rows: Vec<[String; COLUMNS]> = report.instances.iter().map(cells).collect();
    let mut widths = TITLES.map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let _ = writeln!(out, "{}", line(&TITLES.map(str::to_owned), &widths, None));
    if report.instances.is_empty() {
        let _ = writeln!(
            out,
            "(no instances known: is any ratings instance running?)"
        );
    }
    for (row, instance) in rows.iter().zip(&report.instances) {
        let colour = colour.then(|| state_colour(instance));
        let _ = writeln!(out, "{}", line(row, &widths, colour));
    }
    let _ = writeln!(out, "ratings shown: {}", report.ratings);
    out
}

/// One instance's cells, in [`TITLES`] order.
fn cells(instance: &InstanceReport) -> [String; COLUMNS] {
    let state = match instance.pushed_back_ms {
        Some(_) => format!("{}, pushed back", instance.state),
        None => instance.state.clone(),
    };
    [
        instance.id.clone(),
        instance.address.clone(),
        state,
        instance.in_flight.to_string(),
        instance.requests.to_string(),
        instance.failures.to_string(),
        figure(instance.latency_p50_ms),
        figure(instance.latency_p99_ms),
        format!("{:.1}", instance.share_percent),
    ]
}

/// `cells` padded to `widths` and joined by two spaces, the state in `colour` if given.
fn line(cells: &[String; COLUMNS], widths: &[usize; COLUMNS], colour: Option<&str>) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(column, (cell, &width))| match (column, colour) {
            (STATE, Some(colour)) => format!("{colour}{cell:<width$}{RESET}"),
            (0..=STATE, _) => format!("{cell:<width$}"),
            _ => format!("{cell:>width$}"),
        })
        .collect();
    padded.join("  ")
}

/// What to show when the market could not be asked.
pub fn render_unreachable(market: &str, error: &str) -> String {
    format!("cannot get the status from the market at {market}: {error}\n")
}

fn state_colour(instance: &InstanceReport) -> &'static str {
    match instance.state.as_str() {
        "closed" => GREEN,
        "retest" => YELLOW,
        _ => RED,
    }
}

/// A latency in milliseconds to two decimals, or `—` before the first attempt.
fn figure(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratings::SourceCounts;

    fn sample() -> StatusReport {
        serde_json::from_str(
            r#"{
                "service": "ratings",
                "instances": [
                    {"id": "1", "address": "http://127.0.0.1:8001", "state": "closed",
                     "in_flight": 0, "requests": 12, "failures": 0,
                     "latency_p50_ms": 1.23, "latency_p99_ms": 4.5,
                     "share_percent": 100.0, "pushed_back_ms": null},
                    {"id": "2", "address": "http://127.0.0.1:8002", "state": "open",
                     "in_flight": 1, "requests": 7, "failures": 1,
                     "latency_p50_ms": null, "latency_p99_ms": null},
                    {"id": "3", "address": "http://127.0.0.1:8003", "state": "retest",
                     "in_flight": 0, "requests": 0, "failures": 0,
                     "latency_p50_ms": 1024.5, "latency_p99_ms": 1024.5,
                     "share_percent": 0.4, "pushed_back_ms": 1500.0}
                ],
                "ratings": {"live": 17, "cache": 0, "stale": 1, "none": 0}
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn a_sample_report_renders_as_an_aligned_table() {
        let text = render(&sample(), "http://127.0.0.1:5000", false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ratings instances (as the market at http://127.0.0.1:5000 sees them)",
                "ID  ADDRESS                BREAKER              IN FLIGHT  REQUESTS  FAILURES   P50 MS   P99 MS  SHARE %",
                "1   http://127.0.0.1:8001  closed                       0        12         0     1.23     4.50    100.0",
                "2   http://127.0.0.1:8002  open                         1         7         1        —        —    100.0",
                "3   http://127.0.0.1:8003  retest, pushed back          0         0         0  1024.50  1024.50      0.4",
                "ratings shown: 17 live, 0 cache, 1 stale, 0 none",
            ]
        );
        assert!(!text.contains('\x1b'), "no escapes without colour");
    }

    #[test]
    fn colour_marks_states_without_moving_columns() {
        let coloured = render(&sample(), "m", true);
        // The breaker column is as wide as "retest, pushed back".
        for (colour, state) in [
            (GREEN, "closed"),
            (RED, "open"),
            (YELLOW, "retest, pushed back"),
        ] {
            let cell = format!("{colour}{state:<19}{RESET}");
            assert!(coloured.contains(&cell), "{coloured}");
        }
        let stripped = coloured
            .replace(GREEN, "")
            .replace(YELLOW, "")
            .replace(RED, "")
            .replace(RESET, "");
        assert_eq!(stripped, render(&sample(), "m", false));
    }

    #[test]
    fn no_instances_and_unreachable_markets_say_so() {
        let empty = StatusReport {
            service: "ratings".into(),
            instances: Vec::new(),
            ratings: SourceCounts::default(),
        };
        assert!(render(&empty, "m", false).contains("no instances known"));
        assert_eq!(
            render_unreachable("http://127.0.0.1:5000", "connection refused"),
            "cannot get the status from the market at http://127.0.0.1:5000: connection refused\n"
        );
    }
}
