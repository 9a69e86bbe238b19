//! Security and bad input, against the real programs: bearer tokens on the registry and on
//! the ratings admin endpoint, lease secrets, loopback-only binding, and limits that answer
//! a clear 4xx instead of growing without bound.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failure is a test failure

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::*;

const TOKEN: &str = "t0ken-for-tests";

/// What the registry answered: status and JSON body (`Null` if none or not JSON).
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let www = response.headers().get("www-authenticate").cloned();
    let body = response.json().await.unwrap_or(Value::Null);
    if status == 401 {
        assert_eq!(
            www.as_ref().map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{body}"
        );
    }
    (status, body)
}

fn assert_json_error(answer: &(u16, Value), status: u16, needle: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    let message = answer.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error: {}", answer.1));
    assert!(
        message.contains(needle),
        "{message:?} does not say {needle:?}"
    );
}

fn registration(address: &str) -> Value {
    json!({ "address": address })
}

#[tokio::test]
async fn registry_writes_need_the_token_and_instances_with_it_register() {
    let registry = registry(&["--token", TOKEN]).await;
    let http = http();
    let instance = format!("{}/v1/services/ratings/instances/9", registry.url);
    let body = registration("http://127.0.0.1:9");

    let missing = call(http.put(&instance).json(&body)).await;
    assert_json_error(&missing, 401, "bearer token");
    for wrong in ["wrong", &TOKEN[..TOKEN.len() - 1], &format!("{TOKEN}x")] {
        let answer = call(http.put(&instance).bearer_auth(wrong).json(&body)).await;
        assert_json_error(&answer, 401, "bearer token");
    }
    let basic = call(
        http.put(&instance)
            .basic_auth(TOKEN, Some(TOKEN))
            .json(&body),
    )
    .await;
    assert_json_error(&basic, 401, "bearer token");
    let listing = get_json(&format!("{}/v1/services/ratings", registry.url)).await;
    assert_eq!(
        listing["instances"],
        json!([]),
        "nothing registered without the token"
    );

    let ok = call(http.put(&instance).bearer_auth(TOKEN).json(&body)).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let lease = ok.1["lease"].as_str().expect("lease").to_owned();
    // Even with the right lease, heartbeat and deregistration need the token.
    let beat = format!("{instance}/heartbeat");
    assert_json_error(
        &call(http.put(&beat).header("X-Lease", &lease)).await,
        401,
        "token",
    );
    assert_json_error(
        &call(http.delete(&instance).header("X-Lease", &lease)).await,
        401,
        "token",
    );
    let renewed = call(http.put(&beat).bearer_auth(TOKEN).header("X-Lease", &lease)).await;
    assert_eq!(renewed.0, 200, "{}", renewed.1);

    // Reads stay open without --protect-reads.
    let listing = get_json(&format!("{}/v1/services/ratings", registry.url)).await;
    assert_eq!(listing["instances"][0]["id"], "9");

    // A real instance with the token registers; one without is refused and says so.
    let _with = ratings(1, &registry, &["--registry-token", TOKEN]).await;
    let mut without = ratings(2, &registry, &[]).await;
    without
        .wait_for_log("registry refused this instance", Duration::from_secs(10))
        .await;
    wait_for_instances(&registry, "ratings", &["1", "9"]).await;
}

#[tokio::test]
async fn protected_reads_need_the_token_too_and_the_market_can_send_it() {
    let registry = registry(&["--token", TOKEN, "--protect-reads"]).await;
    let http = http();
    let services = format!("{}/v1/services", registry.url);
    assert_json_error(&call(http.get(&services)).await, 401, "bearer token");
    assert_json_error(
        &call(http.get(format!("{services}/ratings?index=0&wait=1s"))).await,
        401,
        "bearer token",
    );
    let health = call(http.get(format!("{}/health", registry.url))).await;
    assert_eq!(health.0, 200, "health stays open");

    let _r1 = ratings(1, &registry, &["--registry-token", TOKEN]).await;
    eventually(Duration::from_secs(10), "instance 1 registered", || {
        let request = http.get(format!("{services}/ratings")).bearer_auth(TOKEN);
        async move {
            let (status, body) = call(request).await;
            (status == 200 && body["instances"][0]["id"] == "1").then_some(())
        }
    })
    .await;

    // A market with the token sees the instance; one without it cannot read the registry,
    // and still serves its page (no rating yet), never an error.
    let with = market(&registry, &["--registry-token", TOKEN]).await;
    let items = eventually(Duration::from_secs(10), "live ratings", || {
        let with = &with;
        async move {
            let items = market_items(with).await;
            items.iter().all(|i| i.2 == "live").then_some(items)
        }
    })
    .await;
    assert_eq!(items.len(), 4);
    let mut without = market(&registry, &[]).await;
    without
        .wait_for_log("discovery outage for ratings", Duration::from_secs(10))
        .await;
    let items = market_items(&without).await;
    assert!(items.iter().all(|i| i.2 == "none"), "{items:?}");
}

