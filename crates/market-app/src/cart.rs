//! Shopping carts, one per visitor, kept in memory.
//!
//! A visitor is known by a random [`CartId`] in a cookie (see [`crate::routes`]). The
//! [`CartStore`] is bounded twice so a flood of visitors or clicks cannot grow it without
//! limit: at most `max_carts` carts (the least recently used one is dropped to make room for
//! a new one) and at most [`MAX_QUANTITY`] of one item per cart. A cart exists only once
//! something was added to it; checkout removes it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most units of one item a cart may hold.
pub const MAX_QUANTITY: u32 = 99;

/// A visitor's cart identifier: 32 lowercase hex digits.
///
/// Random enough that visitors cannot guess each other's ids (two SipHash outputs keyed by
/// the standard library's per-process random keys), which is all a demo cart needs; it is
/// not a session token for anything valuable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CartId(String);

impl CartId {
    /// A fresh random id.
    pub fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let high = RandomState::new().hash_one((n, nanos));
        let low = RandomState::new().hash_one((high, n, nanos));
        Self(format!("{high:016x}{low:016x}"))
    }

    /// The id in a cookie value, if it is well formed.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed = value.len() == 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self(value.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an item could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// The cart already holds [`MAX_QUANTITY`] of the item.
    #[error("a cart holds at most {MAX_QUANTITY} of one item")]
    QuantityLimit,
}

/// One line of a cart: an item id and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    /// The catalog item's id.
    pub item_id: String,
    /// Units in the cart, 1..=[`MAX_QUANTITY`].
    pub quantity: u32,
}

/// Every visitor's cart. Cheap to clone; clones share the carts.
#[derive(Debug, Clone)]
pub struct CartStore {
    inner: Arc<Mutex<Carts>>,
}

#[derive(Debug)]
struct Carts {
    /// The carts, by visitor.
    carts: HashMap<CartId, Cart>,
    /// The same carts by last use, oldest first, to find the one to drop.
    by_use: BTreeMap<u64, CartId>,
    /// Counts uses; a cart's last use is the tick when it was last touched.
    tick: u64,
    /// Most carts kept.
    max_carts: usize,
}

#[derive(Debug, Default)]
struct Cart {
    /// Quantity by item id; lines are shown in catalog order, not this map's.
    lines: BTreeMap<String, u32>,
    /// The tick of the last use, the key in `by_use`.
    last_use: u64,
}

