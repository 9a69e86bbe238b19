//! The gRPC API, `ratings.v1.Ratings` (crates/ratings-api/proto/ratings.proto), served on
//! the same port as the HTTP routes: gRPC calls arrive on their own paths
//! (`/ratings.v1.Ratings/GetRating`, `/ratings.v1.Ratings/WatchRatings`) over HTTP/2, which
//! the server speaks with or without TLS.
//!
//! - `GetRating` answers as `GET /ratings/{item_id}` does, faults included: an invalid id
//!   is `INVALID_ARGUMENT`, an unknown item `NOT_FOUND`, an injected error `UNAVAILABLE`,
//!   throttling `RESOURCE_EXHAUSTED`, garbage `INTERNAL`.
//! - `WatchRatings` streams the ratings of the items asked for, round after round.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use ratings_api::ratings_server::{Ratings, RatingsServer};
use ratings_api::{GetRatingRequest, Rating, WatchRatingsRequest};
use tonic::{Request, Response, Status};

use crate::catalog::validate_item_id;
use crate::faults::Injected;
use crate::state::AppState;

/// The shortest time between `WatchRatings` rounds, so a caller cannot make an instance
/// spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The gRPC service over the same state as the HTTP routes.
#[derive(Debug, Clone)]
pub struct RatingsGrpc {
    /// The instance's number, ratings and faults.
    state: AppState,
}

/// The `ratings.v1.Ratings` service for [`app`](crate::app) to route to.
pub fn service(state: AppState) -> RatingsServer<RatingsGrpc> {
    RatingsServer::new(RatingsGrpc { state })
}

/// A stream of ratings, as `WatchRatings` answers.
type RatingStream = Pin<Box<dyn Stream<Item = Result<Rating, Status>> + Send>>;

impl RatingsGrpc {
    /// `item`'s rating, or the status `GET /ratings/{item}` would have answered with.
    fn rating(&self, item: &str) -> Result<Rating, Status> {
        validate_item_id(item).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rating = self
            .state
            .catalog()
            .rating(item)
            .ok_or_else(|| Status::not_found(format!("no rating for item {item}")))?;
        Ok(Rating {
            item_id: item.to_string(),
            rating: u32::from(rating),
            instance: u32::from(self.state.instance()),
        })
    }
}

#[tonic::async_trait]
impl Ratings for RatingsGrpc {
    async fn get_rating(
        &self,
        request: Request<GetRatingRequest>,
    ) -> Result<Response<Rating>, Status> {
        let item = request.into_inner().item_id;
        let instance = self.state.instance();
        match self.state.suffer_faults(&item).await {
            Injected::Nothing => {}
            Injected::Error => {
                return Err(Status::unavailable(format!(
                    "instance {instance} injected an error"
                )));
            }
            Injected::Throttled => {
                return Err(Status::resource_exhausted(format!(
                    "instance {instance} is busy"
                )));
            }
            Injected::Garbage => {
                return Err(Status::internal(format!(
                    "instance {instance} injected garbage"
                )));
            }
        }
        let rating = self.rating(&item)?;
        tracing::info!(
            instance,
            item,
            "instance {instance} served rating for {item}"
        );
        Ok(Response::new(rating))
    }

    type WatchRatingsStream = RatingStream;

    async fn watch_ratings(
        &self,
        request: Request<WatchRatingsRequest>,
    ) -> Result<Response<RatingStream>, Status> {
        let request = request.into_inner();
        let ratings = request
            .item_ids
            .iter()
            .map(|item| self.rating(item))
            .collect::<Result<Vec<_>, _>>()?;
        let every = Duration::from_millis(request.interval_ms).max(MIN_INTERVAL);
        let rounds: Box<dyn Iterator<Item = u32> + Send> = match request.rounds {
            0 => Box::new(0..),
            n => Box::new(0..n),
        };
        let stream = futures::stream::iter(rounds)
            .then(move |round| {
                let ratings = ratings.clone();
                async move {
                    if round > 0 {
                        tokio::time::sleep(every).await;
                    }
                    futures::stream::iter(ratings.into_iter().map(Ok))
                }
            })
            .flatten();
        Ok(Response::new(Box::pin(stream)))
    }
}
