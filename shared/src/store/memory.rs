//! The store of `hookbridge serve` (and of unit tests): state in memory, mirroring the DynamoDB
//! store's conditions exactly, and a change feed standing in for the DynamoDB stream (every
//! delivery that becomes `pending` is sent on the channel of [`MemoryStore::with_feed`]).
//!
//! Opened on a file ([`MemoryStore::durable`]), every change is first committed to it with
//! fsync (`file.rs`), and only then applied and acknowledged: a crash loses nothing that
//! was answered 200, and a restart reloads everything and announces what is pending.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::file::FileJournal;
use super::state::{Change, State, TokenSlot};
use super::{
    CacheStore, DeliveryStore, Due, EventStore, HistoryStore, Inserted, RateStore, ReceiptStore,
    StoreError, TokenRecord, TokenStore, Usage, UsageStore,
};
use crate::event::{
    Answer, Delivery, DeliveryFilter, DeliveryKey, Event, EventFilter, Millis, Settled, Status,
};

/// How long a cached value or a token is kept past its expiry (as on DynamoDB, where its TTL
/// is an hour later).
const EXPIRED_KEPT: Millis = 3_600_000;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    feed: Option<mpsc::UnboundedSender<DeliveryKey>>,
    journal: Option<FileJournal>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose newly pending deliveries are announced on the returned receiver.
    pub fn with_feed() -> (Self, mpsc::UnboundedReceiver<DeliveryKey>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = MemoryStore {
            feed: Some(tx),
            ..MemoryStore::default()
        };
        (store, rx)
    }

    /// A store on the file at `path` (created if missing), with its feed. What the file holds
    /// is loaded and every pending delivery announced again. A delivery still `sending` was
    /// claimed by the process that crashed (the file is locked to one process), so it is made
    /// pending again at once rather than after its lease.
    pub fn durable(
        path: &Path,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeliveryKey>), StoreError> {
        let (journal, state) = FileJournal::open(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let store = MemoryStore {
            state: Mutex::new(state),
            feed: Some(tx),
            journal: Some(journal),
        };
        let interrupted: Vec<DeliveryKey> = store
            .lock()
            .deliveries
            .values()
            .filter(|d| d.status == Status::Sending)
            .map(Delivery::key)
            .collect();
        for key in &interrupted {
            // It may have reached its system before the crash: at least once, never lost.
            tracing::warn!(delivery = %key, "was being sent when the process stopped; sending it again");
            store.update(key, |d| {
                d.status = Status::Pending;
                d.next_attempt_at = None;
                true
            })?;
        }
        let pending: Vec<DeliveryKey> = store
            .lock()
            .deliveries
            .values()
            .filter(|d| d.status == Status::Pending)
            .map(Delivery::key)
            .collect();
        for key in pending {
            store.announce(key);
        }
        Ok((store, rx))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Changes are applied after they are committed, each as single inserts: a panic while
        // holding the lock cannot leave State half-written, so a poisoned lock is still safe.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `changes` to the file, if there is one, before the caller applies them.
    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => j.write(changes),
            None => Ok(()),
        }
    }

    fn announce(&self, key: DeliveryKey) {
        if let Some(feed) = &self.feed {
            // The receiver is gone only when serve is shutting down.
            let _ = feed.send(key);
        }
    }

    /// Changes one delivery under `change`, which says whether it applies; committed first.
    fn update(
        &self,
        key: &DeliveryKey,
        change: impl FnOnce(&mut Delivery) -> bool,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut state = self.lock();
        let Some(mut d) = state.deliveries.get(key).cloned() else {
            return Ok(None);
        };
        if !change(&mut d) {
            return Ok(None);
        }
        self.commit(&[Change::Delivery(&d)])?;
        state.deliveries.insert(key.clone(), d.clone());
        Ok(Some(d))
    }

    /// Retention, as DynamoDB's TTL does it on AWS: events and deliveries older than
    /// `retention` (from when they were received and created), links to deliveries no longer
    /// kept, and cached values an hour past their expiry go, from memory and the file alike.
    /// An event's dedupe key goes with it, so `retention` must outlast every source's retries.
    /// Returns how many items went.
    pub fn purge(&self, now: Millis, retention: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut state = self.lock();
        let events: Vec<String> = state
            .events
            .iter()
            .filter(|(_, e)| e.received_at < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        let deliveries: HashSet<DeliveryKey> = state
            .deliveries
            .values()
            .filter(|d| d.created_at < cutoff)
            .map(Delivery::key)
            .collect();
        let links: Vec<(String, String)> = state
            .links
            .iter()
            .filter(|(_, target)| {
                deliveries.contains(*target) || !state.deliveries.contains_key(*target)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let cache: Vec<String> = state
            .cache
            .iter()
            .filter(|(_, (_, expires_at))| expires_at.saturating_add(EXPIRED_KEPT) < now)
            .map(|(k, _)| k.clone())
            .collect();
        let changes: Vec<Change> = events
            .iter()
            .map(|k| Change::DropEvent(k))
            .chain(deliveries.iter().map(Change::DropDelivery))
            .chain(links.iter().map(|(c, r)| Change::DropLink(c, r)))
            .chain(cache.iter().map(|k| Change::Cache(k, None)))
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        self.commit(&changes)?;
        for k in &events {
            state.events.remove(k);
        }
        for k in &deliveries {
            state.deliveries.remove(k);
        }
        for k in &links {
            state.links.remove(k);
        }
        for k in &cache {
            state.cache.remove(k);
        }
        Ok(changes.len())
    }

    /// Changes one token slot under `change`, which says whether it applies; committed first.
    fn update_token(
        &self,
        name: &str,
        change: impl FnOnce(&mut TokenSlot) -> bool,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let mut slot = state.tokens.get(name).cloned().unwrap_or_default();
        if !change(&mut slot) {
            return Ok(false);
        }
        self.commit(&[Change::Token(name, &slot)])?;
        state.tokens.insert(name.to_owned(), slot);
        Ok(true)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    fn writable(&self) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => j.writable(),
            None => Ok(()),
        }
    }

    async fn insert(&self, event: &Event, deliveries: &[Delivery]) -> Result<Inserted, StoreError> {
        {
            let mut state = self.lock();
            let pk = event.pk();
            if state.events.contains_key(&pk) {
                return Ok(Inserted::Duplicate);
            }
            let mut changes = vec![Change::Event(event)];
            changes.extend(deliveries.iter().map(Change::Delivery));
            self.commit(&changes)?;
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

    async fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError> {
        let found = self
            .lock()
            .events
            .values()
            .filter(|e| filter.matches(e))
            .map(|e| Event {
                payload: serde_json::Value::Null,
                ..e.clone()
            })
            .collect();
        Ok(super::newest_events(found, limit))
    }

    async fn event(&self, pk: &str) -> Result<Option<Event>, StoreError> {
        Ok(self.lock().events.get(pk).map(|e| Event {
            payload: serde_json::Value::Null,
            ..e.clone()
        }))
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
        let first = DeliveryKey {
            pk: pk.to_owned(),
            sk: String::new(),
        };
        Ok(self
            .lock()
            .deliveries
            .range(first..)
            .take_while(|(k, _)| k.pk == pk)
            .map(|(_, d)| d.clone())
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
        self.update(key, |d| {
            if d.status != Status::Pending {
                return false;
            }
            d.status = Status::Sending;
            d.attempts += 1;
            d.next_attempt_at = Some(lease_until);
            d.updated_at = now;
            true
        })
    }

    async fn record(
        &self,
        claimed: &Delivery,
        settled: &Settled,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let recorded = self.update(&claimed.key(), |d| {
            if d.status != claimed.status || d.attempts != claimed.attempts {
                return false;
            }
            d.status = settled.status;
            d.attempts = settled.attempts;
            d.result = settled.result.clone();
            d.last_error = settled.last_error.clone();
            d.next_attempt_at = settled.next_attempt_at;
            d.updated_at = now;
            d.answers.extend(Answer::of(claimed, settled, now));
            true
        })?;
        Ok(recorded.is_some())
    }

    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .values()
            .filter(|d| is_due(d, now))
            .take(limit)
            .map(|d| Due {
                key: d.key(),
                status: d.status,
            })
            .collect())
    }

    async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
        let requeued = self
            .update(key, |d| {
                if !is_due(d, now) {
                    return false;
                }
                d.status = Status::Pending;
                d.next_attempt_at = None;
                d.updated_at = now;
                true
            })?
            .is_some();
        if requeued {
            self.announce(key.clone());
        }
        Ok(requeued)
    }

    async fn list(
        &self,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Sorted by reference, and only the page cloned: a list of 100,000 copies nothing else.
        let state = self.lock();
        let mut found: Vec<&Delivery> = state
            .deliveries
            .values()
            .filter(|d| filter.matches(d))
            .collect();
        found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.sk.cmp(&b.sk)));
        Ok(found.into_iter().take(limit).cloned().collect())
    }

    async fn replay(&self, key: &DeliveryKey, now: Millis) -> Result<Option<Delivery>, StoreError> {
        let mut replayed = None;
        self.update(key, |d| match d.replayed(now) {
            Some(r) => {
                *d = r;
                replayed = Some(d.clone());
                true
            }
            None => false,
        })?;
        if replayed.is_some() {
            self.announce(key.clone());
        }
        Ok(replayed)
    }

    async fn recalled(
        &self,
        key: &DeliveryKey,
        note: &serde_json::Value,
        now: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut recalled = None;
        self.update(key, |d| match d.recalled(note.clone(), now) {
            Some(r) => {
                *d = r;
                recalled = Some(d.clone());
                true
            }
            None => false,
        })?;
        Ok(recalled)
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
        self.update_token(name, |slot| {
            let held = slot.lease.as_ref().is_some_and(|(_, until)| *until > now);
            let fresh = slot.token.as_ref().is_some_and(|t| t.refresh_at > now);
            if held || fresh {
                return false;
            }
            slot.lease = Some((owner.to_owned(), until));
            true
        })
    }

    async fn save_token(&self, name: &str, token: &TokenRecord) -> Result<(), StoreError> {
        self.update_token(name, |slot| {
            *slot = TokenSlot {
                token: Some(token.clone()),
                lease: None,
            };
            true
        })
        .map(drop)
    }

    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.update_token(name, |slot| {
            if slot.lease.as_ref().is_none_or(|(o, _)| o != owner) {
                return false;
            }
            slot.lease = None;
            true
        })
        .map(drop)
    }

    async fn drop_token(&self, name: &str, access_token: &str) -> Result<(), StoreError> {
        self.update_token(name, |slot| {
            if slot.token.as_ref().map(|t| t.access_token.as_str()) != Some(access_token) {
                return false;
            }
            slot.token = None;
            true
        })
        .map(drop)
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
        let mut state = self.lock();
        self.commit(&[Change::Link(connector, reference, key)])?;
        state
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
        let noted = self.update(key, |d| {
            d.receipts.push(receipt.clone());
            true
        })?;
        Ok(noted.is_some())
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
        let entry = (value.to_owned(), expires_at);
        let mut state = self.lock();
        self.commit(&[Change::Cache(name, Some(&entry))])?;
        state.cache.insert(name.to_owned(), entry);
        Ok(())
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.commit(&[Change::Cache(name, None)])?;
        state.cache.remove(name);
        Ok(())
    }
}

