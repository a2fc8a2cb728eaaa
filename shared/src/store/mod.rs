//! Narrow storage traits: what ingress, the sender loop, the sweeper and the connectors need,
//! and nothing more. [`dynamodb::DynamoStore`] is the one on AWS; [`memory::MemoryStore`] backs
//! `hookbridge serve` (durable on a file by default) and unit tests. One conformance suite
//! (tests crate) runs against all three.

pub mod dynamodb;
mod file;
pub mod memory;
mod state;

use async_trait::async_trait;
use serde_json::Value;

use crate::event::{
    Delivery, DeliveryFilter, DeliveryKey, Event, EventFilter, Millis, Settled, Status,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the call; the caller should answer 5xx.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Another process has the data file open (a running `hookbridge serve`).
    #[error("{0} is in use by another process (a running hookbridge serve?)")]
    InUse(String),
    /// An item read back from storage does not decode (a bug or a hand-edited item).
    #[error("corrupt item {0}: {1}")]
    Corrupt(String, String),
}

/// A delivery the sweeper found parked and due, and the status it was parked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub key: DeliveryKey,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    /// An event with this key exists already; nothing was written.
    Duplicate,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes the event and all its deliveries atomically, unless the event exists.
    async fn insert(&self, event: &Event, deliveries: &[Delivery]) -> Result<Inserted, StoreError>;

    /// The events `filter` picks, newest first by arrival (then by key), at most `limit`:
    /// the body as received, not the payload (the table does not keep it).
    async fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// One event by its key (`EVT#<source>#<key>`), as [`EventStore::events`] gives them.
    async fn event(&self, pk: &str) -> Result<Option<Event>, StoreError>;

    /// Whether it takes writes now (`serve`'s `/healthz`): a store on a file says no while its
    /// disk is full or failing.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a connector may read back: the deliveries an earlier event made (DingTalk's task ids,
/// for turning a to-do card's status bar to done).
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Every delivery of one event.
    async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError>;

    /// One delivery.
    async fn delivery(&self, key: &DeliveryKey) -> Result<Option<Delivery>, StoreError> {
        let all = self.deliveries_of(&key.pk).await?;
        Ok(all.into_iter().find(|d| d.sk == key.sk))
    }
}

#[async_trait]
pub trait DeliveryStore: HistoryStore {
    /// `pending → sending`, one more attempt, claim lapsing at `lease_until`. `None` when the
    /// delivery is not pending (another sender has it, it is done, or the record was stale).
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Writes the outcome of the attempt `claimed` holds, if the delivery still has its status
    /// and attempts (a claim's `sending`; a follow-up's `pending` or `checking`, read unclaimed).
    /// `false` when it changed (the sweeper re-queued it and another sender took it, or another
    /// sender followed it up first): the outcome is then discarded.
    async fn record(
        &self,
        claimed: &Delivery,
        settled: &Settled,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Deliveries parked and due: `retrying` or `waiting` at their next attempt, `sending`
    /// with a lapsed claim, `checking` at their follow-up.
    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError>;

    /// Makes a due delivery `pending` again (which hands it to a sender). `false` if it was no
    /// longer due (another sweeper got there first).
    async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError>;

    /// The most recently updated deliveries that `filter` matches, newest first (for
    /// operators, not for the pipeline).
    async fn list(
        &self,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The most recently updated deliveries, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.list(&DeliveryFilter::default(), limit).await
    }

    /// Makes a dead delivery pending again with a fresh budget ([`Delivery::replayed`]), which
    /// hands it to a sender. `None` when it is not dead (any more).
    async fn replay(&self, key: &DeliveryKey, now: Millis) -> Result<Option<Delivery>, StoreError>;

    /// Marks a sent delivery recalled ([`Delivery::recalled`]), `note` added to its receipts.
    /// `None` when it is not sent (any more): recalled already, or changed meanwhile.
    async fn recalled(
        &self,
        key: &DeliveryKey,
        note: &Value,
        now: Millis,
    ) -> Result<Option<Delivery>, StoreError>;
}

/// Newest first by arrival (then by key), at most `limit`.
fn newest_events(mut found: Vec<Event>, limit: usize) -> Vec<Event> {
    found.sort_by(|a, b| b.received_at.cmp(&a.received_at).then(a.key.cmp(&b.key)));
    found.truncate(limit);
    found
}

/// Newest first by last update (then by key, for a stable order), at most `limit`.
fn newest_first(mut found: Vec<Delivery>, limit: usize) -> Vec<Delivery> {
    found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.sk.cmp(&b.sk)));
    found.truncate(limit);
    found
}

