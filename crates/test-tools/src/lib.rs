//! What the test harnesses (`etcd-harness`, `dns-harness`) share: finding the real program
//! a test needs, where a missing one skips the test with a message, or fails it when CI
//! requires it; and fresh scratch directories.
//!
//! ```
//! use test_tools::Tool;
//!
//! let sh = Tool {
//!     binary: "sh",
//!     env: "TEST_TOOLS_SH_BIN",
//!     required_env: "TEST_TOOLS_SH_REQUIRED",
//!     also_in: &["/bin"],
//!     install: "it is in every Debian",
//!     needed_for: "a shell",
//! };
//! assert!(sh.find().is_some());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A program a test runs, and what to say when it is missing.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Its file name (`etcd`).
    pub binary: &'static str,
    /// The variable that names the file to use instead of looking (`ETCD_BIN`).
    pub env: &'static str,
    /// The variable that, like `CI`, makes a missing program fail the test
    /// (`ETCD_REQUIRED`).
    pub required_env: &'static str,
    /// Directories looked in after the `PATH` (`/usr/sbin`).
    pub also_in: &'static [&'static str],
    /// How to get it (`install Debian's etcd-server`).
    pub install: &'static str,
    /// What the test needs it as (`a real etcd`).
    pub needed_for: &'static str,
}

impl Tool {
    /// The file named by [`env`](Self::env) (which must exist), else the first
    /// [`binary`](Self::binary) on the `PATH` or in [`also_in`](Self::also_in). With none,
    /// prints why the test is skipped and returns `None`, unless `CI` or
    /// [`required_env`](Self::required_env) is set: then panics.
    pub fn find(&self) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(self.env) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{}={} is not a file",
                self.env,
                path.display()
            );
            return Some(path);
        }
        let paths = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&paths)
            .chain(self.also_in.iter().map(PathBuf::from))
            .map(|dir| dir.join(self.binary))
            .find(|candidate| candidate.is_file());
        if found.is_none() {
            let message = format!(
                "no {} binary ({}, or set {})",
                self.binary, self.install, self.env
            );
            assert!(
                !(set("CI") || set(self.required_env)),
                "{} is required here (CI or {} is set) but there is {message}",
                self.binary,
                self.required_env
            );
            eprintln!(
                "SKIPPED: this test needs {}, and there is {message}",
                self.needed_for
            );
        }
        found
    }
}

/// Whether the variable is set to something other than empty, `0` or `false`.
fn set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// A new, empty directory under the system temp dir, named `<prefix>-<pid>-<n>-<nanos>`.
///
/// # Panics
///
/// If it cannot be made.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create the scratch directory {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_new_and_distinct() {
        let a = scratch_dir("test-tools");
        let b = scratch_dir("test-tools");
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
