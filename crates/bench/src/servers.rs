//! Our own programs as real processes: ratings instances (real processes, so SIGSTOP works),
//! over HTTP or HTTPS, and the registry, each on a free loopback port, found through its
//! `listening on` line.
//!
//! The harness builds nothing: it runs the release binaries next to its own executable
//! (`make bench` builds them first), or those in `--bin-dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::procs::Child;

/// Per-request logs of the services are turned off (they would measure the terminal, not
/// the code); the `listening on` line and warnings stay.
const RATINGS_LOG: &str = "info,ratings_service::routes=warn";
const REGISTRY_LOG: &str = "warn,registry=info,registry::store=warn,registry::http=warn";

/// Where the service binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, or next to this executable; checks that both exist.
    pub fn locate(dir: Option<&Path>) -> Result<Binaries, String> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}"))?
                .parent()
                .map(Path::to_path_buf)
                .ok_or("this executable has no directory")?,
        };
        for name in ["ratings-service", "registry"] {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "{} not found; build it first: cargo build --release -p ratings-service -p registry",
                    dir.join(name).display()
                ));
            }
        }
        Ok(Binaries { dir })
    }

    /// Starts ratings instance `n` on a free loopback port. With `registry`, it registers
    /// there; without, it only serves.
    pub async fn ratings(&self, n: u16, registry: Option<&str>) -> Result<Server, String> {
        self.ratings_with(n, registry, &[]).await
    }

    /// [`ratings`](Self::ratings) with `extra` flags, such as `--admin` (the admin endpoint,
    /// to change the instance's faults while it runs: loopback only, no token).
    pub async fn ratings_with(
        &self,
        n: u16,
        registry: Option<&str>,
        extra: &[&str],
    ) -> Result<Server, String> {
        let mut args = vec![
            "--instance".to_string(),
            n.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        match registry {
            Some(url) => args.extend(["--registry".into(), url.to_string()]),
            None => args.push("--no-register".into()),
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::start(
            &format!("ratings-{n}"),
            &self.dir.join("ratings-service"),
            &args,
            RATINGS_LOG,
        )
        .await
    }

    /// Starts ratings instance `n` serving HTTPS (h2 and http/1.1 by ALPN) with this
    /// certificate and key (PEM files) on a free loopback port, registered nowhere.
    pub async fn ratings_tls(&self, n: u16, cert: &Path, key: &Path) -> Result<Server, String> {
        let args = vec![
            "--instance".to_string(),
            n.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-register".into(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ];
        Server::start(
            &format!("ratings-{n}-tls"),
            &self.dir.join("ratings-service"),
            &args,
            RATINGS_LOG,
        )
        .await
    }

    /// Starts the market (`market`, built with `cargo build --release -p market-app`) on a
    /// free loopback port, calling the ratings instances at `ratings` (no registry), with
    /// these extra flags and `RUST_LOG=log`.
    pub async fn market(
        &self,
        ratings: &[String],
        extra: &[&str],
        log: &str,
    ) -> Result<Server, String> {
        let program = self.dir.join("market");
        if !program.is_file() {
            return Err(format!(
                "{} not found; build it first: cargo build --release -p market-app",
                program.display()
            ));
        }
        let args = market_args(ratings, extra);
        Server::start("market", &program, &args, log).await
    }

    /// Starts the market as [`market`](Self::market) does, but inside the cgroup whose
    /// `cgroup.procs` file is `procs` from its first instruction (a shell puts itself there,
    /// then becomes the market), as a container's limits apply from the start: the market's
    /// runtime then sizes itself to the group's CPU quota.
    pub async fn market_in_cgroup(
        &self,
        procs: &Path,
        ratings: &[String],
        extra: &[&str],
        log: &str,
    ) -> Result<Server, String> {
        let program = self.dir.join("market");
        if !program.is_file() {
            return Err(format!("{} not found", program.display()));
        }
        let mut args = vec![
            "-c".to_string(),
            r#"echo $$ > "$0" && exec "$@""#.into(),
            procs.display().to_string(),
            program.display().to_string(),
        ];
        args.extend(market_args(ratings, extra));
        Server::start("market", Path::new("/bin/sh"), &args, log).await
    }

    /// Starts the registry on a free loopback port with these extra flags.
    pub async fn registry(&self, extra: &[&str]) -> Result<Server, String> {
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::start("registry", &self.dir.join("registry"), &args, REGISTRY_LOG).await
    }
}

/// One of our servers, running, with the URL it listens on.
pub struct Server {
    /// The process.
    pub process: Child,
    /// Its base URL, such as `http://127.0.0.1:41234` (`https://` over TLS).
    pub url: String,
}

impl Server {
    async fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: &str,
    ) -> Result<Server, String> {
        let mut process =
            Child::spawn(name, program, args, &[("RUST_LOG", log), ("NO_COLOR", "1")])?;
        let line = process
            .wait_for_line("listening on http", Duration::from_secs(20))
            .await?;
        let url = parse_listening(&line)
            .ok_or_else(|| format!("{name}: cannot read the address in {line:?}"))?;
        Ok(Server { process, url })
    }
}

/// The market's arguments: a free loopback port, the `ratings` instances as a static list,
/// then `extra`.
fn market_args(ratings: &[String], extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--static-ratings".into(),
        ratings.join(","),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The URL in a `... listening on http://127.0.0.1:PORT ...` line (or `https://`).
fn parse_listening(line: &str) -> Option<String> {
    let at = line.find("listening on http")? + "listening on ".len();
    let url = line[at..]
        .split_whitespace()
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn reads_the_url_from_a_log_line() {
        let line =
            "2026-01-01T00:00:00Z  INFO ratings_service: listening on http://127.0.0.1:40123";
        assert_eq!(
            parse_listening(line).as_deref(),
            Some("http://127.0.0.1:40123")
        );
        let tls =
            "2026-01-01T00:00:00Z  INFO ratings_service: listening on https://127.0.0.1:40124";
        assert_eq!(
            parse_listening(tls).as_deref(),
            Some("https://127.0.0.1:40124")
        );
        assert_eq!(parse_listening("nothing here"), None);
    }
}
