//! Keeping the lease across restarts: the optional lease file.
//!
//! The registry lets only the holder of an instance's live lease re-register it. A process
//! killed without deregistering (SIGKILL, a crash, a power cut) leaves its lease alive
//! until the TTL runs out, and its successor, not knowing the secret, has to wait for that.
//! With a lease file, the registration writes its lease there after every successful
//! registration and presents it on its first registration after a start, so a restarted
//! instance takes its entry back at once.
//!
//! The file is JSON, `{"service": "...", "instance": "...", "lease": "<secret>"}`, readable
//! by its owner only (mode 0600), and replaced atomically (a temporary file in the same
//! directory, then a rename) so a crash mid-write never leaves half a secret. A file for
//! another service or instance id is ignored. It is removed after a successful
//! deregistration, when the lease it holds is spent. Failures to read or write it are
//! logged and otherwise ignored: the registration works without it, only slower to reclaim.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Labels;
use super::registry_api::Lease;

/// What the file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// The service the lease is for.
    service: String,
    /// The instance id the lease is for.
    instance: String,
    /// The lease secret.
    lease: String,
}

/// Where one registration keeps its lease.
#[derive(Debug, Clone)]
pub(crate) struct LeaseFile {
    /// The file's path, as configured.
    path: PathBuf,
}

impl LeaseFile {
    /// The lease file at `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The lease stored for this service and instance, if there is one.
    pub(crate) async fn load(&self, labels: &Labels) -> Option<Lease> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => {
                labeled_event!(
                    tracing::Level::DEBUG,
                    labels,
                    path = %self.path.display(),
                    "no lease file yet"
                );
                return None;
            }
            Ok(Err(error)) => {
                self.warn(labels, &error.to_string(), "cannot read the lease file");
                return None;
            }
            Err(error) => {
                self.warn(labels, &error.to_string(), "cannot read the lease file");
                return None;
            }
        };
        let stored = match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) => stored,
            Err(error) => {
                self.warn(
                    labels,
                    &error.to_string(),
                    "ignoring an unreadable lease file",
                );
                return None;
            }
        };
        if stored.service != labels.service || stored.instance != labels.instance {
            let held_for = format!("{}/{}", stored.service, stored.instance);
            self.warn(
                labels,
                &format!("it holds the lease of {held_for}"),
                "ignoring a lease file for another instance",
            );
            return None;
        }
        labeled_event!(
            tracing::Level::DEBUG,
            labels,
            path = %self.path.display(),
            "presenting the lease from the lease file"
        );
        Some(Lease::new(stored.lease))
    }

    /// Replaces the file's content with `lease`, atomically, readable by its owner only.
    pub(crate) async fn store(&self, labels: &Labels, lease: &Lease) {
        let stored = Stored {
            service: labels.service.clone(),
            instance: labels.instance.clone(),
            lease: lease.secret().to_owned(),
        };
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &stored)).await;
        let error = match written {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        self.warn(labels, &error, "cannot write the lease file");
    }

    /// Removes the file (its lease was spent by a deregistration).
    pub(crate) async fn remove(&self, labels: &Labels) {
        let path = self.path.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
        let error = match removed {
            Ok(Ok(())) => return,
            Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        self.warn(labels, &error, "cannot remove the lease file");
    }

    fn warn(&self, labels: &Labels, error: &str, what: &str) {
        labeled_event!(
            tracing::Level::WARN,
            labels,
            path = %self.path.display(),
            error,
            "{what}"
        );
    }
}

/// Writes `stored` to a temporary file next to `path` (mode 0600), flushes it to disk and
/// renames it over `path`.
fn write_atomically(path: &Path, stored: &Stored) -> io::Result<()> {
    let json = serde_json::to_vec(stored).map_err(io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "lease file has no name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = owner_only().open(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Options that create (or truncate) a file only its owner can read and write.
fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    fn labels(instance: &str) -> Labels {
        Labels {
            service: "ratings".into(),
            instance: instance.into(),
            address: "http://127.0.0.1:8001".into(),
        }
    }

    #[tokio::test]
    async fn stores_and_loads_the_lease_for_the_same_instance_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = LeaseFile::new(dir.path().join("sub").join("ratings-1.lease"));
        assert_eq!(file.load(&labels("1")).await, None, "no file yet");

        file.store(&labels("1"), &Lease::new("first")).await;
        file.store(&labels("1"), &Lease::new("second")).await;
        assert_eq!(file.load(&labels("1")).await, Some(Lease::new("second")));
        assert_eq!(file.load(&labels("2")).await, None, "another instance's");

        // Only the lease file is left: the temporary file was renamed over it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("read dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["ratings-1.lease"]);

        file.remove(&labels("1")).await;
        assert_eq!(file.load(&labels("1")).await, None);
        // Removing an absent file is not an error.
        file.remove(&labels("1")).await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ratings-1.lease");
        // Even replacing a file that others could read.
        std::fs::write(&path, b"{}").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        LeaseFile::new(path.clone())
            .store(&labels("1"), &Lease::new("s3cret"))
            .await;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[tokio::test]
    async fn a_corrupt_or_unreadable_file_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ratings-1.lease");
        std::fs::write(&path, b"not json").expect("write");
        assert_eq!(LeaseFile::new(path).load(&labels("1")).await, None);
        // A directory where the file should be: cannot read, cannot write; no panic.
        let file = LeaseFile::new(dir.path().to_path_buf());
        assert_eq!(file.load(&labels("1")).await, None);
        file.store(&labels("1"), &Lease::new("x")).await;
    }
}
