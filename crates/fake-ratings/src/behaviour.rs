//! What a fake instance answers to a request: the one decision both servers share, so the
//! socket server and the in-memory transport cannot drift apart.

use std::time::Duration;

use serde_json::json;

/// The four items a [`Behaviour::Ratings`] instance knows; [`rating_of`] gives their ratings.
pub const STANDARD_ITEMS: [&str; 4] = ["widget", "gadget", "gizmo", "doohickey"];

/// The rating a fake gives `item`: widget 4, gadget 3, gizmo 5, doohickey 2; `None` for any
/// other item.
pub fn rating_of(item: &str) -> Option<u8> {
    match item {
        "widget" => Some(4),
        "gadget" => Some(3),
        "gizmo" => Some(5),
        "doohickey" => Some(2),
        _ => None,
    }
}

/// What a fake instance does with each request. Switch it at any time with
/// [`FakeRatings::set`](crate::FakeRatings::set); a request follows the behaviour set when it
/// arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `/ratings/{item}` answers 200 `application/json`
    /// `{"item_id": item, "rating": R, "instance": N}` for the [`STANDARD_ITEMS`] (R from
    /// [`rating_of`], N the instance number), and 404 `{"error":"unknown item"}` for any
    /// other item or path. The method and the query are not looked at, so a client's POST
    /// to `/ratings/widget` is answered like a GET.
    Ratings,
    /// As [`Behaviour::Ratings`], knowing only these items: the others get the 404.
    RatingsOf(Vec<String>),
    /// This status with a small JSON body, `{"error":"injected"}`, for every request.
    Status(u16),
    /// 200 `application/json` whose body is not JSON: `<html>not json`.
    Garbage,
    /// Never answers. Over a socket the request is held until the client closes its
    /// connection (or the instance stops); in memory the call's future never completes,
    /// and only dropping it (or stopping the instance) ends it.
    Hang,
    /// Waits this long (with `tokio::time::sleep`, so paused time works in memory), then
    /// behaves as the inner behaviour. See [`Behaviour::delay`].
    Delay(Duration, Box<Behaviour>),
    /// Writes exactly these bytes and closes the connection; they need not be HTTP (see
    /// [`response`](crate::response) for bytes that are). In memory there is no parser to
    /// hand them to, so the call fails with `io::ErrorKind::InvalidData`.
    Raw(Vec<u8>),
}

impl Behaviour {
    /// [`Behaviour::Delay`]: waits `wait`, then behaves as `then`.
    pub fn delay(wait: Duration, then: Behaviour) -> Behaviour {
        Behaviour::Delay(wait, Box::new(then))
    }
}

/// What to do with one request, once any delay is over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP answer.
    Answer(Answer),
    /// These bytes, as they are.
    Raw(Vec<u8>),
    /// Nothing, ever.
    Hang,
}

/// The parts of an HTTP answer each transport writes in its own form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

/// What `behaviour` does with a request for `target` (a path, with or without a query) on
/// instance `instance`, after sleeping out any [`Behaviour::Delay`].
pub(crate) async fn outcome(mut behaviour: Behaviour, instance: u32, target: &str) -> Outcome {
    loop {
        return match behaviour {
            Behaviour::Delay(wait, then) => {
                tokio::time::sleep(wait).await;
                behaviour = *then;
                continue;
            }
            Behaviour::Ratings => ratings(instance, target, |_| true),
            Behaviour::RatingsOf(known) => {
                ratings(instance, target, |item| known.iter().any(|k| k == item))
            }
            Behaviour::Status(status) => json(status, &json!({"error": "injected"})),
            Behaviour::Garbage => Outcome::Answer(Answer {
                status: 200,
                content_type: "application/json",
                body: b"<html>not json".to_vec(),
            }),
            Behaviour::Hang => Outcome::Hang,
            Behaviour::Raw(bytes) => Outcome::Raw(bytes),
        };
    }
}

/// The ratings answer for `target`, for items `known` accepts among the standard ones.
fn ratings(instance: u32, target: &str, known: impl Fn(&str) -> bool) -> Outcome {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let item = path
        .strip_prefix("/ratings/")
        .filter(|item| !item.is_empty() && !item.contains('/'));
    match item.and_then(|item| Some((item, rating_of(item).filter(|_| known(item))?))) {
        Some((item, rating)) => json(
            200,
            &json!({"item_id": item, "rating": rating, "instance": instance}),
        ),
        None => json(404, &json!({"error": "unknown item"})),
    }
}

fn json(status: u16, body: &serde_json::Value) -> Outcome {
    Outcome::Answer(Answer {
        status,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The status and JSON body of a JSON answer; panics on anything else.
    fn json_answer(outcome: Outcome) -> (u16, Value) {
        let Outcome::Answer(answer) = outcome else {
            panic!("not an answer: {outcome:?}");
        };
        assert_eq!(answer.content_type, "application/json");
        let body = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", answer.body));
        (answer.status, body)
    }

    #[tokio::test]
    async fn ratings_answer_the_standard_items_and_404_the_rest() {
        for item in STANDARD_ITEMS {
            let got = outcome(Behaviour::Ratings, 7, &format!("/ratings/{item}?x=1")).await;
            let rating = rating_of(item);
            assert!(rating.is_some(), "{item}");
            let expected = json!({"item_id": item, "rating": rating, "instance": 7});
            assert_eq!(json_answer(got), (200, expected), "{item}");
        }
        for target in [
            "/ratings/nope",
            "/ratings/",
            "/ratings/widget/x",
            "/health",
            "/",
        ] {
            let got = outcome(Behaviour::Ratings, 7, target).await;
            let expected = json!({"error": "unknown item"});
            assert_eq!(json_answer(got), (404, expected), "{target}");
        }
    }

    #[tokio::test]
    async fn ratings_of_knows_only_its_items() {
        let behaviour = Behaviour::RatingsOf(vec!["gizmo".into(), "nope".into()]);
        let got = outcome(behaviour.clone(), 2, "/ratings/gizmo").await;
        let expected = json!({"item_id": "gizmo", "rating": 5, "instance": 2});
        assert_eq!(json_answer(got), (200, expected));
        for target in ["/ratings/widget", "/ratings/nope"] {
            let got = outcome(behaviour.clone(), 2, target).await;
            let expected = json!({"error": "unknown item"});
            assert_eq!(json_answer(got), (404, expected), "{target}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delay_sleeps_then_follows_the_inner_behaviour() {
        let started = tokio::time::Instant::now();
        let behaviour = Behaviour::delay(
            Duration::from_millis(30),
            Behaviour::delay(Duration::from_millis(20), Behaviour::Status(502)),
        );
        let got = outcome(behaviour, 1, "/ratings/widget").await;
        assert_eq!(json_answer(got), (502, json!({"error": "injected"})));
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test]
    async fn garbage_hang_and_raw() {
        let garbage = outcome(Behaviour::Garbage, 1, "/ratings/widget").await;
        let expected = Answer {
            status: 200,
            content_type: "application/json",
            body: b"<html>not json".to_vec(),
        };
        assert_eq!(garbage, Outcome::Answer(expected));
        assert_eq!(outcome(Behaviour::Hang, 1, "/").await, Outcome::Hang);
        let raw = outcome(Behaviour::Raw(b"nope".to_vec()), 1, "/").await;
        assert_eq!(raw, Outcome::Raw(b"nope".to_vec()));
    }
}
