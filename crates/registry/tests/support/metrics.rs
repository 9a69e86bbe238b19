//! Reading a registry's `/metrics` page.

/// `GET {url}/metrics`, expecting 200 and the Prometheus text format; the page.
pub async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let answer = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    answer.text().await.unwrap()
}

/// The value of a series, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}
