//! Bad input to the real registry process: a 4xx with a JSON error, and nothing changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use system_tests::*;

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let registry = registry(&[]).await;
    let http = http();
    let good = format!("{}/v1/services/ratings/instances/1", registry.url);
    let registered = http
        .put(&good)
        .json(&serde_json::json!({"address": "http://127.0.0.1:8001"}))
        .send()
        .await
        .expect("register");
    assert!(registered.status().is_success());
    let before = get_json(&format!("{}/v1/services/ratings", registry.url)).await;

    let long_name = "x".repeat(200);
    let huge = format!(
        "{{\"address\":\"http://127.0.0.1:1\",\"metadata\":{{\"k\":\"{}\"}}}}",
        "v".repeat(100_000)
    );
    let cases: Vec<(String, String, &str)> = vec![
        (good.clone(), "{not json".into(), "malformed JSON"),
        (good.clone(), r#"{"address": 5}"#.into(), "wrong type"),
        (
            good.clone(),
            r#"{"address": "not a url"}"#.into(),
            "bad address",
        ),
        (
            good.clone(),
            r#"{"address": "ftp://127.0.0.1:21"}"#.into(),
            "bad scheme",
        ),
        (
            good.clone(),
            r#"{"address": "http://127.0.0.1:8001", "ttl_secs": 0}"#.into(),
            "bad ttl",
        ),
        (
            format!("{}/v1/services/{long_name}/instances/1", registry.url),
            r#"{"address": "http://127.0.0.1:8001"}"#.into(),
            "long name",
        ),
        (
            format!("{}/v1/services/rat%20ings/instances/1", registry.url),
            r#"{"address": "http://127.0.0.1:8001"}"#.into(),
            "bad characters",
        ),
        (good.clone(), huge, "oversized body"),
    ];
    for (url, body, what) in cases {
        let answer = http
            .put(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("PUT");
        let status = answer.status();
        assert!(status.is_client_error(), "{what}: {status}");
        let error: serde_json::Value = answer
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {error}"
        );
    }
    // Deregistering with a wrong lease is refused too.
    let wrong = http
        .delete(&good)
        .header("X-Lease", "not-the-lease")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(wrong.status(), 403);

    let after = get_json(&format!("{}/v1/services/ratings", registry.url)).await;
    assert_eq!(before, after, "state unchanged");
    let services = get_json(&format!("{}/v1/services", registry.url)).await;
    assert_eq!(services, serde_json::json!({"services": ["ratings"]}));
}
