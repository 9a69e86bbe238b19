//! The HTML pages, rendered as strings.
//!
//! Four small pages do not need a template engine: each function here builds one page inside
//! a shared [`layout`], and every piece of text that is not a literal of this file goes
//! through [`escape`] (item names and descriptions come from the catalog, error messages may
//! quote a visitor's input).

use axum::http::StatusCode;

use crate::catalog::{Item, Price};
use crate::ratings::RatingView;
use crate::status::StatusReport;

/// Escapes text for use in HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a cart as shown: the item and how many.
#[derive(Debug, Clone, Copy)]
pub struct LineView<'a> {
    /// The catalog item.
    pub item: &'a Item,
    /// Units in the cart.
    pub quantity: u32,
}

impl LineView<'_> {
    /// Price times quantity.
    pub fn total_cents(&self) -> u64 {
        self.item
            .price_cents
            .saturating_mul(u64::from(self.quantity))
    }
}

/// The sum of the lines' totals.
pub fn total_cents(lines: &[LineView<'_>]) -> u64 {
    lines
        .iter()
        .map(LineView::total_cents)
        .fold(0, u64::saturating_add)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:1px solid #ddd;margin-bottom:1rem}\
.item{display:flex;justify-content:space-between;gap:1rem;padding:.75rem 0;border-bottom:1px solid #eee}\
.item p{margin:.25rem 0}.price{font-weight:bold}.stars{color:#d89b00;letter-spacing:.1em}\
.no-rating{color:#888;font-style:italic}table{width:100%;border-collapse:collapse}\
td,th{text-align:left;padding:.4rem;border-bottom:1px solid #eee}td.num,th.num{text-align:right}\
button{cursor:pointer;padding:.35rem .8rem}";

/// The shared page frame: title, header with the cart link and its item count, and `body`
/// (already HTML).
pub fn layout(title: &str, cart_count: u32, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · Market</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1><a href=\"/\">Market</a></h1>\
         <a href=\"/cart\" id=\"cart-link\">Cart (<span id=\"cart-count\">{cart_count}</span>)</a></header>\n\
         <main>\n{body}</main>\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// The stars and number for a rating, or "no rating yet".
fn rating_html(view: &RatingView) -> String {
    match view.rating {
        Some(rating) => {
            let full = usize::from(rating.min(5));
            let stars = format!("{}{}", "★".repeat(full), "☆".repeat(5 - full));
            let from = match &view.instance {
                Some(instance) => format!("instance {instance}, {}", view.source.as_str()),
                None => view.source.as_str().to_string(),
            };
            format!(
                "<span class=\"rating\" data-source=\"{source}\" title=\"{from}\">\
                 <span class=\"stars\" aria-hidden=\"true\">{stars}</span> \
                 <span class=\"rating-number\">{rating}</span>/5</span>",
                source = view.source.as_str(),
                from = escape(&from),
            )
        }
        None => "<span class=\"no-rating\" data-source=\"none\">no rating yet</span>".to_string(),
    }
}

/// `GET /`: every item with its price, rating and an "Add to cart" button.
pub fn home(items: &[(&Item, RatingView)], cart_count: u32) -> String {
    let mut body = String::from("<h2>For sale</h2>\n");
    for (item, rating) in items {
        body.push_str(&format!(
            "<section class=\"item\" id=\"item-{id}\">\n<div>\n<h3>{name}</h3>\n<p>{description}</p>\n\
             <p>{rating}</p>\n</div>\n<div>\n<p class=\"price\">{price}</p>\n\
             <form method=\"post\" action=\"/cart/add\">\
             <input type=\"hidden\" name=\"item_id\" value=\"{id}\">\
             <button type=\"submit\">Add to cart</button></form>\n</div>\n</section>\n",
            id = escape(&item.id),
            name = escape(&item.name),
            description = escape(&item.description),
            rating = rating_html(rating),
            price = Price(item.price_cents),
        ));
    }
    layout("Shop", cart_count, &body)
}

fn lines_table(lines: &[LineView<'_>]) -> String {
    let mut rows = String::new();
    for line in lines {
        rows.push_str(&format!(
            "<tr><td>{name}</td><td class=\"num\">{price}</td>\
             <td class=\"num\">{quantity}</td><td class=\"num\">{total}</td></tr>\n",
            name = escape(&line.item.name),
            price = Price(line.item.price_cents),
            quantity = line.quantity,
            total = Price(line.total_cents()),
        ));
    }
    format!(
        "<table>\n<thead><tr><th>Item</th><th class=\"num\">Price</th>\
         <th class=\"num\">Quantity</th><th class=\"num\">Subtotal</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n\
         <tfoot><tr><th colspan=\"3\">Total</th><th class=\"num\" id=\"cart-total\">{total}</th></tr></tfoot>\n\
         </table>\n",
        total = Price(total_cents(lines)),
    )
}

fn count(lines: &[LineView<'_>]) -> u32 {
    lines
        .iter()
        .map(|l| l.quantity)
        .fold(0, u32::saturating_add)
}

/// `GET /cart`: the lines, quantities, total and a Checkout button.
pub fn cart(lines: &[LineView<'_>]) -> String {
    let body = if lines.is_empty() {
        "<h2>Your cart</h2>\n<p id=\"cart-empty\">Your cart is empty.</p>\n\
         <p><a href=\"/\">Continue shopping</a></p>\n"
            .to_string()
    } else {
        format!(
            "<h2>Your cart</h2>\n{table}\
             <form method=\"post\" action=\"/cart/checkout\"><button type=\"submit\">Checkout</button></form>\n\
             <p><a href=\"/\">Continue shopping</a></p>\n",
            table = lines_table(lines),
        )
    };
    layout("Cart", count(lines), &body)
}

/// `POST /cart/checkout`: thanks, and what was bought.
pub fn thank_you(bought: &[LineView<'_>]) -> String {
    let body = if bought.is_empty() {
        "<h2>Nothing to check out</h2>\n<p>Your cart was empty.</p>\n\
         <p><a href=\"/\">Continue shopping</a></p>\n"
            .to_string()
    } else {
        format!(
            "<h2>Thank you for your order!</h2>\n{table}<p><a href=\"/\">Continue shopping</a></p>\n",
            table = lines_table(bought),
        )
    };
    layout("Thank you", 0, &body)
}

/// How often the status page reloads itself without JavaScript, in seconds.
pub const STATUS_REFRESH_SECS: u32 = 2;

/// `GET /status`: one row per ratings instance (breaker state, attempts in flight, requests,
/// failures, recent latency, as the ratings client reports them) and the totals by rating
/// source. Without JavaScript it reloads itself every [`STATUS_REFRESH_SECS`] seconds; with
/// it, a live dashboard above the table (sparklines per instance, the breaker timeline, the
/// last events, the sources) is drawn from `/api/status/stream` and the page stays put.
pub fn status(report: &StatusReport) -> String {
    let mut rows = String::new();
    for instance in &report.instances {
        let latency = |ms: Option<f64>| ms.map_or_else(|| "—".to_string(), |ms| format!("{ms:.2}"));
        rows.push_str(&format!(
            "<tr class=\"instance\" id=\"instance-{id}\" data-state=\"{state}\">\
             <td>{id}</td><td>{address}</td><td class=\"breaker {state}\">{state}</td>\
             <td class=\"num in-flight\">{in_flight}</td>\
             <td class=\"num requests\">{requests}</td><td class=\"num failures\">{failures}</td>\
             <td class=\"num p50\">{p50}</td><td class=\"num p99\">{p99}</td>\
             <td class=\"num share\">{share:.1}{pushed_back}</td></tr>\n",
            id = escape(&instance.id),
            address = escape(&instance.address),
            state = escape(&instance.state),
            in_flight = instance.in_flight,
            requests = instance.requests,
            failures = instance.failures,
            p50 = latency(instance.latency_p50_ms),
            p99 = latency(instance.latency_p99_ms),
            share = instance.share_percent,
            pushed_back = match instance.pushed_back_ms {
                Some(_) => " <span class=\"pushed-back\">(pushed back)</span>",
                None => "",
            },
        ));
    }
    if report.instances.is_empty() {
        rows.push_str(
            "<tr><td colspan=\"9\" id=\"no-instances\">No instance known: \
             is any ratings instance running?</td></tr>\n",
        );
    }
    let totals = report.ratings;
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <noscript><meta http-equiv=\"refresh\" content=\"{STATUS_REFRESH_SECS}\"></noscript>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Status · Market</title>\n<style>{STYLE}{STATUS_STYLE}</style>\n</head>\n<body>\n\
         <header><h1><a href=\"/\">Market</a></h1><span>status</span></header>\n<main>\n\
         <section id=\"dashboard\" hidden>\n\
         <h2>{service} instances <small id=\"connection\">connecting…</small></h2>\n\
         <div id=\"live-instances\"></div>\n\
         <h2>Breakers, up to the last five minutes</h2>\n<div id=\"timeline\"></div>\n\
         <p class=\"note legend\"><span class=\"swatch closed\"></span> closed \
         <span class=\"swatch retest\"></span> retest <span class=\"swatch open\"></span> open; \
         OPEN, RETEST and CLOSE mark the moments the breaker changed.</p>\n\
         <div class=\"columns\"><div><h2>Last events</h2>\n<ol id=\"events\"></ol></div>\n\
         <div><h2>Ratings shown, by source</h2>\n<div id=\"sources-bar\"></div></div></div>\n\
         </section>\n\
         <h2>{service} instances</h2>\n\
         <table id=\"instances\">\n<thead><tr><th>Instance</th><th>Address</th><th>Breaker</th>\
         <th class=\"num\">In flight</th><th class=\"num\">Requests</th><th class=\"num\">Failures</th>\
         <th class=\"num\">p50 ms</th><th class=\"num\">p99 ms</th>\
         <th class=\"num\">Share %</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n</table>\n\
         <p id=\"rating-sources\">Ratings shown: {live} live, {cache} from cache, {stale} stale, \
         {none} none.</p>\n\
         <p class=\"note\">As the ratings client counts them since it first saw each address: \
         requests are the attempts sent to the instance whose outcome is known (a call retried \
         or hedged elsewhere counts on each instance it tried); failures are those that were the \
         instance's own (timeouts, transport errors, 5xx answers, bodies that did not decode); \
         latencies are the median and 99th percentile of its latest 128 attempts; the share is \
         its part of the balancer's turns, below 100 while it answers much slower than the \
         fastest instance or ramps up after slow start. \
         Without JavaScript the page refreshes every {STATUS_REFRESH_SECS} s; with it, everything \
         above the table is pushed live from <a href=\"/api/status/stream\">the stream</a>. \
         <a href=\"/api/status\">JSON</a>, <a href=\"/api/status/history\">history</a>, \
         <a href=\"/metrics\">metrics</a>.</p>\n\
         </main>\n<script>{DASHBOARD_SCRIPT}</script>\n</body>\n</html>\n",
        service = escape(&report.service),
        live = totals.live,
        cache = totals.cache,
        stale = totals.stale,
        none = totals.none,
    )
}

const STATUS_STYLE: &str = ".breaker{font-weight:bold}.closed{color:#1a7f37}.retest{color:#9a6700}\
.open{color:#cf222e}.note{color:#666;font-size:.9em}\
#live-instances{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #d0d7de;\
border-radius:6px;padding:.5em 1em}.card h3{margin:.2em 0}.spark{margin:.3em 0}\
.spark figcaption{font-size:.8em;color:#444}#timeline svg{max-width:100%;background:#f6f8fa}\
.lane-label,.axis,.mark-label{font-size:11px;font-family:sans-serif}\
.mark{stroke:#24292f;stroke-width:1.5}.mark-label{fill:#24292f;font-weight:bold}\
.swatch{display:inline-block;width:1em;height:.8em;vertical-align:middle}\
.swatch.closed{background:#2da44e}.swatch.retest{background:#d4a72c}.swatch.open{background:#cf222e}\
.columns{display:flex;flex-wrap:wrap;gap:2em}#events{padding-left:1.2em}#events time{color:#666}\
#sources-bar{display:flex;width:24em;max-width:100%}.source{padding:.2em .4em;color:#fff;\
white-space:nowrap;overflow:hidden}.source.live{background:#2da44e}.source.cache{background:#0969da}\
.source.stale{background:#d4a72c}.source.none{background:#8c959f}";

/// The dashboard's script ([`status`]): reads `/api/status/stream` and draws the sparklines,
/// the breaker timeline, the events and the sources. No external assets.
const DASHBOARD_SCRIPT: &str = include_str!("status/dashboard.js");

/// An error page with the status and a message for the visitor.
pub fn error(status: StatusCode, message: &str, cart_count: u32) -> String {
    let body = format!(
        "<h2>{reason}</h2>\n<p class=\"error\">{message}</p>\n<p><a href=\"/\">Back to the shop</a></p>\n",
        reason = escape(status.canonical_reason().unwrap_or("Error")),
        message = escape(message),
    );
    layout("Error", cart_count, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratings::RatingSource;

    #[test]
    fn the_status_page_refreshes_and_shows_each_instance() {
        use crate::ratings::SourceCounts;
        use crate::status::InstanceReport;
        let report = StatusReport {
            service: "ratings".into(),
            instances: vec![InstanceReport {
                id: "1".into(),
                address: "http://127.0.0.1:8001/<x>".into(),
                state: "open".into(),
                in_flight: 1,
                requests: 5,
                failures: 2,
                latency_p50_ms: Some(1.5),
                latency_p99_ms: None,
                latency_estimate_ms: Some(1.2),
                share_percent: 12.5,
                pushed_back_ms: Some(900.0),
            }],
            ratings: SourceCounts {
                live: 3,
                cache: 0,
                stale: 1,
                none: 0,
            },
        };
        let page = status(&report);
        assert!(
            page.contains("<meta http-equiv=\"refresh\" content=\"2\">"),
            "{page}"
        );
        assert!(page.contains("<tr class=\"instance\" id=\"instance-1\" data-state=\"open\">"));
        assert!(page.contains("http://127.0.0.1:8001/&lt;x&gt;"), "escaped");
        assert!(
            page.contains(
                "<td class=\"num share\">12.5 <span class=\"pushed-back\">(pushed back)</span></td>"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "<td class=\"num in-flight\">1</td>\
                 <td class=\"num requests\">5</td><td class=\"num failures\">2</td>\
                 <td class=\"num p50\">1.50</td><td class=\"num p99\">—</td>"
            ),
            "{page}"
        );
        assert!(page.contains("3 live, 0 from cache, 1 stale, 0 none"));
        assert!(
            page.contains("<th class=\"num\">Failures</th><th class=\"num\">p50 ms</th>"),
            "{page}"
        );
        let empty = status(&StatusReport {
            instances: Vec::new(),
            ..report
        });
        assert!(empty.contains("No instance known"));
    }

    #[test]
    fn escape_covers_the_five_special_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("Widget ★"), "Widget ★");
    }

    #[test]
    fn ratings_render_as_stars_and_number_or_no_rating_yet() {
        let four = RatingView {
            rating: Some(4),
            source: RatingSource::Stale,
            instance: Some("2".into()),
        };
        let html = rating_html(&four);
        assert!(html.contains("★★★★☆"), "{html}");
        assert!(
            html.contains("<span class=\"rating-number\">4</span>/5"),
            "{html}"
        );
        assert!(html.contains("title=\"instance 2, stale\""), "{html}");
        assert!(html.contains("data-source=\"stale\""), "{html}");
        // Out-of-range ratings never underflow the empty stars.
        assert!(
            rating_html(&RatingView {
                rating: Some(9),
                ..four.clone()
            })
            .contains("★★★★★")
        );
        assert!(rating_html(&RatingView::none()).contains("no rating yet"));
    }

    #[test]
    fn cart_totals_multiply_and_sum() {
        let widget = Item::new("widget", "Widget", "", 1299);
        let gizmo = Item::new("gizmo", "Gizmo", "", 725);
        let lines = [
            LineView {
                item: &widget,
                quantity: 2,
            },
            LineView {
                item: &gizmo,
                quantity: 1,
            },
        ];
        assert_eq!(total_cents(&lines), 2 * 1299 + 725);
        let page = cart(&lines);
        assert!(page.contains("$33.23"), "{page}");
        assert!(page.contains("Checkout"));
        assert!(page.contains("<span id=\"cart-count\">3</span>"));
        assert!(!cart(&[]).contains("Checkout"));
    }
}
