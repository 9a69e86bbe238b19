//! A network namespace joined to the root namespace by one veth pair, for an instance that
//! is reached over a network that can lose packets or be cut, rather than over loopback.
//!
//! [`NetNs::create`] makes the namespace `chaos-PID-K` and a veth pair: `cxPID-K` in the
//! root namespace with `10.200.A.B+1/30`, `veth0` inside with `.B+2/30` (a /30 no address
//! on this machine is in yet), both up, and the namespace's loopback up. Programs are
//! started inside with `ip netns exec` ([`NetNs::name`]); they reach the root namespace's
//! programs at [`NetNs::root_ip`] and are reached at [`NetNs::inner_ip`], across the veth.
//!
//! Packet faults are iptables rules in the namespace's own tables: a chain `CHAOS` that
//! `INPUT` (packets arriving from the veth) and `OUTPUT` (packets leaving by it) jump to.
//! [`NetNs::drop_packets`] drops a random share of the packets each way (`-m statistic
//! --mode random`), or all of them (a partition); a share of 0 heals. The rules live and
//! die with the namespace, so the root namespace's tables are never touched.
//!
//! Dropping a [`NetNs`] kills whatever still runs inside and deletes the namespace, which
//! deletes both ends of the veth. [`NetNs::create`] first removes what a run that was killed
//! left behind: namespaces and veths whose name carries a pid no longer running.
//!
//! Needs `ip` (iproute2), the right to create namespaces (root), and for packet faults
//! `iptables`: [`unavailable`] says which is missing.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The prefix of every namespace this module makes: `chaos-PID-K`.
const NS_PREFIX: &str = "chaos-";
/// The prefix of every root-side veth this module makes: `cxPID-K` (at most 15 bytes).
const VETH_PREFIX: &str = "cx";
/// The veth's end inside the namespace.
const INNER_VETH: &str = "veth0";
/// The iptables chain, in the namespace, that the packet faults are put in.
const CHAIN: &str = "CHAOS";
/// How many /30 subnets `10.200.0.0/16` holds.
const SUBNETS: u32 = 1 << 14;

/// Namespaces made by this process so far, so each gets its own name.
static MADE: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth pair to the root namespace; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    /// `chaos-PID-K`, for `ip netns exec`.
    name: String,
    /// The veth's end in the root namespace, `cxPID-K`.
    root_veth: String,
    /// The root end's address.
    root_ip: Ipv4Addr,
    /// The inner end's address.
    inner_ip: Ipv4Addr,
    /// Whether the `CHAOS` chain exists yet (made by the first packet fault).
    chain: bool,
}

