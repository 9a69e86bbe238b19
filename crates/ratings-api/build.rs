//! Generates the `ratings.v1.Ratings` client and server stubs from a description of
//! proto/ratings.proto's service (tonic-build's manual builder: no protoc needed). The
//! messages they carry are in src/messages.rs.

fn main() {
    let method = |name: &str, route: &str, input: &str, output: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::{input}"))
            .output_type(format!("crate::{output}"))
            .codec_path("tonic_prost::ProstCodec")
    };
    let ratings = tonic_build::manual::Service::builder()
        .name("Ratings")
        .package("ratings.v1")
        .method(method("get_rating", "GetRating", "GetRatingRequest", "Rating").build())
        .method(
            method(
                "watch_ratings",
                "WatchRatings",
                "WatchRatingsRequest",
                "Rating",
            )
            .server_streaming()
            .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[ratings]);
    println!("cargo:rerun-if-changed=build.rs");
}
