//! The items the market sells.
//!
//! The catalog is data, not code paths: [`Catalog::standard`] holds the four items of the
//! walkthrough, and tests can build their own with [`Catalog::new`] (for example, an item
//! whose name needs HTML escaping). Item ids are also path segments in calls to the ratings
//! service (`/ratings/{id}`), so they are restricted to `[a-z0-9_-]`.

use std::fmt;

/// One item for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Stable identifier: the form value, the JSON id and the ratings service's key.
    pub id: String,
    /// Name shown to shoppers.
    pub name: String,
    /// One line about the item.
    pub description: String,
    /// Price in cents, so sums are exact.
    pub price_cents: u64,
}

impl Item {
    /// An item; [`Catalog::new`] checks the id.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        description: impl Into<String>,
        price_cents: u64,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            price_cents,
        }
    }
}

/// Why a list of items cannot be a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// An id is empty, too long, or has characters other than `[a-z0-9_-]`.
    #[error("item id {0:?} must be 1 to 64 characters of [a-z0-9_-]")]
    InvalidId(String),
    /// Two items share an id.
    #[error("item id {0:?} appears twice")]
    DuplicateId(String),
}

/// The items for sale, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Kept in display order; four items, so lookups scan.
    items: Vec<Item>,
}

impl Catalog {
    /// A catalog of these items, in this order.
    ///
    /// # Errors
    ///
    /// [`CatalogError`] for an id that is not `[a-z0-9_-]{1,64}` or appears twice.
    pub fn new(items: Vec<Item>) -> Result<Self, CatalogError> {
        for (index, item) in items.iter().enumerate() {
            let valid =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
            if item.id.is_empty() || item.id.len() > 64 || !item.id.chars().all(valid) {
                return Err(CatalogError::InvalidId(item.id.clone()));
            }
            if items[..index].iter().any(|other| other.id == item.id) {
                return Err(CatalogError::DuplicateId(item.id.clone()));
            }
        }
        Ok(Self { items })
    }

    /// The four items of the walkthrough: widget, gadget, gizmo and doohickey.
    pub fn standard() -> Self {
        Self {
            items: vec![
                Item::new(
                    "widget",
                    "Widget",
                    "A sturdy, general-purpose widget for everyday jobs.",
                    1299,
                ),
                Item::new(
                    "gadget",
                    "Gadget",
                    "A clever gadget with more buttons than you need.",
                    2450,
                ),
                Item::new(
                    "gizmo",
                    "Gizmo",
                    "A pocket-sized gizmo that hums quietly.",
                    725,
                ),
                Item::new(
                    "doohickey",
                    "Doohickey",
                    "Nobody knows what it does, but everybody wants one.",
                    399,
                ),
            ],
        }
    }

    /// All items, in display order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The item with this id.
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.id == id)
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self::standard()
    }
}

/// A price in cents written as dollars: `1299` → `$12.99`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(pub u64);

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_catalog_is_the_walkthroughs_four_items() {
        let catalog = Catalog::standard();
        let ids: Vec<&str> = catalog.items().iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["widget", "gadget", "gizmo", "doohickey"]);
        // It passes its own rules.
        assert_eq!(Catalog::new(catalog.items().to_vec()), Ok(catalog.clone()));
        assert_eq!(catalog.get("gizmo").map(|i| i.price_cents), Some(725));
        assert_eq!(catalog.get("sprocket"), None);
    }

    #[test]
    fn ids_must_be_safe_path_segments_and_unique() {
        let item = |id: &str| Item::new(id, "N", "D", 1);
        assert_eq!(
            Catalog::new(vec![item("a/b")]),
            Err(CatalogError::InvalidId("a/b".into()))
        );
        assert!(Catalog::new(vec![item("")]).is_err());
        assert!(Catalog::new(vec![item("Widget")]).is_err());
        assert_eq!(
            Catalog::new(vec![item("x"), item("x")]),
            Err(CatalogError::DuplicateId("x".into()))
        );
    }

    #[test]
    fn prices_are_written_in_dollars() {
        assert_eq!(Price(1299).to_string(), "$12.99");
        assert_eq!(Price(5).to_string(), "$0.05");
        assert_eq!(Price(100_000).to_string(), "$1000.00");
    }
}
