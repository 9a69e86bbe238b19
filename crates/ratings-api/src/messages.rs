//! The messages of proto/ratings.proto, written as prost derives (tests/contract.rs holds
//! them to the file).

/// `GetRating`'s request: the item whose rating is asked for.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct GetRatingRequest {
    /// The item, such as `widget`.
    #[prost(string, tag = "1")]
    pub item_id: ::prost::alloc::string::String,
}

/// An item's rating, and which instance answered.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Rating {
    /// The item.
    #[prost(string, tag = "1")]
    pub item_id: ::prost::alloc::string::String,
    /// Its stars, 1 to 5.
    #[prost(uint32, tag = "2")]
    pub rating: u32,
    /// The number of the ratings instance that answered.
    #[prost(uint32, tag = "3")]
    pub instance: u32,
}

/// `WatchRatings`' request: which items, how often, how many rounds.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct WatchRatingsRequest {
    /// The items whose ratings are streamed, in this order each round.
    #[prost(string, repeated, tag = "1")]
    pub item_ids: ::prost::alloc::vec::Vec<::prost::alloc::string::String>,
    /// The time between rounds, in milliseconds.
    #[prost(uint64, tag = "2")]
    pub interval_ms: u64,
    /// How many rounds; 0 streams until the caller stops listening.
    #[prost(uint32, tag = "3")]
    pub rounds: u32,
}
