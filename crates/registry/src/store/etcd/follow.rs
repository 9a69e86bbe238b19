//! Keeping the mirror in step with etcd.
//!
//! [`load`] reads every key under the prefix at one revision; [`follow`] then watches the
//! prefix from the revision after the last one applied. When the watch breaks (the member
//! died, lost its leader, or the connection dropped) it resumes from the next revision on
//! another member, so no event is missed; when etcd has compacted that revision away it
//! reloads everything instead. Meanwhile reads are served from the last known view.
//! Retries back off up to 2 s, but a write that went through while the watch was down cuts
//! the wait short (`retry_now`), so the writer soon reads its write.
//!
//! The watch also counts lease expiries: a deletion of an instance key with no
//! deregistration marker at its revision (see the `mirror` module). Each registry counts
//! every expiry its own watch sees.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};

use super::connection::{CallError, Connection};
use super::mirror::{Change, Entry, Mirror};
use super::record::{KeyLayout, Record};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Replaces the mirror's view with a full read of the prefix.
pub async fn load(conn: &Connection, layout: &KeyLayout, mirror: &Mirror) -> Result<(), CallError> {
    let prefix = layout.prefix();
    let response = conn
        .call(|mut client: Client| async move {
            client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
        })
        .await?;
    let revision = response.header().map_or(0, |header| header.revision());
    let instances = response
        .kvs()
        .iter()
        .filter_map(|kv| {
            let (service, id) = layout.parse(kv.key())?;
            let entry = decode(kv)?;
            Some((service.to_owned(), id.to_owned(), entry))
        })
        .collect();
    mirror.load(instances, revision);
    Ok(())
}

/// Follows the prefix forever (the store aborts this task when it is dropped). A
/// notification on `retry_now` ends a backoff early.
pub async fn follow(
    conn: Arc<Connection>,
    layout: KeyLayout,
    mirror: Arc<Mirror>,
    retry_now: Arc<Notify>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut broken = false;
    loop {
        let (member, client) = conn.pick();
        let start = mirror.applied() + 1;
        let ended = watch(
            client,
            &layout,
            &mirror,
            start,
            conn.attempt_timeout(),
            &mut || {
                if broken {
                    broken = false;
                    tracing::info!("etcd watch restored");
                }
                backoff = FIRST_BACKOFF;
            },
        )
        .await;
        match ended {
            Ended::Compacted => {
                tracing::info!(start, "etcd compacted past the watch; reloading");
                if let Err(error) = load(&conn, &layout, &mirror).await {
                    tracing::warn!(%error, "etcd reload failed; retrying");
                    pause(backoff, &retry_now).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            Ended::Broken(reason) => {
                if !broken {
                    broken = true;
                    tracing::warn!(
                        %reason,
                        "etcd watch lost; serving the last known instances while reconnecting"
                    );
                }
                conn.failed(member);
                pause(backoff, &retry_now).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Waits `backoff`, or less if `retry_now` is notified.
async fn pause(backoff: Duration, retry_now: &Notify) {
    tokio::select! {
        () = tokio::time::sleep(backoff) => {}
        () = retry_now.notified() => {}
    }
}

/// Why a watch ended.
enum Ended {
    /// The start revision was compacted: reload.
    Compacted,
    /// Anything else: resume elsewhere.
    Broken(String),
}

/// Watches the prefix from `start` and applies what it sees until the watch ends.
/// `created` runs once the member has accepted the watch.
async fn watch(
    client: Client,
    layout: &KeyLayout,
    mirror: &Mirror,
    start: i64,
    attempt_timeout: Duration,
    created: &mut impl FnMut(),
) -> Ended {
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut watcher = client.watch_client();
    let mut stream = match tokio::time::timeout(
        attempt_timeout,
        watcher.watch(layout.prefix(), Some(options)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Ended::Broken(error.to_string()),
        Err(_) => return Ended::Broken("the watch was not accepted in time".into()),
    };
    // Ends when the stream does; HTTP/2 keep-alives notice a dead member, and a member
    // that loses its leader ends the watch itself (require-leader).
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Ended::Broken("the watch stream ended".into()),
            Err(error) => return Ended::Broken(error.to_string()),
        };
        if response.created() {
            created();
        }
        if response.canceled() {
            return if response.compact_revision() > 0 {
                Ended::Compacted
            } else {
                Ended::Broken(format!("watch canceled: {}", response.cancel_reason()))
            };
        }
        // A deregistration puts its marker in the transaction that deletes the key, so both
        // events have one revision, and etcd never splits a revision across responses.
        let deregistered: BTreeSet<(&str, &str, i64)> = response
            .events()
            .iter()
            .filter(|event| event.event_type() == EventType::Put)
            .filter_map(|event| {
                let kv = event.kv()?;
                let (service, id) = layout.parse_marker(kv.key())?;
                Some((service, id, kv.mod_revision()))
            })
            .collect();
        let mut changes = Vec::with_capacity(response.events().len());
        let mut last = 0;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            last = last.max(kv.mod_revision());
            let Some((service, id)) = layout.parse(kv.key()) else {
                continue;
            };
            let revision = kv.mod_revision();
            let (entry, expired) = match event.event_type() {
                EventType::Put => (decode(kv), false),
                EventType::Delete => (None, !deregistered.contains(&(service, id, revision))),
            };
            let (service, id) = (service.to_owned(), id.to_owned());
            changes.push(match entry {
                Some(entry) => Change::Put {
                    service,
                    id,
                    entry,
                    revision,
                },
                // Deleted, or overwritten with something that is not a record: either way
                // readers no longer see an instance there.
                None => Change::Delete {
                    service,
                    id,
                    revision,
                    expired,
                },
            });
        }
        if !changes.is_empty() {
            crate::store::log_expired(&mirror.apply(changes).expired);
        }
        mirror.advance(last);
    }
}

/// The entry a key holds, if its value is a record.
fn decode(kv: &KeyValue) -> Option<Entry> {
    let record = Record::parse(kv.value())?;
    Some(Entry {
        record,
        lease: kv.lease(),
    })
}