/// A shared access token with its refresh lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    pub access_token: String,
    /// Refresh from this time on (a margin before the real expiry).
    pub refresh_at: Millis,
    /// The token is no longer valid from this time on.
    pub expires_at: Millis,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn token(&self, name: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Takes the refresh lease for `name` until `until`, unless another holder's lease is live
    /// or the stored token does not need refreshing yet. Checked atomically: a process that
    /// read "no token" just before another saved one cannot win the lease and fetch again.
    async fn lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError>;
    /// Stores a fresh token and releases the lease.
    async fn save_token(&self, name: &str, token: &TokenRecord) -> Result<(), StoreError>;
    /// Forgets `access_token` if it is still the stored one (DingTalk rejected it).
    async fn drop_token(&self, name: &str, access_token: &str) -> Result<(), StoreError>;
    /// Gives up `owner`'s refresh lease (its fetch failed), so the next caller, in any
    /// process, fetches at once instead of waiting out the lease.
    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError>;
}

/// A connector's own references to its sends (浙政钉's `bizMsgId`), and the receipts its
/// system reports for them later.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Remembers that `reference`, unique for `connector`, names the delivery `key`.
    async fn link(
        &self,
        connector: &str,
        reference: &str,
        key: &DeliveryKey,
    ) -> Result<(), StoreError>;
    /// The delivery `reference` names, if `connector` linked it.
    async fn linked(
        &self,
        connector: &str,
        reference: &str,
    ) -> Result<Option<DeliveryKey>, StoreError>;
    /// Appends `receipt` to the delivery's receipts. `false` when there is no such delivery.
    async fn add_receipt(&self, key: &DeliveryKey, receipt: &Value) -> Result<bool, StoreError>;
}

/// Values a connector looked up and may reuse until they expire or it forgets them (浙政钉
/// employee codes to accountIds).
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The value stored under `name`, unless it expired by `now`.
    async fn cached(&self, name: &str, now: Millis) -> Result<Option<String>, StoreError>;
    async fn cache(&self, name: &str, value: &str, expires_at: Millis) -> Result<(), StoreError>;
    async fn forget(&self, name: &str) -> Result<(), StoreError>;
}

/// API calls a connector made, per account and month, against its quota (DingTalk's standard
/// edition: 5 000 calls a month per organisation). Counted fleet-wide, read by operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// `<connector>#<account>`, e.g. `dingtalk#dingxxxx`.
    pub name: String,
    /// The month, `YYYY-MM` in Beijing time (a day, `YYYY-MM-DD`, for a daily limit).
    pub period: String,
    pub calls: u64,
    /// The quota configured when the last call was counted (0: none).
    pub quota: u64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Counts `n` more calls of `name` in `period`, recording `quota`; the total after them.
    /// Atomic: concurrent senders each see their own total.
    async fn add_usage(
        &self,
        name: &str,
        period: &str,
        n: u64,
        quota: u64,
    ) -> Result<u64, StoreError>;
    /// Everything counted in `period`, by name.
    async fn usage_in(&self, period: &str) -> Result<Vec<Usage>, StoreError>;
}

/// Pacing shared by every sender of a deployment: a connector's calls counted per time window,
/// so that all Lambda instances together keep to a per-second limit.
#[async_trait]
pub trait RateStore: Send + Sync {
    /// Takes one of `limit` places in window number `window` of `name`; `false` when it is
    /// full (or already past, for a late caller). Atomic across the fleet.
    async fn take_slot(&self, name: &str, window: i64, limit: u32) -> Result<bool, StoreError>;
    /// Raises the mark of `name` to `mark` if it is lower (or unset); `false` when an equal or
    /// higher mark was taken already. Atomic across the fleet: each mark is taken once, and
    /// never after a higher one (ZenTao's time tokens must strictly increase per entry).
    async fn advance(&self, name: &str, mark: i64) -> Result<bool, StoreError>;
}

/// Everything hookbridge stores, in one table.
pub trait Store:
    EventStore + DeliveryStore + TokenStore + ReceiptStore + CacheStore + UsageStore + RateStore
{
}
impl<T> Store for T where
    T: EventStore + DeliveryStore + TokenStore + ReceiptStore + CacheStore + UsageStore + RateStore
{
}
