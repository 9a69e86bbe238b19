//! The status as a fixed-width text table, for the `watch` terminal program.
//!
//! ```text
//! ratings instances (as the market at http://127.0.0.1:5000 sees them)
//! ID  ADDRESS                BREAKER  REQUESTS  ERRORS  P50 MS  MEAN MS
//! 1   http://127.0.0.1:8001  closed         12       0     1.2      1.4
//! 2   http://127.0.0.1:8002  open            7       1     0.9      1.1
//! ratings shown: 17 live, 0 cache, 1 stale, 0 none
//! ```
//!
//! With `colour`, breaker states are green (closed), yellow (retest) or red (open); the
//! columns are padded before colouring, so they line up either way.

use std::fmt::Write as _;

use super::report::{InstanceReport, StatusReport};

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Renders `report`, fetched from the market at `market`, as lines of text.
pub fn render(report: &StatusReport, market: &str, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} instances (as the market at {market} sees them)",
        report.service
    );
    let id_width = column_width("ID", report.instances.iter().map(|i| i.id.len()));
    let address_width = column_width("ADDRESS", report.instances.iter().map(|i| i.address.len()));
    let _ = writeln!(
        out,
        "{:<id_width$}  {:<address_width$}  {:<7}  {:>8}  {:>6}  {:>6}  {:>7}",
        "ID", "ADDRESS", "BREAKER", "REQUESTS", "ERRORS", "P50 MS", "MEAN MS"
    );
    if report.instances.is_empty() {
        let _ = writeln!(
            out,
            "(no instances known: is any ratings instance running?)"
        );
    }
    for instance in &report.instances {
        let state = format!("{:<7}", instance.state);
        let state = if colour {
            format!("{}{state}{RESET}", state_colour(instance))
        } else {
            state
        };
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<address_width$}  {state}  {:>8}  {:>6}  {:>6}  {:>7}",
            instance.id,
            instance.address,
            instance.requests,
            instance.errors,
            figure(instance.latency_p50_ms),
            figure(instance.latency_mean_ms),
        );
    }
    let totals = report.ratings;
    let _ = writeln!(
        out,
        "ratings shown: {} live, {} cache, {} stale, {} none",
        totals.live, totals.cache, totals.stale, totals.none
    );
    out
}

/// What to show when the market could not be asked.
pub fn render_unreachable(market: &str, error: &str) -> String {
    format!("cannot get the status from the market at {market}: {error}\n")
}

fn column_width(title: &str, values: impl Iterator<Item = usize>) -> usize {
    values.fold(title.len(), usize::max)
}

fn state_colour(instance: &InstanceReport) -> &'static str {
    match instance.state.as_str() {
        "closed" => GREEN,
        "retest" => YELLOW,
        _ => RED,
    }
}

/// A latency in milliseconds to one decimal, or `-` when there is none yet.
fn figure(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::report::SourceTotals;

    fn sample() -> StatusReport {
        serde_json::from_str(
            r#"{
                "service": "ratings",
                "instances": [
                    {"id": "1", "address": "http://127.0.0.1:8001", "state": "closed",
                     "requests": 12, "errors": 0, "latency_p50_ms": 1.23,
                     "latency_mean_ms": 1.4, "latency_samples": 12},
                    {"id": "2", "address": "http://127.0.0.1:8002", "state": "open",
                     "requests": 7, "errors": 1, "latency_p50_ms": null,
                     "latency_mean_ms": null, "latency_samples": 0}
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
                "ID  ADDRESS                BREAKER  REQUESTS  ERRORS  P50 MS  MEAN MS",
                "1   http://127.0.0.1:8001  closed         12       0     1.2      1.4",
                "2   http://127.0.0.1:8002  open            7       1       -        -",
                "ratings shown: 17 live, 0 cache, 1 stale, 0 none",
            ]
        );
        assert!(!text.contains('\x1b'), "no escapes without colour");
    }

    #[test]
    fn colour_marks_states_without_moving_columns() {
        let coloured = render(&sample(), "m", true);
        assert!(coloured.contains("\x1b[32mclosed \x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[31mopen   \x1b[0m"), "{coloured}");
        let stripped = coloured
            .replace(GREEN, "")
            .replace(RED, "")
            .replace(RESET, "");
        assert_eq!(stripped, render(&sample(), "m", false));
    }

    #[test]
    fn no_instances_and_unreachable_markets_say_so() {
        let empty = StatusReport {
            service: "ratings".into(),
            instances: Vec::new(),
            ratings: SourceTotals::default(),
        };
        assert!(render(&empty, "m", false).contains("no instances known"));
        assert_eq!(
            render_unreachable("http://127.0.0.1:5000", "connection refused"),
            "cannot get the status from the market at http://127.0.0.1:5000: connection refused\n"
        );
    }
}
