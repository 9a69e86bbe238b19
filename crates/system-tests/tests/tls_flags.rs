//! The TLS flags of the real programs: each serves HTTPS with `--tls-cert`/`--tls-key`, and
//! refuses flags that cannot work with a message naming the flag or the file, and a
//! non-zero exit, before binding anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::process::Stdio;
use std::time::Duration;

use system_tests::*;
use tokio::process::Command;

const PROGRAMS: [&str; 3] = ["registry", "ratings-service", "market"];

/// Runs `name` with `args` (and `env`) to its exit; returns its exit code and stderr.
async fn run_to_exit(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(program(name));
    // The ratings instances must not need a registry to get as far as the TLS flags.
    if name == "ratings-service" {
        command.arg("--no-register");
    }
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("REGISTRY_URL")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} {args:?} is still running after 20 s"))
    .expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_program_serves_https_with_the_tls_flags() {
    let tls = TlsFiles::write();
    let registry = registry(&tls.serve_args()).await;
    assert!(
        registry.url.starts_with("https://127.0.0.1:"),
        "{}",
        registry.url
    );
    assert_eq!(
        get_json(&format!("{}/health", registry.url)).await["status"],
        "ok"
    );
    let serve_and_trust = [&tls.serve_args()[..], &tls.trust_args()].concat();
    let instance = ratings(1, &registry, &serve_and_trust).await;
    assert!(
        instance.url.starts_with("https://127.0.0.1:"),
        "{}",
        instance.url
    );
    let rating = get_json(&format!("{}/ratings/widget", instance.url)).await;
    assert_eq!(rating["instance"], 1, "{rating}");
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let market = market(&registry, &serve_and_trust).await;
    assert!(
        market.url.starts_with("https://127.0.0.1:"),
        "{}",
        market.url
    );
    let (status, html) = get(&market.url).await;
    assert_eq!(status, 200, "{html}");
}

#[tokio::test]
async fn tls_flags_that_cannot_work_are_refused_naming_the_flag_or_the_file() {
    let tls = TlsFiles::write();
    let [_, cert, _, key] = tls.serve_args();
    let write = |name: &str, contents: &str| {
        let path = tls.dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let other_key = write("other.key", &test_ca().server(&["127.0.0.1"]).key_pem);
    let empty = write("empty.pem", "");
    let missing = tls.dir().join("missing.pem").to_str().unwrap().to_owned();

    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--tls-cert", cert], "--tls-key".into()),
        (vec!["--tls-key", key], "--tls-cert".into()),
        (
            vec!["--tls-cert", &missing, "--tls-key", key],
            format!("cannot read {missing}: "),
        ),
        (
            vec!["--tls-cert", key, "--tls-key", key],
            format!("no certificate in {key}"),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", &empty],
            format!("no private key in {empty}"),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", &other_key],
            format!("the private key in {other_key} does not match the certificate in {cert}"),
        ),
    ];
    for name in PROGRAMS {
        for (args, needle) in &cases {
            let (code, stderr) = run_to_exit(name, args, &[]).await;
            assert_eq!(code, Some(2), "{name} {args:?}: {stderr}");
            assert!(
                stderr.contains(needle.as_str()),
                "{name} {args:?}: {stderr}"
            );
        }
    }

    // From the environment too: one of the pair alone is a usage error.
    for (name, variable) in [
        ("registry", "REGISTRY_TLS_CERT"),
        ("ratings-service", "RATINGS_TLS_CERT"),
        ("market", "MARKET_TLS_CERT"),
    ] {
        let (code, stderr) = run_to_exit(name, &[], &[(variable, cert)]).await;
        assert_eq!(code, Some(2), "{name} with {variable}: {stderr}");
        assert!(
            stderr.contains("--tls-key"),
            "{name} with {variable}: {stderr}"
        );
    }

    // The clients' extra root must be a readable file with a certificate in it.
    for name in ["ratings-service", "market"] {
        let (code, stderr) = run_to_exit(name, &["--ca-file", &missing], &[]).await;
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("--ca-file {missing}: cannot read it: ")),
            "{name}: {stderr}"
        );
        let (code, stderr) = run_to_exit(name, &["--ca-file", key], &[]).await;
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("--ca-file {key}: ")) && stderr.contains("CERTIFICATE"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn every_programs_help_lists_the_tls_flags() {
    for name in PROGRAMS {
        let help = std::process::Command::new(program(name))
            .arg("--help")
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in ["--tls-cert <TLS_CERT>", "--tls-key <TLS_KEY>"] {
            assert!(help.contains(flag), "{name} --help: {help}");
        }
        if name != "registry" {
            assert!(
                help.contains("--ca-file <CA_FILE>"),
                "{name} --help: {help}"
            );
        }
    }
}
