//! In-memory store for `hookbridge serve` and tests. Mirrors the DynamoDB store's conditions
//! exactly, and stands in for the DynamoDB stream with a change feed: every delivery that
//! becomes `pending` is sent on the channel returned by [`MemoryStore::with_feed`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    CacheStore, DeliveryStore, EventStore, HistoryStore, Inserted, ReceiptStore, StoreError,
    TokenRecord, TokenStore,
};
use crate::event::{Delivery, DeliveryKey, Event, Millis, Settled, Status};

#[derive(Default)]
struct State {
    events: HashMap<String, Event>,
    deliveries: BTreeMap<DeliveryKey, Delivery>,
    tokens: HashMap<String, TokenSlot>,
    links: HashMap<(String, String), DeliveryKey>,
    cache: HashMap<String, (String, Millis)>,
}

/// A token item: the token, and the refresh lease (owner, held until).
#[derive(Default)]
struct TokenSlot {
    token: Option<TokenRecord>,
    lease: Option<(String, Millis)>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    feed: Option<mpsc::UnboundedSender<DeliveryKey>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose newly pending deliveries are announced on the returned receiver.
    pub fn with_feed() -> (Self, mpsc::UnboundedReceiver<DeliveryKey>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = MemoryStore {
            state: Mutex::default(),
            feed: Some(tx),
        };
        (store, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-written (every change is a
        // single insert), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn announce(&self, key: DeliveryKey) {
        if let Some(feed) = &self.feed {
            // The receiver is gone only when serve is shutting down.
            let _ = feed.send(key);
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn insert(&self, event: &Event, deliveries: &[Delivery]) -> Result<Inserted, StoreError> {
        {
            let mut state = self.lock();
            let pk = event.pk();
            if state.events.contains_key(&pk) {
                return Ok(Inserted::Duplicate);
            }
            state.events.insert(pk, event.clone());
            for d in deliveries {
                state.deliveries.insert(d.key(), d.clone());
            }
        }
        for d in deliveries.iter().filter(|d| d.status == Status::Pending) {
            self.announce(d.key());
        }
        Ok(Inserted::Created)
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .values()
            .filter(|d| d.pk == pk)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut state = self.lock();
        match state.deliveries.get_mut(key) {
            Some(d) if d.status == Status::Pending => {
                d.status = Status::Sending;
                d.attempts += 1;
                d.next_attempt_at = Some(lease_until);
                d.updated_at = now;
                Ok(Some(d.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn record(
        &self,
        claimed: &Delivery,
        settled: &Settled,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.deliveries.get_mut(&claimed.key()) {
            Some(d) if d.status == Status::Sending && d.attempts == claimed.attempts => {
                d.status = settled.status;
                d.attempts = settled.attempts;
                d.result = settled.result.clone();
                d.last_error = settled.last_error.clone();
                d.next_attempt_at = settled.next_attempt_at;
                d.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<DeliveryKey>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .values()
            .filter(|d| is_due(d, now))
            .take(limit)
            .map(Delivery::key)
            .collect())
    }

    async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
        let requeued = {
            let mut state = self.lock();
            match state.deliveries.get_mut(key) {
                Some(d) if is_due(d, now) => {
                    d.status = Status::Pending;
                    d.next_attempt_at = None;
                    d.updated_at = now;
                    true
                }
                _ => false,
            }
        };
        if requeued {
            self.announce(key.clone());
        }
        Ok(requeued)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut all: Vec<Delivery> = self.lock().deliveries.values().cloned().collect();
        all.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.sk.cmp(&b.sk)));
        all.truncate(limit);
        Ok(all)
    }
}

fn is_due(d: &Delivery, now: Millis) -> bool {
    d.status.is_parked() && d.next_attempt_at.is_some_and(|at| at <= now)
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn token(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock().tokens.get(name).and_then(|s| s.token.clone()))
    }

    async fn lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let entry = state.tokens.entry(name.to_owned()).or_default();
        let held = entry.lease.as_ref().is_some_and(|(_, until)| *until > now);
        let fresh = entry.token.as_ref().is_some_and(|t| t.refresh_at > now);
        if held || fresh {
            return Ok(false);
        }
        entry.lease = Some((owner.to_owned(), until));
        Ok(true)
    }

    async fn save_token(&self, name: &str, token: &TokenRecord) -> Result<(), StoreError> {
        let slot = TokenSlot {
            token: Some(token.clone()),
            lease: None,
        };
        self.lock().tokens.insert(name.to_owned(), slot);
        Ok(())
    }

    async fn drop_token(&self, name: &str, access_token: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(slot) = state.tokens.get_mut(name)
            && slot.token.as_ref().map(|t| t.access_token.as_str()) == Some(access_token)
        {
            slot.token = None;
        }
        Ok(())
    }
}

#[async_trait]
impl ReceiptStore for MemoryStore {
    async fn link(
        &self,
        connector: &str,
        reference: &str,
        key: &DeliveryKey,
    ) -> Result<(), StoreError> {
        self.lock()
            .links
            .insert((connector.to_owned(), reference.to_owned()), key.clone());
        Ok(())
    }

    async fn linked(
        &self,
        connector: &str,
        reference: &str,
    ) -> Result<Option<DeliveryKey>, StoreError> {
        Ok(self
            .lock()
            .links
            .get(&(connector.to_owned(), reference.to_owned()))
            .cloned())
    }

    async fn add_receipt(
        &self,
        key: &DeliveryKey,
        receipt: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        Ok(match self.lock().deliveries.get_mut(key) {
            Some(d) => {
                d.receipts.push(receipt.clone());
                true
            }
            None => false,
        })
    }
}

#[async_trait]
impl CacheStore for MemoryStore {
    async fn cached(&self, name: &str, now: Millis) -> Result<Option<String>, StoreError> {
        Ok(match self.lock().cache.get(name) {
            Some((value, expires_at)) if *expires_at > now => Some(value.clone()),
            _ => None,
        })
    }

    async fn cache(&self, name: &str, value: &str, expires_at: Millis) -> Result<(), StoreError> {
        self.lock()
            .cache
            .insert(name.to_owned(), (value.to_owned(), expires_at));
        Ok(())
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        self.lock().cache.remove(name);
        Ok(())
    }
}