#[async_trait]
impl RateStore for MemoryStore {
    async fn take_slot(&self, name: &str, window: i64, limit: u32) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let slot = state.rates.entry(name.to_owned()).or_insert((window, 0));
        if window > slot.0 {
            *slot = (window, 0);
        }
        if window < slot.0 || slot.1 >= limit {
            return Ok(false);
        }
        slot.1 += 1;
        Ok(true)
    }

    async fn advance(&self, name: &str, mark: i64) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let last = state.marks.entry(name.to_owned()).or_insert(i64::MIN);
        if *last >= mark {
            return Ok(false);
        }
        *last = mark;
        Ok(true)
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn add_usage(
        &self,
        name: &str,
        period: &str,
        n: u64,
        quota: u64,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let key = (name.to_owned(), period.to_owned());
        let mut usage = state.usage.get(&key).cloned().unwrap_or(Usage {
            name: name.to_owned(),
            period: period.to_owned(),
            calls: 0,
            quota,
        });
        usage.calls += n;
        usage.quota = quota;
        self.commit(&[Change::Usage(&usage)])?;
        let calls = usage.calls;
        state.usage.insert(key, usage);
        Ok(calls)
    }

    async fn usage_in(&self, period: &str) -> Result<Vec<Usage>, StoreError> {
        Ok(self
            .lock()
            .usage
            .values()
            .filter(|u| u.period == period)
            .cloned()
            .collect())
    }
}
