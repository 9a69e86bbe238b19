//! What machine the numbers came from: cores, CPU model, memory, kernel, compiler, and the
//! versions of the peers.

use std::process::Command;

use crate::peers::PeerKind;
use crate::report::Table;

/// The machine description as a Markdown table.
pub fn describe() -> Table {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_string(), |k| k.trim().to_string());
    let load = std::fs::read_to_string("/proc/loadavg").map_or("unknown".to_string(), |l| {
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    });
    let mut table = Table::new(["what", "value"]);
    table.row(["cores (nproc)".to_string(), cores.to_string()]);
    table.row(["CPU".to_string(), model]);
    table.row([
        "memory".to_string(),
        format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
    ]);
    table.row(["kernel".to_string(), kernel]);
    table.row(["rustc".to_string(), version_of("rustc", &["--version"])]);
    table.row(["load average at start (1/5/15 min)".to_string(), load]);
    for kind in [PeerKind::Nginx, PeerKind::Haproxy] {
        let version = match kind.find() {
            Some(path) => {
                let text = version_of(&path.display().to_string(), &["-v"]);
                format!("{} ({})", text.lines().next().unwrap_or(""), path.display())
            }
            None => "not installed (skipped)".to_string(),
        };
        table.row([kind.name().to_string(), version]);
    }
    table
}

/// The first line a program prints for `args` (stdout or stderr; nginx uses stderr).
fn version_of(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(_) => "unknown".to_string(),
    }
}
