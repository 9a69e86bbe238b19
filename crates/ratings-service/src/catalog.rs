//! The ratings every instance serves: `data/ratings.json`, embedded at build time and
//! checked at startup, and the rules for a valid item id.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The ratings file shipped with the service, shared by all instances.
pub const EMBEDDED_RATINGS: &str = include_str!("../data/ratings.json");

/// The longest item id accepted.
pub const MAX_ITEM_ID_LEN: usize = 64;

/// Why an item id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemIdError {
    /// The id is empty.
    #[error("item id must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ITEM_ID_LEN`] bytes.
    #[error("item id is {len} characters long; at most {MAX_ITEM_ID_LEN} are allowed")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id has a character outside `[A-Za-z0-9._-]`.
    #[error("item id may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
}

/// Checks that `id` is 1 to 64 characters from `[A-Za-z0-9._-]`.
pub fn validate_item_id(id: &str) -> Result<(), ItemIdError> {
    if id.is_empty() {
        return Err(ItemIdError::Empty);
    }
    if id.len() > MAX_ITEM_ID_LEN {
        return Err(ItemIdError::TooLong { len: id.len() });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ItemIdError::BadCharacter);
    }
    Ok(())
}

/// Why a ratings file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file is not JSON of the shape `{"ratings": {"item": 1..5}}`.
    #[error("ratings data is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    /// An item id breaks the id rules.
    #[error("ratings data has a bad item id {item:?}: {reason}")]
    BadItemId {
        /// The offending id.
        item: String,
        /// What is wrong with it.
        reason: ItemIdError,
    },
    /// A rating is outside 1..=5.
    #[error("ratings data gives {item:?} the rating {rating}; ratings are 1 to 5")]
    BadRating {
        /// The item.
        item: String,
        /// The out-of-range rating.
        rating: i64,
    },
    /// There are no ratings at all.
    #[error("ratings data has no items")]
    Empty,
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatingsFile {
    ratings: BTreeMap<String, i64>,
}

/// Item id to star rating (1..=5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Validated ratings.
    ratings: BTreeMap<String, u8>,
}

impl Catalog {
    /// The ratings shipped with the service ([`EMBEDDED_RATINGS`]).
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::from_json(EMBEDDED_RATINGS)
    }

    /// Parses and checks a ratings file: `{"ratings": {"widget": 4, ...}}`.
    pub fn from_json(json: &str) -> Result<Self, CatalogError> {
        let file: RatingsFile = serde_json::from_str(json)?;
        if file.ratings.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut ratings = BTreeMap::new();
        for (item, rating) in file.ratings {
            if let Err(reason) = validate_item_id(&item) {
                return Err(CatalogError::BadItemId { item, reason });
            }
            let stars = match u8::try_from(rating) {
                Ok(stars @ 1..=5) => stars,
                _ => return Err(CatalogError::BadRating { item, rating }),
            };
            ratings.insert(item, stars);
        }
        Ok(Self { ratings })
    }

    /// The rating of `item`, if it has one.
    pub fn rating(&self, item: &str) -> Option<u8> {
        self.ratings.get(item).copied()
    }

    /// All items and their ratings, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.ratings
            .iter()
            .map(|(item, stars)| (item.as_str(), *stars))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_rates_every_item_the_market_sells() {
        let catalog = Catalog::embedded().expect("embedded ratings parse");
        for item in ["widget", "gadget", "gizmo", "doohickey"] {
            assert!(
                matches!(catalog.rating(item), Some(1..=5)),
                "{item} has no rating"
            );
        }
        assert_eq!(catalog.rating("widget"), Some(4));
        assert_eq!(catalog.rating("nothing"), None);
    }

    #[test]
    fn bad_data_is_rejected_with_a_reason() {
        let cases = [
            ("not json", "not valid"),
            (r#"{"ratings": {}}"#, "no items"),
            (r#"{"ratings": {"widget": 6}}"#, "rating 6"),
            (r#"{"ratings": {"widget": 0}}"#, "rating 0"),
            (r#"{"ratings": {"widget": -1}}"#, "rating -1"),
            (r#"{"ratings": {"bad id": 3}}"#, "bad item id"),
            (r#"{"ratings": {"widget": "4"}}"#, "not valid"),
            (r#"{"ratings": {}, "extra": 1}"#, "not valid"),
        ];
        for (json, expected) in cases {
            match Catalog::from_json(json) {
                Ok(catalog) => panic!("{json} was accepted: {catalog:?}"),
                Err(error) => assert!(
                    error.to_string().contains(expected),
                    "{json}: {error} does not say {expected:?}"
                ),
            }
        }
    }

    #[test]
    fn item_id_rules() {
        assert_eq!(validate_item_id("widget"), Ok(()));
        assert_eq!(validate_item_id("A-z_0.9"), Ok(()));
        assert_eq!(validate_item_id(&"x".repeat(64)), Ok(()));
        assert_eq!(validate_item_id(""), Err(ItemIdError::Empty));
        assert_eq!(
            validate_item_id(&"x".repeat(65)),
            Err(ItemIdError::TooLong { len: 65 })
        );
        for bad in ["a b", "a/b", "é", "a%20b", "wid!get"] {
            assert_eq!(
                validate_item_id(bad),
                Err(ItemIdError::BadCharacter),
                "{bad}"
            );
        }
    }
}
