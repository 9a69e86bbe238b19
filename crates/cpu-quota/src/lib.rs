//! A CPU quota on a child process, set the way container limits set it: a cgroup that may
//! run QUOTA µs of CPU per PERIOD µs, `cpu.max` under cgroup v2, `cpu.cfs_quota_us` and
//! `cpu.cfs_period_us` under cgroup v1. A process over its quota is not scheduled again
//! until the next period starts, however idle the machine is: its timers fire late, which
//! plain CPU load (the fair scheduler keeps delays short) does not cause.
//!
//! The group is removed when the [`CpuQuota`] is dropped, also on an error: its processes
//! are moved back to the parent group first.
//!
//! Used by the bench's starved-client scenario and by chaos's `throttled` fault. Creating a
//! group needs root (or a delegated cgroup); [`controller`] and [`CpuQuota::create`] say
//! why not otherwise, so callers can skip with a message.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where cgroup v2 keeps its root, with `cgroup.controllers` listing `cpu`.
const V2_ROOT: &str = "/sys/fs/cgroup";
/// Where cgroup v1 mounts the `cpu` controller.
const V1_CPU_ROOT: &str = "/sys/fs/cgroup/cpu";

/// Which cgroup interface the quota uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `cpu.max`.
    V2,
    /// `cpu.cfs_quota_us` and `cpu.cfs_period_us`.
    V1,
}

/// A quota as `cpu.max` writes it: `40000 1000000` is 40 ms of CPU per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// CPU time allowed per period, in µs.
    pub quota_us: u64,
    /// The period, in µs.
    pub period_us: u64,
}

impl Quota {
    /// Parses `QUOTA PERIOD` (µs each; the period 1 ms..=1 s, the quota at least 1 ms, as
    /// the kernel accepts them).
    pub fn parse(text: &str) -> Result<Quota, String> {
        let mut parts = text.split_whitespace();
        let (Some(quota), Some(period), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("CPU quota {text:?}: expected `QUOTA PERIOD` in µs"));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("CPU quota {text:?}: {s:?} is not a number of µs"))
        };
        let quota = Quota {
            quota_us: number(quota)?,
            period_us: number(period)?,
        };
        if !(1_000..=1_000_000).contains(&quota.period_us) || quota.quota_us < 1_000 {
            return Err(format!(
                "CPU quota {text:?}: the period must be 1000..=1000000 µs and the quota at least 1000 µs"
            ));
        }
        Ok(quota)
    }

    /// The share of one core it allows.
    pub fn cores(&self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }
}

/// A cgroup with a CPU quota, removed on drop.
#[derive(Debug)]
pub struct CpuQuota {
    /// The group's directory.
    dir: PathBuf,
    /// The parent's `cgroup.procs`, where processes go back before the group is removed.
    parent_procs: PathBuf,
    /// Which interface it was made with.
    pub version: Version,
}

/// The writable cgroup `cpu` controller on this machine, or why there is none.
pub fn controller() -> Result<(Version, PathBuf), String> {
    let v2 = Path::new(V2_ROOT);
    if let Ok(controllers) = std::fs::read_to_string(v2.join("cgroup.controllers")) {
        if controllers.split_whitespace().any(|c| c == "cpu") {
            return Ok((Version::V2, v2.to_path_buf()));
        }
    }
    let v1 = Path::new(V1_CPU_ROOT);
    if v1.join("cpu.cfs_quota_us").is_file() {
        return Ok((Version::V1, v1.to_path_buf()));
    }
    Err(format!(
        "no cgroup cpu controller: neither {V2_ROOT}/cgroup.controllers listing `cpu` (v2) nor \
         {V1_CPU_ROOT}/cpu.cfs_quota_us (v1)"
    ))
}

/// Whether a group with a quota can be made here: creates one and removes it at once.
pub fn probe() -> Result<(), String> {
    let name = format!("cpu-quota-probe-{}", std::process::id());
    CpuQuota::create(
        &name,
        Quota {
            quota_us: 1_000_000,
            period_us: 1_000_000,
        },
    )
    .map(drop)
}

impl CpuQuota {
    /// Creates the group `name` with `quota` (fails, changing nothing, if the controller is
    /// missing or not writable, e.g. without root).
    pub fn create(name: &str, quota: Quota) -> Result<CpuQuota, String> {
        let (version, root) = controller()?;
        if version == Version::V2 {
            // Lets the root's children use the cpu controller; already on is fine.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
        }
        let dir = root.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        let group = CpuQuota {
            dir,
            parent_procs: root.join("cgroup.procs"),
            version,
        };
        match version {
            Version::V2 => group.write(
                "cpu.max",
                &format!("{} {}", quota.quota_us, quota.period_us),
            )?,
            Version::V1 => {
                group.write("cpu.cfs_period_us", &quota.period_us.to_string())?;
                group.write("cpu.cfs_quota_us", &quota.quota_us.to_string())?;
            }
        }
        Ok(group)
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: i32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The group's `cgroup.procs` file: a process that writes its pid there joins the group.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // A few tries: a process that is exiting may still be listed for a moment.
        for _ in 0..50 {
            if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = std::fs::write(&self.parent_procs, pid);
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: could not remove the cgroup {}; remove it with rmdir",
            self.dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_as_cpu_max_writes_them() {
        let q = Quota::parse("40000 1000000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((q.quota_us, q.period_us), (40_000, 1_000_000));
        assert!((q.cores() - 0.04).abs() < 1e-9);
        for bad in [
            "",
            "40000",
            "max 100000",
            "40000 2000000",
            "10 1000000",
            "1 2 3",
        ] {
            assert!(Quota::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