#[tokio::test]
async fn one_instance_cannot_renew_remove_or_move_another_ones_registration() {
    let registry = registry(&[]).await;
    let owner = ratings(1, &registry, &["--ttl", "1s"]).await;
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let listing_url = format!("{}/v1/services/ratings", registry.url);
    let before = get_json(&listing_url).await;
    assert_eq!(before["instances"][0]["address"], owner.url.as_str());

    let http = http();
    let instance = format!("{listing_url}/instances/1");
    let beat = format!("{instance}/heartbeat");
    for lease in [
        None,
        Some(""),
        Some("0123456789abcdef0123456789abcdef"),
        Some("../1"),
    ] {
        let with = |r: reqwest::RequestBuilder| match lease {
            Some(l) => r.header("X-Lease", l),
            None => r,
        };
        assert_json_error(&call(with(http.put(&beat))).await, 403, "lease");
        assert_json_error(&call(with(http.delete(&instance))).await, 403, "lease");
    }
    // Re-registering the id needs the lease too, whether to move it to another address
    // (hijacking its traffic) or at its own address (to get a fresh lease that could then
    // deregister it). The answer says how long the owner's lease has left.
    for address in ["http://127.0.0.1:1", owner.url.as_str()] {
        let hijack = call(http.put(&instance).json(&registration(address))).await;
        assert_json_error(&hijack, 409, "live lease");
        let left = hijack.1["retry_after_secs"].as_u64();
        assert!(matches!(left, Some(1)), "1 s TTL: {}", hijack.1);
    }
    assert_eq!(
        get_json(&listing_url).await["instances"],
        before["instances"]
    );

    // The owner's own heartbeats (every third of its 1 s TTL) keep working: it is still
    // listed, unchanged, for more than two TTLs.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < deadline {
        let now = get_json(&listing_url).await;
        assert_eq!(
            now["instances"], before["instances"],
            "owner's registration intact"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn every_program_binds_loopback_unless_told_otherwise() {
    let cases: [(&str, &[&str], &str); 3] = [
        ("registry", &[], "127.0.0.1:8500"),
        ("market", &[], "127.0.0.1:5000"),
        (
            "ratings-service",
            &["--no-register"],
            "127.0.0.1:{8000 + instance}",
        ),
    ];
    for (name, extra, default) in cases {
        let help = Command::new(program(name))
            .arg("--help")
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains(default),
            "{name} --help shows default {default}: {help}"
        );

        for how in ["flag", "env"] {
            let mut command = Command::new(program(name));
            command.args(extra).env_remove("REGISTRY_URL");
            let env_name = match name {
                "registry" => "REGISTRY_LISTEN",
                "market" => "MARKET_LISTEN",
                _ => "RATINGS_LISTEN",
            };
            if how == "flag" {
                command.args(["--listen", "0.0.0.0:0"]);
            } else {
                command.env(env_name, "0.0.0.0:0");
            }
            let out = command.output().expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name} by {how} bound 0.0.0.0");
            assert!(
                stderr.contains("--allow-remote"),
                "{name} by {how}: {stderr}"
            );
        }
    }
}

