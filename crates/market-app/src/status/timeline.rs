//! The history as a breaker timeline in text, for `watch --timeline`: one line per instance,
//! one character per second, newest on the right.
//!
//! ```text
//! ratings breakers, last 60 s (as the market at http://127.0.0.1:5000 sees them)
//! 1  ────────────────────────██████████████████████████████▒──────  closed
//! 2  ─────────────────────────────────────────────────────────────  closed
//!    -60s                                                      now
//! ─ closed  █ open  ▒ retest
//! last events:
//!   11:30:12  opened    instance 1  http://127.0.0.1:8001
//!   11:30:42  retest    instance 1  http://127.0.0.1:8001
//! ```
//!
//! A second with no sample (before the market knew the instance, or after it left) is a
//! blank. With `colour`, open is red, retest yellow and closed green.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::history::{HistoryReport, InstanceHistory};

/// Events listed under the timeline.
const SHOWN_EVENTS: usize = 8;

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// The character for a breaker state.
fn mark(state: &str) -> char {
    match state {
        "closed" => '─',
        "open" => '█',
        "retest" => '▒',
        _ => '?',
    }
}

/// Renders the last `seconds` of `report` (fetched from the market at `market`).
pub fn render(report: &HistoryReport, market: &str, seconds: usize, colour: bool) -> String {
    let seconds = seconds.max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} breakers, last {seconds} s (as the market at {market} sees them)",
        report.service
    );
    let every = report.sample_every_ms.max(1);
    let now = (report.now_ms + every / 2) / every;
    let width = report
        .instances
        .iter()
        .map(|i| i.id.chars().count())
        .max()
        .unwrap_or(1);
    if report.instances.is_empty() {
        let _ = writeln!(
            out,
            "(no instances known: is any ratings instance running?)"
        );
    }
    for instance in &report.instances {
        let line = row(instance, now, every, seconds, colour);
        let state = instance.samples.back().map_or("", |s| s.state.as_str());
        let _ = writeln!(out, "{:<width$}  {line}  {state}", instance.id);
    }
    let axis = format!("-{seconds}s");
    let _ = writeln!(
        out,
        "{:<width$}  {axis}{:>pad$}",
        "",
        "now",
        pad = seconds.saturating_sub(axis.chars().count()).max(4)
    );
    let _ = writeln!(out, "─ closed  █ open  ▒ retest");
    if !report.events.is_empty() {
        let _ = writeln!(out, "last events:");
        let skip = report.events.len().saturating_sub(SHOWN_EVENTS);
        for event in report.events.iter().skip(skip) {
            let instance = event
                .instance
                .as_ref()
                .map_or_else(String::new, |id| format!("instance {id}"));
            let line = format!(
                "  {}  {:<9} {:<11} {}",
                clock(report.started_at_ms + event.t_ms),
                event.kind,
                instance,
                event.detail
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

/// The last `seconds` of one instance: a character per second up to `now` (in units of
/// `every` ms).
fn row(instance: &InstanceHistory, now: u64, every: u64, seconds: usize, colour: bool) -> String {
    // The slot of the leftmost cell; negative while the history is younger than the line.
    let first = i128::from(now) - seconds as i128 + 1;
    let mut cells = vec![' '; seconds];
    for sample in &instance.samples {
        // Round to the nearest slot: ticks drift by a few milliseconds.
        let slot = i128::from((sample.t_ms + every / 2) / every);
        let cell = usize::try_from(slot - first)
            .ok()
            .and_then(|at| cells.get_mut(at));
        if let Some(cell) = cell {
            *cell = mark(&sample.state);
        }
    }
    if !colour {
        return cells.into_iter().collect();
    }
    let mut out = String::new();
    for cell in cells {
        let code = match cell {
            '─' => GREEN,
            '█' => RED,
            '▒' => YELLOW,
            _ => "",
        };
        if code.is_empty() {
            out.push(cell);
        } else {
            let _ = write!(out, "{code}{cell}{RESET}");
        }
    }
    out
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
fn clock(unix_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_ms);
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    // 2026-12-06T11:30:12Z
    stamp
        .get(11..19)
        .map_or_else(|| stamp.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::ratings::SourceCounts;
    use crate::status::history::{EventRecord, Sample};

    fn sample(t_ms: u64, state: &str) -> Sample {
        Sample {
            t_ms,
            state: state.into(),
            requests_per_s: 0.0,
            error_ratio: None,
            p50_ms: None,
            p99_ms: None,
        }
    }

    fn report() -> HistoryReport {
        let one: VecDeque<Sample> = (0..10)
            .map(|s| {
                let state = match s {
                    0..=3 => "closed",
                    4..=6 => "open",
                    7 => "retest",
                    _ => "closed",
                };
                // A few milliseconds of drift, as a real interval has.
                sample(s * 1000 + 3, state)
            })
            .collect();
        let two: VecDeque<Sample> = (6..10).map(|s| sample(s * 1000, "closed")).collect();
        HistoryReport {
            service: "ratings".into(),
            started_at_ms: 1_700_000_000_000,
            now_ms: 9_010,
            sample_every_ms: 1000,
            instances: vec![
                InstanceHistory {
                    id: "1".into(),
                    address: "http://127.0.0.1:8001".into(),
                    samples: one,
                },
                InstanceHistory {
                    id: "2".into(),
                    address: "http://127.0.0.1:8002".into(),
                    samples: two,
                },
            ],
            events: vec![EventRecord {
                t_ms: 4_000,
                kind: "opened".into(),
                instance: Some("1".into()),
                detail: "http://127.0.0.1:8001".into(),
            }],
            ratings: SourceCounts {
                live: 5,
                cache: 1,
                stale: 2,
                none: 0,
            },
        }
    }

    #[test]
    fn each_instance_is_a_line_of_states_per_second() {
        let text = render(&report(), "http://m", 12, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ratings breakers, last 12 s (as the market at http://m sees them)",
                "1    ────███▒──  closed",
                "2          ────  closed",
                "   -12s     now",
                "─ closed  █ open  ▒ retest",
                "last events:",
                "  22:13:24  opened    instance 1  http://127.0.0.1:8001",
            ]
        );
    }

    #[test]
    fn colour_marks_open_red_without_changing_the_text() {
        let coloured = render(&report(), "m", 12, true);
        assert!(coloured.contains(&format!("{RED}█{RESET}")));
        assert!(coloured.contains(&format!("{YELLOW}▒{RESET}")));
        let stripped = coloured
            .replace(GREEN, "")
            .replace(YELLOW, "")
            .replace(RED, "")
            .replace(RESET, "");
        assert_eq!(stripped, render(&report(), "m", 12, false));
    }

    #[test]
    fn only_the_last_seconds_are_drawn() {
        let text = render(&report(), "m", 3, false);
        assert!(text.contains("\n1  ▒──  closed\n"), "{text}");
        assert!(text.contains("\n2  ───  closed\n"), "{text}");
    }
}
