//! How the sweeper reads the `status-due` index: from a cursor per status.
//!
//! A delivery enters the index when it is parked (its claim, a retry, a follow-up) and is not
//! taken out when it leaves: removing the entry is a second write unit (a delete in the index)
//! on every send. So an entry may outlive its delivery's parked status. The sweeper reads each
//! status's entries from where it last finished, looks up each delivery's status (half a read
//! unit, a fifth of a write unit's price), hands back those parked and due, and moves its cursor
//! past what it has seen, never past a delivery still parked.
//!
//! Nothing is written with a due time before the cursor: a claim's is its lapse, a retry's
//! its next attempt, and the cursor stays [`MARGIN`] behind the sweep (an entry written just
//! before a sweep, not yet in the index, is seen by the next one; the writers' and sweepers'
//! clocks must agree within it, as Amazon Time Sync keeps Lambda's). A warm sweeper keeps its
//! cursors in memory and writes them to the table every [`SAVE_EVERY`] they advance past an
//! entry (an idle table costs no writes); a cold one reads them back and looks again at no
//! more than that.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::Deserialize;

use super::{DynamoStore, Item, STATUS_DUE_INDEX, n, s, unavailable, until_processed};
use crate::event::{DeliveryKey, Millis, Status};
use crate::store::{Due, StoreError};

/// The item holding the cursors, one number attribute per parked status.
const CURSORS_PK: &str = "SWEEP";
const MARGIN: Millis = 60_000;
const SAVE_EVERY: Millis = 300_000;

/// Each parked status's cursor: every entry due before it has been seen, and left no delivery
/// parked behind it.
#[derive(Clone, Default)]
pub(super) struct Cursors {
    at: BTreeMap<Status, Millis>,
    saved: BTreeMap<Status, Millis>,
    /// Whether they have moved past an entry since last written: if not, a cold sweeper that
    /// starts from the written ones reads no more than this one did.
    passed: bool,
}