/// A client whose connections come from `source` (any 127.x.y.z is loopback on Linux), so
/// the registry sees it as a different client.
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Parks a blocking query from `client`, retrying while a probe holds the slot it needs;
/// returns the answer once the query was parked and then answered.
async fn park(client: reqwest::Client, url: String) -> reqwest::Response {
    loop {
        let answer = client.get(&url).send().await.expect("answered");
        if answer.status() != 429 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn limits_answer_a_clear_4xx_and_the_registry_keeps_serving() {
    let registry = registry(&[
        "--max-instances-per-service",
        "2",
        "--max-blocking-queries",
        "3",
        "--max-blocking-queries-per-client",
        "2",
    ])
    .await;
    let http = http();
    let services = format!("{}/v1/services", registry.url);
    let put = |id: &str, body: Value| {
        http.put(format!("{services}/ratings/instances/{id}"))
            .json(&body)
    };

    // Instances per service.
    let mut leases = Vec::new();
    for id in ["a", "b"] {
        let answer = call(put(id, registration("http://127.0.0.1:9"))).await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        leases.push(answer.1["lease"].as_str().expect("lease").to_owned());
    }
    assert_json_error(
        &call(put("c", registration("http://127.0.0.1:9"))).await,
        429,
        "limit of 2",
    );

    // Names, metadata and bodies.
    let long = "n".repeat(129);
    let long_name = http
        .put(format!("{services}/{long}/instances/1"))
        .json(&registration("http://127.0.0.1:9"));
    assert_json_error(&call(long_name).await, 400, "at most 128");
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = json!({"address": "http://127.0.0.1:9", "metadata": many});
    assert_json_error(&call(put("a", body)).await, 400, "metadata");
    let body = json!({"address": "http://127.0.0.1:9", "metadata": {"k": "v".repeat(257)}});
    assert_json_error(&call(put("a", body)).await, 400, "metadata");
    let huge = http
        .put(format!("{services}/ratings/instances/a"))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024]);
    assert_json_error(&call(huge).await, 413, "");

    // Blocking queries: two per client, three in all.
    let index = get_json(&format!("{services}/ratings")).await["index"]
        .as_u64()
        .expect("index");
    let watch = format!("{services}/ratings?index={index}&wait=30s");
    // A probe parks for at most 100 ms when a slot is free, and is refused when none is.
    let probe = format!("{services}/ratings?index={index}&wait=100ms");
    let a = client_from([127, 0, 0, 1]);
    let parked: Vec<_> = (0..2)
        .map(|_| tokio::spawn(park(a.clone(), watch.clone())))
        .collect();
    eventually(
        Duration::from_secs(5),
        "client a's third query refused",
        || {
            let request = a.get(&probe);
            async move {
                let (status, body) = call(request).await;
                (status == 429).then_some(body)
            }
        },
    )
    .await;
    let refused = call(a.get(&probe)).await;
    assert_json_error(&refused, 429, "this client already has 2");
    let b = client_from([127, 0, 0, 2]);
    let b_parked = tokio::spawn(park(b.clone(), watch.clone()));
    let c = client_from([127, 0, 0, 3]);
    let global = eventually(Duration::from_secs(5), "the global cap", || {
        let request = c.get(&probe);
        async move {
            let (status, body) = call(request).await;
            (status == 429).then_some((status, body))
        }
    })
    .await;
    assert_json_error(
        &(global.0, global.1),
        429,
        "too many blocking queries in progress",
    );

    // Plain reads and health are never capped; a change answers every parked query.
    assert_eq!(call(c.get(format!("{services}/ratings"))).await.0, 200);
    let lease = call(put("b", registration("http://127.0.0.1:10"))).await;
    assert_eq!(lease.0, 409, "moving b needs its lease: {}", lease.1);
    let changed = put(
        "a",
        json!({"address": "http://127.0.0.1:9", "metadata": {"v": "2"}}),
    )
    .header("X-Lease", &leases[0]);
    assert_eq!(call(changed).await.0, 200);
    for query in parked.into_iter().chain([b_parked]) {
        let answer = query.await.expect("task");
        assert_eq!(answer.status(), 200);
    }
    let health = call(http.get(format!("{}/health", registry.url))).await;
    assert_eq!(health.0, 200);
}