impl NetNs {
    /// Makes a namespace and its veth pair, after removing leftovers of killed runs. On an
    /// error nothing is left behind.
    pub fn create() -> Result<NetNs, String> {
        remove_leftovers();
        let pid = std::process::id();
        let k = MADE.fetch_add(1, Ordering::SeqCst) % 100_000;
        let (root_ip, inner_ip) = free_subnet(pid.wrapping_mul(31).wrapping_add(k))?;
        ip(&["netns", "add", &format!("{NS_PREFIX}{pid}-{k}")])?;
        let netns = NetNs {
            name: format!("{NS_PREFIX}{pid}-{k}"),
            root_veth: format!("{VETH_PREFIX}{pid}-{k}"),
            root_ip,
            inner_ip,
            chain: false,
        };
        // From here on, dropping `netns` on an error removes what was made.
        let (name, veth) = (netns.name.as_str(), netns.root_veth.as_str());
        ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", INNER_VETH, "netns", name,
        ])?;
        ip(&["addr", "add", &format!("{root_ip}/30"), "dev", veth])?;
        ip(&["link", "set", veth, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{inner_ip}/30"), "dev", INNER_VETH])?;
        inside(&["link", "set", INNER_VETH, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Its name, for `ip netns exec NAME program ..`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root namespace's address on the veth: how programs inside reach those outside.
    pub fn root_ip(&self) -> Ipv4Addr {
        self.root_ip
    }

    /// The namespace's address on the veth: how programs outside reach those inside.
    pub fn inner_ip(&self) -> Ipv4Addr {
        self.inner_ip
    }

    /// Drops this share of the packets crossing the veth, each way, independently at
    /// random: 0 heals, 1 or more cuts the namespace off (a partition).
    pub fn drop_packets(&mut self, share: f64) -> Result<(), String> {
        if !self.chain {
            self.iptables(&["-N", CHAIN])?;
            self.iptables(&["-A", "INPUT", "-i", INNER_VETH, "-j", CHAIN])?;
            self.iptables(&["-A", "OUTPUT", "-o", INNER_VETH, "-j", CHAIN])?;
            self.chain = true;
        }
        self.iptables(&["-F", CHAIN])?;
        if share >= 1.0 {
            self.iptables(&["-A", CHAIN, "-j", "DROP"])?;
        } else if share > 0.0 {
            let probability = share.to_string();
            self.iptables(&[
                "-A",
                CHAIN,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    /// Runs `iptables -w ARGS` in the namespace.
    fn iptables(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.name, "iptables", "-w"];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        remove(&self.name, Some(&self.root_veth));
    }
}

/// Why a namespace cannot be made here, if it cannot; with `iptables` also whether packet
/// faults cannot be set. `None` means the scenario can run.
///
/// Where namespaces cannot be made (no root, or a container without the right), this says
/// so even when `CI` is set: the machine does not allow the fault. Where they can, a
/// missing `iptables` (or `ip`) is a reason to skip only outside CI: with `CI` set the
/// scenario runs, and fails saying what is missing.
pub fn unavailable(iptables: bool) -> Option<String> {
    let ci = system_tests::in_ci();
    if system_tests::on_path(&["ip"]).is_none() {
        return (!ci).then(|| "needs ip (apt-get install -y iproute2)".to_owned());
    }
    if let Err(why) = probe() {
        return Some(format!(
            "cannot make a network namespace here (needs root): {why}"
        ));
    }
    if iptables && system_tests::on_path(&["iptables"]).is_none() {
        return (!ci).then(|| "needs iptables (apt-get install -y iptables)".to_owned());
    }
    None
}

/// Whether a namespace with a veth pair can be made: makes one and deletes it, once per
/// process.
fn probe() -> Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(|| NetNs::create().map(drop)).clone()
}

/// Runs `ip ARGS`: its standard output, or what went wrong.
fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Kills what runs in namespace `name`, deletes it (and so the veth in it), and deletes
/// `root_veth` if it is still there (when something inside could not be killed).
fn remove(name: &str, root_veth: Option<&str>) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = ip(&["netns", "delete", name]);
    if let Some(veth) = root_veth {
        let _ = ip(&["link", "delete", veth]);
    }
}

/// Removes the namespaces and root-side veths of runs whose process is gone.
fn remove_leftovers() {
    let dead = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if dead(name, NS_PREFIX) {
                remove(name, None);
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        // `12: cx123-0@if11: <BROADCAST,...` → `cx123-0`.
        for link in links.lines().filter_map(|l| l.split(": ").nth(1)) {
            let veth = link.split('@').next().unwrap_or(link);
            if dead(veth, VETH_PREFIX) {
                let _ = ip(&["link", "delete", veth]);
            }
        }
    }
}

/// The root and inner addresses of a /30 in `10.200.0.0/16` that no address on this
/// machine is in, trying from the `start`-th one on.
fn free_subnet(start: u32) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let taken = ip(&["-o", "-4", "addr", "show"])?;
    let taken: Vec<Ipv4Addr> = taken
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse().ok())
        .collect();
    (0..SUBNETS)
        .map(|i| subnet((start + i) % SUBNETS))
        .find(|(root, _)| {
            let base = u32::from(*root) & !3;
            !taken.iter().any(|t| u32::from(*t) & !3 == base)
        })
        .ok_or_else(|| "no free /30 left in 10.200.0.0/16".to_owned())
}

/// The `i`-th /30 of `10.200.0.0/16`: its first and second host addresses.
fn subnet(i: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + (i % SUBNETS) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_disjoint_30s_in_10_200() {
        assert_eq!(
            subnet(0),
            (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2))
        );
        assert_eq!(
            subnet(65),
            (Ipv4Addr::new(10, 200, 1, 5), Ipv4Addr::new(10, 200, 1, 6))
        );
        assert_eq!(subnet(SUBNETS), subnet(0));
        assert_eq!(subnet(SUBNETS - 1).1, Ipv4Addr::new(10, 200, 255, 254));
    }
}