impl CartStore {
    /// An empty store holding at most `max_carts` carts (at least one).
    pub fn new(max_carts: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Carts {
                carts: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                max_carts: max_carts.max(1),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Carts> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than losing a cart, so carry on with the data as it is.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one unit of `item_id` (which the caller has checked is in the catalog) and
    /// returns the new quantity. Creates the cart if needed, dropping the least recently
    /// used cart when the store is full.
    ///
    /// # Errors
    ///
    /// [`CartError::QuantityLimit`] when the cart already holds [`MAX_QUANTITY`]; nothing
    /// changes.
    pub fn add(&self, id: &CartId, item_id: &str) -> Result<u32, CartError> {
        let mut carts = self.lock();
        let current = carts
            .carts
            .get(id)
            .and_then(|cart| cart.lines.get(item_id).copied())
            .unwrap_or(0);
        if current >= MAX_QUANTITY {
            return Err(CartError::QuantityLimit);
        }
        let cart = carts.touch_or_create(id);
        let quantity = cart.lines.entry(item_id.to_string()).or_insert(0);
        *quantity += 1;
        Ok(*quantity)
    }

    /// The cart's lines (empty for an unknown cart).
    pub fn lines(&self, id: &CartId) -> Vec<CartLine> {
        let mut carts = self.lock();
        match carts.touch(id) {
            Some(cart) => lines_of(cart),
            None => Vec::new(),
        }
    }

    /// Removes the cart and returns what was in it.
    pub fn checkout(&self, id: &CartId) -> Vec<CartLine> {
        let mut carts = self.lock();
        match carts.carts.remove(id) {
            Some(cart) => {
                carts.by_use.remove(&cart.last_use);
                lines_of(&cart)
            }
            None => Vec::new(),
        }
    }

    /// How many carts are held.
    pub fn len(&self) -> usize {
        self.lock().carts.len()
    }

    /// Whether no cart is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lines_of(cart: &Cart) -> Vec<CartLine> {
    cart.lines
        .iter()
        .map(|(item_id, &quantity)| CartLine {
            item_id: item_id.clone(),
            quantity,
        })
        .collect()
}

impl Carts {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Marks the cart as just used and returns it.
    fn touch(&mut self, id: &CartId) -> Option<&mut Cart> {
        let tick = self.next_tick();
        let cart = self.carts.get_mut(id)?;
        self.by_use.remove(&cart.last_use);
        cart.last_use = tick;
        self.by_use.insert(tick, id.clone());
        Some(cart)
    }

    /// Marks the cart as just used, creating it (and dropping the oldest) if needed.
    fn touch_or_create(&mut self, id: &CartId) -> &mut Cart {
        if !self.carts.contains_key(id) {
            while self.carts.len() >= self.max_carts {
                let Some((_, oldest)) = self.by_use.pop_first() else {
                    break;
                };
                self.carts.remove(&oldest);
            }
        }
        let tick = self.next_tick();
        // A new cart's `last_use` is 0, which no tick ever is, so the removal is a no-op.
        let cart = self.carts.entry(id.clone()).or_default();
        self.by_use.remove(&cart.last_use);
        cart.last_use = tick;
        self.by_use.insert(tick, id.clone());
        cart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item_id: &str, quantity: u32) -> CartLine {
        CartLine {
            item_id: item_id.into(),
            quantity,
        }
    }

    #[test]
    fn random_ids_are_well_formed_and_distinct() {
        let ids: Vec<CartId> = (0..1000).map(|_| CartId::random()).collect();
        for id in &ids {
            assert_eq!(CartId::parse(id.as_str()).as_ref(), Some(id));
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(CartId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn add_counts_and_checkout_empties() {
        let store = CartStore::new(10);
        let id = CartId::random();
        assert_eq!(store.lines(&id), []);
        assert!(store.is_empty(), "viewing must not create a cart");
        assert_eq!(store.add(&id, "widget"), Ok(1));
        assert_eq!(store.add(&id, "widget"), Ok(2));
        assert_eq!(store.add(&id, "gizmo"), Ok(1));
        assert_eq!(store.lines(&id), [line("gizmo", 1), line("widget", 2)]);
        assert_eq!(store.checkout(&id), [line("gizmo", 1), line("widget", 2)]);
        assert_eq!(store.lines(&id), []);
        assert!(store.is_empty());
    }

    #[test]
    fn carts_are_separate() {
        let store = CartStore::new(10);
        let (a, b) = (CartId::random(), CartId::random());
        store.add(&a, "widget").unwrap();
        assert_eq!(store.lines(&b), []);
        store.checkout(&b);
        assert_eq!(store.lines(&a), [line("widget", 1)]);
    }

    #[test]
    fn quantity_is_bounded_and_a_refusal_changes_nothing() {
        let store = CartStore::new(10);
        let id = CartId::random();
        for expected in 1..=MAX_QUANTITY {
            assert_eq!(store.add(&id, "widget"), Ok(expected));
        }
        assert_eq!(store.add(&id, "widget"), Err(CartError::QuantityLimit));
        assert_eq!(store.lines(&id), [line("widget", MAX_QUANTITY)]);
    }

    #[test]
    fn the_least_recently_used_cart_is_dropped_when_full() {
        let store = CartStore::new(2);
        let (a, b, c) = (CartId::random(), CartId::random(), CartId::random());
        store.add(&a, "widget").unwrap();
        store.add(&b, "widget").unwrap();
        // Using `a` makes `b` the oldest.
        assert_eq!(store.lines(&a).len(), 1);
        store.add(&c, "widget").unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.lines(&b), []);
        assert_eq!(store.lines(&a), [line("widget", 1)]);
        assert_eq!(store.lines(&c), [line("widget", 1)]);
    }
}