#[tokio::test]
async fn the_ratings_admin_endpoint_is_off_by_default_and_needs_its_token() {
    let registry = registry(&[]).await;
    let plain = ratings(1, &registry, &[]).await;
    let http = http();
    let faults = format!("{}/admin/faults", plain.url);
    assert_json_error(&call(http.get(&faults)).await, 404, "no route");
    let put = http.put(&faults).json(&json!({"error_rate": 1.0}));
    assert_json_error(&call(put).await, 404, "no route");

    let admin = ratings(2, &registry, &["--admin", "--admin-token", TOKEN]).await;
    let faults = format!("{}/admin/faults", admin.url);
    assert_json_error(&call(http.get(&faults)).await, 401, "admin token");
    let wrong = http
        .put(&faults)
        .bearer_auth("nope")
        .json(&json!({"error_rate": 1.0}));
    assert_json_error(&call(wrong).await, 401, "admin token");
    let bad = http
        .put(&faults)
        .bearer_auth(TOKEN)
        .json(&json!({"error_rate": 7}));
    assert_json_error(&call(bad).await, 400, "error_rate");
    let now = call(http.get(&faults).bearer_auth(TOKEN)).await;
    assert_eq!(
        now.1,
        json!({"latency_ms": 0, "error_rate": 0.0, "garbage_rate": 0.0, "throttle_rate": 0.0})
    );
    let slow = http
        .put(&faults)
        .bearer_auth(TOKEN)
        .json(&json!({"latency_ms": 20}));
    let applied = call(slow).await;
    assert_eq!(applied.1["latency_ms"], 20, "{}", applied.1);
    let rating = get_json(&format!("{}/ratings/widget", admin.url)).await;
    assert_eq!(rating["instance"], 2);
}

/// Starts ratings instance `n` on `port` (0: any), registered with `registry`.
async fn ratings_on(n: u32, port: u16, registry: &Proc, extra: &[&str]) -> Proc {
    let (instance, listen) = (n.to_string(), format!("127.0.0.1:{port}"));
    let mut args = vec![
        "--instance",
        &instance,
        "--listen",
        &listen,
        "--registry",
        &registry.url,
    ];
    args.extend_from_slice(extra);
    Proc::start("ratings-service", &args).await
}

fn port_of(proc: &Proc) -> u16 {
    proc.url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[tokio::test]
async fn a_killed_instance_comes_back_at_once_with_its_lease_file_and_after_its_ttl_without() {
    let registry = registry(&[]).await;
    let listing_url = format!("{}/v1/services/ratings", registry.url);
    let dir = tempfile::tempdir().expect("temp dir");
    let lease_file = dir.path().join("ratings-1.lease");
    let lease_file = lease_file.to_str().expect("utf-8 path");

    // Instance 1 keeps its lease in a file; instance 2 does not. Both have a 2 s TTL.
    let with_file = ["--ttl", "2s", "--lease-file", lease_file];
    let mut one = ratings_on(1, 0, &registry, &with_file).await;
    let mut two = ratings_on(2, 0, &registry, &["--ttl", "2s"]).await;
    wait_for_instances(&registry, "ratings", &["1", "2"]).await;
    let before = get_json(&listing_url).await;
    let stored: Value =
        serde_json::from_slice(&std::fs::read(lease_file).expect("lease file")).expect("JSON");
    let old_lease = stored["lease"].as_str().expect("lease").to_owned();

    // kill -9 both: no deregistration, their leases live on.
    let (port_one, port_two) = (port_of(&one), port_of(&two));
    one.kill();
    two.kill();

    // Instance 1 restarted on the same address presents the lease from its file and is
    // registered again at once, well within its old lease's TTL.
    let restarted = tokio::time::Instant::now();
    let mut one = ratings_on(1, port_one, &registry, &with_file).await;
    one.wait_for_log("registered with the registry", Duration::from_secs(1))
        .await;
    let took = restarted.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(one.count("still registered by an earlier process"), 0);
    let stored: Value =
        serde_json::from_slice(&std::fs::read(lease_file).expect("lease file")).expect("JSON");
    assert_ne!(stored["lease"].as_str(), Some(old_lease.as_str()));
    let beat = http()
        .put(format!("{listing_url}/instances/1/heartbeat"))
        .header("X-Lease", &old_lease);
    assert_eq!(call(beat).await.0, 403, "the dead process's lease is spent");

    // Instance 2 restarted without one is refused while its old lease lives, says so once,
    // and registers when that lease runs out.
    let mut two = ratings_on(2, port_two, &registry, &["--ttl", "2s"]).await;
    two.wait_for_log(
        "instance 2 is still registered by an earlier process; retrying when its lease expires in",
        Duration::from_secs(2),
    )
    .await;
    two.wait_for_log(
        "instance 2 holds its registration again",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(two.count("still registered by an earlier process"), 1);
    assert_eq!(
        get_json(&listing_url).await["instances"],
        before["instances"]
    );

    // A clean stop deregisters and removes the lease file.
    assert!(one.terminate().await);
    assert!(!std::path::Path::new(lease_file).exists());
    wait_for_instances(&registry, "ratings", &["2"]).await;
}
