//! Scenario 5, hot-path micro-benchmarks: reads what criterion measured
//! (`cargo bench -p bench --bench hot_path`, see `benches/hot_path.rs`) and reports it with
//! 2-thread scaling and the targets.

use std::path::{Path, PathBuf};

use crate::report::{Section, Table};
use crate::scaling::Scaling;

/// Where criterion keeps results: `--criterion-dir`, or `criterion` in the target directory
/// (two levels above this executable: `target/release/bench`).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(dir).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("criterion"))
}

/// Nanoseconds per iteration of `group/function/param`: criterion's slope estimate (time
/// per iteration with set-up cost regressed out), or its mean when there is no slope.
fn estimate(dir: &Path, group: &str, function: &str, param: u32) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(param.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

fn ns(v: Option<f64>) -> String {
    match v {
        Some(ns) if ns >= 1000.0 => format!("{:.2} µs", ns / 1000.0),
        Some(ns) => format!("{ns:.1} ns"),
        None => "—".into(),
    }
}

fn interleaved_table(section: &mut Section, rows: &[Scaling], rounds: usize) {
    if rows.is_empty() {
        return;
    }
    section.note(format!(
        "2-thread scaling measured in the harness with the machine's other load cancelled out: {rounds} \
         alternations of a 50 ms interval on 1 thread and one on 2 threads sharing the structure; \
         scaling = 2-thread ÷ 1-thread throughput, median (min–max). 2.0 is perfect; the control \
         row (nothing shared) shows what this machine allows at the time."
    ));
    let mut table = Table::new(["operation", "1 thread, per op", "2-thread scaling", "range"]);
    for r in rows {
        table.row([
            r.name.to_string(),
            ns(Some(r.one_thread_ns)),
            format!("{:.2}×", r.scaling),
            format!("{:.2}–{:.2}×", r.range.0, r.range.1),
        ]);
    }
    section.table(&table);
}

/// 2-thread scaling: two operations per 2-thread iteration against one per 1-thread one.
fn scaling(one: Option<f64>, two: Option<f64>) -> Option<f64> {
    Some(2.0 * one? / two?)
}

/// Reports the criterion results found in `dir` and the interleaved scaling measurements.
pub fn report(dir: &Path, interleaved: &[Scaling], rounds: usize) -> Section {
    let mut section =
        Section::new("5. Hot-path micro-benchmarks (criterion, and 2-thread scaling interleaved)");
    let rows: [(&str, &str, &str); 10] = [
        (
            "ServiceClient::get_json over an instant transport",
            "client",
            "get_json",
        ),
        (
            "cache hit: get_json_cached (lookup + decode)",
            "cache_hit",
            "ours",
        ),
        ("breaker acquire + record success (ours)", "breaker", "ours"),
        (
            "breaker acquire + record success (failsafe 1.3)",
            "breaker",
            "failsafe",
        ),
        (
            "breaker acquire + record success (recloser 1.4)",
            "breaker",
            "recloser",
        ),
        (
            "retry budget deposit (ours, at the call's start, as the client does)",
            "budget",
            "ours_deposit_at",
        ),
        (
            "retry budget deposit (tower TpsBudget, for comparison)",
            "budget",
            "tower_tps_deposit",
        ),
        (
            "moka get of one hot key (inside a cache hit)",
            "moka_get",
            "same_key",
        ),
        (
            "one tokio Instant::now(), for scale",
            "clock",
            "tokio_instant_now",
        ),
        (
            "control: 2 threads, each its own breaker",
            "breaker_separate",
            "ours",
        ),
    ];
    interleaved_table(&mut section, interleaved, rounds);
    let found = estimate(dir, "breaker", "ours", 1).is_some();
    if !found {
        section.note(format!(
            "No criterion results in {}: run `cargo bench -p bench --bench hot_path` first \
             (`make bench` does).",
            dir.display()
        ));
        return section;
    }
    section.note(
        "Criterion (`benches/hot_path.rs`): time per operation on 1 thread; on 2 threads, time per \
         iteration where each thread does one operation on the same shared structure; scaling = \
         2 × t(1) / t(2) (2.0 is perfect). The 1- and 2-thread variants run minutes apart, so their \
         scaling column is at the mercy of the machine's other load; the interleaved measurement \
         above is the steadier one.",
    );
    let mut table = Table::new(["operation", "1 thread", "2 threads", "2-thread scaling"]);
    let mut figures = std::collections::HashMap::new();
    for (label, group, function) in rows {
        let one = estimate(dir, group, function, 1);
        let two = estimate(dir, group, function, 2);
        let scale = scaling(one, two);
        figures.insert((group, function), (one, two, scale));
        table.row([
            label.to_string(),
            ns(one),
            ns(two),
            scale.map_or("—".into(), |s| format!("{s:.2}×")),
        ]);
    }
    section.table(&table);

    let get = |g: &'static str, f: &'static str| figures.get(&(g, f)).copied().unwrap_or_default();
    let (call1, _, _) = get("client", "get_json");
    if call1.is_some() {
        section.note(format!(
            "The client's own work per call (`get_json` over an instant transport, 1 thread): {}.",
            ns(call1)
        ));
    }
    let (hit1, _, _) = get("cache_hit", "ours");
    if let Some(t) = hit1 {
        section.target(t < 1000.0, format!("cache hit < 1 µs: {}", ns(hit1)));
    }
    section.end_list();
    section.note(
        "2-thread scaling is reported, not judged: the client keeps one round-robin turn, one \
         in-flight count per instance and one request count for the retry budget, shared by all \
         threads, so these rows contend on a 2-core machine; the steady scenario's caller CPU \
         per request is what decides whether that matters (docs/BENCHMARKS.md).",
    );
    let (b1, _, _) = get("breaker", "ours");
    for other in ["failsafe", "recloser"] {
        let (o1, _, _) = get("breaker", other);
        if let (Some(ours), Some(theirs)) = (b1, o1) {
            section.note(format!(
                "Breaker vs {other}, 1 thread: ours {} vs {} ({:.2}× theirs).",
                ns(Some(ours)),
                ns(Some(theirs)),
                ours / theirs
            ));
        }
    }
    section
}
