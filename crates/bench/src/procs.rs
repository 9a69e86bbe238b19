//! Child processes the harness starts (ratings instances, the registry, nginx, HAProxy):
//! start, read their output, pause and resume them, measure them, and always stop them.
//!
//! Every child runs in its own process group, so stopping it also stops what it forked
//! (nginx's workers). Live children are also listed in a process-wide table that
//! [`stop_all`] empties: the Ctrl-C handler and the panic hook call it, so no server outlives
//! the harness unless the harness itself is killed with SIGKILL.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Process ids of the children still running (each is also its process group id).
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops every child still running, at once (SIGCONT then SIGKILL to each process group).
/// For the Ctrl-C handler and the panic hook; normal runs stop children one by one on drop.
pub fn stop_all() {
    let pids: Vec<i32> = live().drain(..).collect();
    for pid in pids {
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGCONT);
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// One running child program, its output kept line by line.
pub struct Child {
    /// Short name for messages, such as `ratings-2` or `nginx`.
    pub name: String,
    child: std::process::Child,
    /// Every line it wrote to stdout or stderr so far.
    lines: Arc<Mutex<Vec<String>>>,
    /// Whether it is stopped with SIGSTOP right now (resumed before it is terminated).
    paused: bool,
}

impl Child {
    /// Starts `program` with `args` and `envs` in a new process group.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Child, String> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        live().push(child.id() as i32);
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect(out, Arc::clone(&lines));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Arc::clone(&lines));
        }
        Ok(Child {
            name: name.to_string(),
            child,
            lines,
            paused: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything it printed so far, for error messages.
    pub fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// Waits (at most `limit`) for a line containing `needle` and returns it.
    pub async fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return Ok(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not print {needle:?} within {limit:?}:\n{}",
                    self.name,
                    self.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Ctrl-Z: SIGSTOP. It keeps its sockets (the kernel still accepts connections) but
    /// answers nothing.
    pub fn pause(&mut self) -> Result<(), String> {
        kill(Pid::from_raw(self.pid()), Signal::SIGSTOP)
            .map_err(|e| format!("SIGSTOP {}: {e}", self.name))?;
        self.paused = true;
        Ok(())
    }

    /// `fg`: SIGCONT.
    pub fn resume(&mut self) -> Result<(), String> {
        kill(Pid::from_raw(self.pid()), Signal::SIGCONT)
            .map_err(|e| format!("SIGCONT {}: {e}", self.name))?;
        self.paused = false;
        Ok(())
    }

    /// Resident memory right now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU time used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.pid())
    }

    /// CPU time used so far by it and everything it forked (its process group).
    pub fn group_cpu_time(&self) -> Duration {
        cpu_time_of_group(self.pid())
    }

    /// Stops it: SIGCONT if paused, SIGTERM to its group, up to `grace` for a clean exit,
    /// then SIGKILL.
    fn stop(&mut self, grace: Duration) {
        let group = Pid::from_raw(self.pid());
        if self.paused {
            let _ = killpg(group, Signal::SIGCONT);
            self.paused = false;
        }
        if !self.has_exited() {
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && !self.has_exited() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The group may still hold forked workers even when the leader is gone.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        live().retain(|&pid| pid != self.pid());
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// CPU time (user + system) of a process, from `/proc/PID/stat` (clock ticks of 1/100 s,
/// Linux's fixed `USER_HZ`).
pub fn cpu_time_of(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time (user + system) of every process in process group `pgid` (a child started
/// here and whatever it forked, such as nginx's workers), by scanning `/proc`.
pub fn cpu_time_of_group(pgid: i32) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // After the name: state, ppid, pgrp, ...
        let group = stat[close + 2..]
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<i32>().ok());
        if group == Some(pgid) {
            total += cpu_time_of(pid).unwrap_or_default();
        }
    }
    total
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded: a chatty child cannot grow the harness without limit. Past the first
            // 10,000 lines only warnings and errors are kept (a breaker opening among them),
            // so a count of them is not cut short by a flood of info lines.
            let important = line.contains(" WARN ") || line.contains(" ERROR ");
            if lines.len() < 10_000 || (important && lines.len() < 20_000) {
                lines.push(line);
            }
        }
    });
}
