//! The walkthrough with DNS instead of the registry: three ratings instances on 127.0.0.1,
//! 127.0.0.2 and 127.0.0.3, one port, behind one name served by a real name server
//! (dnsmasq, see the dns-harness crate); the market started with
//! `--discovery dns:ratings.test:PORT --dns-server IP:PORT`. Calls interleave across the
//! three; pausing one opens its breaker, which retests and closes once it is resumed.
//!
//! Skips (printing why) when dnsmasq is not installed, and fails then when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use dns_harness::{Config, NameServer};
use system_tests::*;

const NAME: &str = "ratings.test";

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port free on 127.0.0.1, .2 and .3 right now.
fn port_free_on_three_addresses() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ip(1), 0)).expect("bind 127.0.0.1:0");
        let port = first.local_addr().expect("address").port();
        if (2..=3).all(|last| TcpListener::bind((ip(last), port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on 127.0.0.1..=3 in 50 tries");
}

/// The instance id of each rating on the market's `/api/items`.
async fn served_by(market: &Proc) -> Vec<String> {
    let answer = get_json(&format!("{}/api/items", market.url)).await;
    answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["rating_instance"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn three_instances_behind_one_name_pause_one_open_retest_close() {
    let config = Config::ttl(1)
        .host(ip(1), NAME)
        .host(ip(2), NAME)
        .host(ip(3), NAME);
    let Some(dns) = NameServer::start(&config) else {
        return;
    };
    let port = port_free_on_three_addresses();
    let mut instances = Vec::new();
    for n in 1..=3u8 {
        let listen = format!("127.0.0.{n}:{port}");
        let instance = n.to_string();
        let args = [
            "--instance",
            &instance,
            "--listen",
            &listen,
            "--no-register",
        ];
        instances.push(Proc::start("ratings-service", &args).await);
    }
    let discovery = format!("dns:{NAME}:{port}");
    let server = dns.address().to_string();
    let mut market = Proc::start(
        "market",
        &[
            "--listen",
            "127.0.0.1:0",
            "--discovery",
            &discovery,
            "--dns-server",
            &server,
            "--timeout",
            "300ms",
            "--retest-delay",
            "2s",
        ],
    )
    .await;
    market
        .wait_for_log(
            &format!("discovering instances in DNS (dns:{NAME}:{port}) through the name server at {server}"),
            Duration::from_secs(2),
        )
        .await;

    // Calls interleave across the three addresses, named by address and port.
    let ids: Vec<String> = (1..=3).map(|n| format!("127.0.0.{n}:{port}")).collect();
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..10 {
        seen.extend(served_by(&market).await);
        if ids.iter().all(|id| seen.contains(id)) {
            break;
        }
    }
    assert!(ids.iter().all(|id| seen.contains(id)), "{seen:?}");
    let url1 = format!("http://127.0.0.1:{port}");
    market
        .wait_for_log(
            &format!("ratings using instance 127.0.0.1:{port}: {url1}"),
            Duration::from_secs(2),
        )
        .await;

    // Ctrl-Z the instance on 127.0.0.1: its breaker opens; every rating is still shown.
    instances[0].pause();
    let open = format!("OPEN breaker on [ratings at {url1}]");
    for _ in 0..10 {
        let by = served_by(&market).await;
        assert!(by.iter().all(|id| id != "-"), "every rating shown: {by:?}");
        if market.count(&open) > 0 {
            break;
        }
    }
    market.wait_for_log(&open, Duration::from_secs(2)).await;
    let retest = format!("RETEST breaker on [ratings at {url1}]");
    market.wait_for_log(&retest, Duration::from_secs(4)).await;

    // `fg`: the next probe succeeds and closes the breaker; the name still lists it.
    instances[0].resume();
    let close = format!("CLOSE breaker on [ratings at {url1}]");
    for _ in 0..20 {
        served_by(&market).await;
        if market.count(&close) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    market.wait_for_log(&close, Duration::from_secs(2)).await;
    assert_eq!(market.count(&open), 1, "opened once");
    assert_eq!(
        market.count("discovery outage"),
        0,
        "DNS answered all along"
    );
}
