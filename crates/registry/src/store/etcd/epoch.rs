//! The etcd store's epoch: one random number per history of registrations in etcd, kept at
//! `<prefix>registry-epoch` (one path segment, so never taken for an instance key).
//!
//! The first registry to use an etcd and prefix writes it; every later one, and every
//! registry on the same etcd at once, reads the same value. Registrations and indexes
//! (etcd revisions) survive registry restarts, so the epoch rightly stays; if the etcd data
//! is lost, the key goes with it and the next registry writes a new one (see the
//! [store docs](crate::store) on epochs).

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::connection::{CallError, Connection};
use super::record::KeyLayout;

/// The key's name under the prefix.
const EPOCH_KEY: &str = "registry-epoch";

/// The epoch of the registrations under `layout`'s prefix: the one already in etcd, or a
/// new random one written there now if there is none.
pub(super) async fn load_or_create(conn: &Connection, layout: &KeyLayout) -> Result<u64, String> {
    let key = format!("{}{EPOCH_KEY}", layout.prefix());
    let fresh: u64 = rand::random();
    // Written only if the key does not exist; read otherwise. One transaction, so two
    // registries starting together on an empty etcd agree on one value.
    let txn = Txn::new()
        .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.as_str(), fresh.to_string(), None)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = conn
        .call(|mut client: Client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
        .map_err(|error: CallError| format!("reading the epoch at {key}: {error}"))?;
    if response.succeeded() {
        return Ok(fresh);
    }
    let stored = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    let Some(stored) = stored else {
        // Deleted between the compare and the get: it cannot be, the transaction is atomic.
        return Err(format!("the epoch at {key} vanished while it was read"));
    };
    std::str::from_utf8(&stored)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("the epoch at {key} is not a number: {stored:?}"))
}