impl Cursors {
    /// Where `status`'s entries are still to be read from.
    pub(super) fn from(&self, status: Status) -> Millis {
        self.at.get(&status).copied().unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct Parked {
    pk: String,
    sk: String,
    status: Status,
    next_attempt_at: Option<Millis>,
}

impl DynamoStore {
    /// This process's cursors, else the table's.
    pub(super) async fn cursors(&self) -> Result<Cursors, StoreError> {
        if let Some(kept) = self.cursors.lock().map_err(|_| poisoned())?.clone() {
            return Ok(kept);
        }
        let item = self.item(CURSORS_PK, CURSORS_PK).await?.unwrap_or_default();
        let at: BTreeMap<Status, Millis> = Status::PARKED
            .iter()
            .filter_map(|&status| match item.get(status.as_str()) {
                Some(AttributeValue::N(v)) => v.parse().ok().map(|v| (status, v)),
                _ => None,
            })
            .collect();
        Ok(Cursors {
            saved: at.clone(),
            at,
            passed: false,
        })
    }

    /// The deliveries parked and due at `now`, at most `limit`, each status read from its
    /// cursor.
    pub(super) async fn due_from_cursors(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Due>, StoreError> {
        let mut cursors = self.cursors().await?;
        let mut due = vec![];
        for status in Status::PARKED {
            let from = cursors.from(status);
            if from > now {
                // This clock is behind the sweep that moved the cursor: nothing is due to it
                // (and DynamoDB refuses a range that ends before it starts).
                continue;
            }
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(STATUS_DUE_INDEX)
                .key_condition_expression("due_status = :s AND due_at BETWEEN :from AND :now")
                .expression_attribute_values(":s", s(status.as_str()))
                .expression_attribute_values(":from", n(from))
                .expression_attribute_values(":now", n(now))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(unavailable)?;
            let entries = out
                .items()
                .iter()
                .map(entry)
                .collect::<Result<Vec<_>, _>>()?;
            let parked = self
                .parked(entries.iter().map(|(key, _)| key.clone()).collect())
                .await?;
            let read: Vec<Millis> = entries.iter().map(|(_, at)| *at).collect();
            let mut to = now - MARGIN;
            if out.last_evaluated_key().is_some()
                && let Some((_, at)) = entries.last()
            {
                to = to.min(*at);
            }
            for (key, at) in entries {
                // Gone (expired) or no longer parked: an entry left behind, passed over.
                let Some(&(status, next)) = parked.get(&key) else {
                    continue;
                };
                to = to.min(at);
                if next.is_some_and(|t| t <= now) {
                    due.push(Due { key, status });
                }
            }
            let to = to.max(from);
            cursors.passed |= read.iter().any(|at| *at < to);
            cursors.at.insert(status, to);
        }
        self.keep(cursors).await?;
        due.truncate(limit);
        Ok(due)
    }

    /// Of `keys`, the deliveries that are parked, with their status and next attempt's time.
    async fn parked(
        &self,
        keys: Vec<DeliveryKey>,
    ) -> Result<BTreeMap<DeliveryKey, (Status, Option<Millis>)>, StoreError> {
        let mut found = BTreeMap::new();
        for chunk in keys.chunks(100) {
            let wanted = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk.iter().map(|k| Self::key(&k.pk, &k.sk)).collect(),
                ))
                .projection_expression("pk, sk, #st, next_attempt_at")
                .expression_attribute_names("#st", "status")
                .build()
                .map_err(|e| StoreError::Corrupt("keys".into(), e.to_string()))?;
            let read = until_processed(wanted, "deliveries", |keys| async move {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let items = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default();
                let left = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                Ok((items, left))
            })
            .await?;
            for item in read.into_iter().flatten() {
                let it: Parked = serde_dynamo::from_item(item)
                    .map_err(|e| StoreError::Corrupt("delivery".into(), e.to_string()))?;
                if it.status.is_parked() {
                    found.insert(
                        DeliveryKey {
                            pk: it.pk,
                            sk: it.sk,
                        },
                        (it.status, it.next_attempt_at),
                    );
                }
            }
        }
        Ok(found)
    }

    /// Keeps `cursors` for the next sweep, and writes them when one has moved
    /// [`SAVE_EVERY`] since last written.
    async fn keep(&self, mut cursors: Cursors) -> Result<(), StoreError> {
        let moved = cursors.passed
            && cursors.at.iter().any(|(status, at)| {
                cursors
                    .saved
                    .get(status)
                    .is_none_or(|saved| at - saved >= SAVE_EVERY)
            });
        if moved {
            let mut update = self.update(CURSORS_PK, CURSORS_PK);
            let mut set = vec![];
            for (i, (status, at)) in cursors.at.iter().enumerate() {
                set.push(format!("#c{i} = :c{i}"));
                update = update
                    .expression_attribute_names(format!("#c{i}"), status.as_str())
                    .expression_attribute_values(format!(":c{i}"), n(*at));
            }
            update
                .update_expression(format!("SET {}", set.join(", ")))
                .send()
                .await
                .map_err(unavailable)?;
            cursors.saved = cursors.at.clone();
            cursors.passed = false;
        }
        *self.cursors.lock().map_err(|_| poisoned())? = Some(cursors);
        Ok(())
    }
}

/// An index entry: the delivery's key and its due time.
fn entry(item: &Item) -> Result<(DeliveryKey, Millis), StoreError> {
    let corrupt = |e: String| StoreError::Corrupt("status-due entry".into(), e);
    let key: DeliveryKey =
        serde_dynamo::from_item(item.clone()).map_err(|e| corrupt(e.to_string()))?;
    match item.get("due_at") {
        Some(AttributeValue::N(at)) => Ok((key, at.parse().map_err(|_| corrupt(at.clone()))?)),
        _ => Err(corrupt("no due_at".into())),
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("the sweep's cursors were left half-written by a panic".into())
}
