//! The one sender loop every connector shares (docs/how-it-works.md): claim a pending delivery, call its
//! connector, record the outcome through [`settle`]. And the sweeper that brings due retries
//! (and claims whose sender died) back to `pending`, and hands due follow-ups on ([`FollowUps`]).
//!
//! A Lambda stream batch, the local change feed and tests all go through [`Sender::process`].

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::connectors::Connector;
use crate::event::{
    Action, Delivery, DeliveryKey, Failure, Millis, Outcome, RetryPolicy, Settled, Status, now_ms,
    settle,
};
use crate::logging::LogId;
use crate::metrics;
use crate::store::{DeliveryStore, StoreError};

/// How long a sender keeps trying to record an outcome while the store is down: well within a
/// Lambda timeout, long enough for a store that restarts.
pub const RECORD_PATIENCE: Millis = 10_000;

pub struct Sender {
    connectors: Vec<Arc<dyn Connector>>,
    store: Arc<dyn DeliveryStore>,
    policy: RetryPolicy,
}

impl Sender {
    pub fn new(
        connectors: Vec<Arc<dyn Connector>>,
        store: Arc<dyn DeliveryStore>,
        policy: RetryPolicy,
    ) -> Self {
        Sender {
            connectors,
            store,
            policy,
        }
    }

    /// Whether this sender runs `connector` (a Lambda sender runs one).
    pub fn handles(&self, connector: &str) -> bool {
        self.connector(connector).is_some()
    }

    /// The connector of that name, if this sender runs it.
    pub fn connector(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.name() == name)
    }

    /// Processes one delivery. `Ok(None)`: it was not pending (a stale or repeated record).
    /// `Err`: the store failed, so the outcome may not be recorded and the caller must retry.
    pub async fn process(&self, key: &DeliveryKey) -> Result<Option<Status>, StoreError> {
        self.process_inner(key).instrument(deliver_span(key)).await
    }

    async fn process_inner(&self, key: &DeliveryKey) -> Result<Option<Status>, StoreError> {
        let now = now_ms();
        let lease_until = now + i64::from(self.policy.claim_lease_secs) * 1000;
        let Some(claimed) = self.store.claim(key, now, lease_until).await? else {
            debug!("not pending any more; nothing to do");
            return Ok(None);
        };
        self.attempt(&claimed, &claimed, lease_until).await
    }

    /// A sent delivery back for its follow-up: re-queued (a stream record whose state has a
    /// result), or `checking` and due (handed on by the sweeper, see [`FollowUps`]). The
    /// follow-up only asks the system what became of the send, a question that may be asked
    /// twice, so it is not claimed (two writes saved); its outcome is recorded only if the
    /// delivery is still as it was read. A pending delivery without a result goes through
    /// [`Sender::process`]; anything else is left as it is.
    pub async fn follow_up(&self, key: &DeliveryKey) -> Result<Option<Status>, StoreError> {
        async {
            let seen = self.store.delivery(key).await?;
            let now = now_ms();
            let to_check = |d: &Delivery| match d.status {
                Status::Pending => true,
                Status::Checking => d.next_attempt_at.is_some_and(|at| at <= now),
                _ => false,
            };
            match seen {
                Some(seen) if to_check(&seen) && seen.was_sent() => {
                    // Settled as a claim would have had it: one more attempt, given back.
                    let mut asked = seen.clone();
                    asked.status = Status::Sending;
                    asked.attempts += 1;
                    self.attempt(&asked, &seen, now_ms() + RECORD_PATIENCE)
                        .await
                }
                Some(seen) if seen.status == Status::Pending => self.process_inner(key).await,
                _ => {
                    debug!("neither pending nor due to be checked; nothing to do");
                    Ok(None)
                }
            }
        }
        .instrument(deliver_span(key))
        .await
    }

    /// Calls the connector for `claimed` and records the outcome, if the delivery is still as
    /// `held` (the claim, or the state a follow-up read) until `lease_until`.
    async fn attempt(
        &self,
        claimed: &Delivery,
        held: &Delivery,
        lease_until: Millis,
    ) -> Result<Option<Status>, StoreError> {
        let span = tracing::Span::current();
        span.record("connector", claimed.connector.as_str());
        span.record("attempt", claimed.attempts);
        let outcome = match self.connector(&claimed.connector) {
            Some(c) if claimed.action == Action::Revoke => {
                crate::revoke::revoke(c.as_ref(), self.store.as_ref(), claimed, now_ms()).await
            }
            Some(c) => {
                let started = std::time::Instant::now();
                let outcome = c.deliver(claimed).await;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                metrics::record(&metrics::SEND_LATENCY, &[("Connector", c.name())], ms);
                outcome
            }
            None => Outcome::Failed(Failure::Permanent(format!(
                "no connector \"{}\" is configured here",
                claimed.connector
            ))),
        };
        let settled = settle(claimed, outcome, &self.policy, now_ms());
        let metric = match settled.status {
            Status::Sent | Status::Checking => Some(&metrics::DELIVERED),
            Status::Retrying => Some(&metrics::RETRIED),
            Status::Undelivered => Some(&metrics::UNDELIVERED),
            Status::Dead => Some(&metrics::DEAD),
            _ => None,
        };
        if let Some(m) = metric {
            metrics::count(m, &[("Connector", claimed.connector.as_str())]);
        }
        match settled.status {
            Status::Dead => error!(reason = settled.last_error.as_deref(), "delivery is dead"),
            Status::Retrying => warn!(
                reason = settled.last_error.as_deref(),
                next_attempt_at = settled.next_attempt_at,
                "delivery will be retried"
            ),
            Status::Waiting => info!(
                reason = settled.last_error.as_deref(),
                next_attempt_at = settled.next_attempt_at,
                "delivery is waiting"
            ),
            Status::Skipped => info!(reason = settled.last_error.as_deref(), "delivery skipped"),
            s => info!(
                status = s.as_str(),
                // A dry run's result is the whole rendered request: its start is enough here.
                result = %LogId(&settled.result.clone().unwrap_or_default().to_string()),
                "delivery done"
            ),
        }
        if !self.record(held, &settled, lease_until).await? {
            warn!("the claim lapsed and another sender took over; this outcome is discarded");
        }
        Ok(Some(settled.status))
    }

    /// Records the outcome of a call already made, trying again while the store is down and
    /// the claim holds (at most [`RECORD_PATIENCE`]): an outcome left unrecorded is a call made
    /// twice once the claim lapses, which ZenTao, for one, cannot tell from a new message.
    async fn record(
        &self,
        claimed: &Delivery,
        settled: &Settled,
        lease_until: Millis,
    ) -> Result<bool, StoreError> {
        let give_up = lease_until.min(now_ms() + RECORD_PATIENCE);
        let mut pause = 250;
        loop {
            match self.store.record(claimed, settled, now_ms()).await {
                Err(e) if now_ms() + pause < give_up => {
                    warn!(error = %e, "could not record the outcome of the call; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(pause.unsigned_abs()))
                        .await;
                    pause = (pause * 2).min(2_000);
                }
                Err(e) => {
                    error!(error = %e, "the call was made but its outcome could not be recorded; it is sent again once the claim lapses");
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// Drives the sender from the local change feed (`hookbridge serve`). Each connector gets
    /// `concurrency` workers of its own, so a slow or failing connector never delays another.
    /// Returns when the feed closes or `stop` turns true, once the sends in flight are done.
    pub async fn run_feed(
        self: Arc<Self>,
        mut feed: mpsc::UnboundedReceiver<DeliveryKey>,
        concurrency: usize,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut lanes: HashMap<String, mpsc::UnboundedSender<DeliveryKey>> = HashMap::new();
        let mut workers = JoinSet::new();
        loop {
            let key = tokio::select! {
                key = feed.recv() => key,
                _ = until_stopped(&mut stop) => None,
            };
            let Some(key) = key else { break };
            let lane = key.connector().unwrap_or_default().to_owned();
            let queue = lanes.entry(lane).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let rx = Arc::new(Mutex::new(rx));
                for _ in 0..concurrency.max(1) {
                    let again = tx.downgrade();
                    workers.spawn(self.clone().work(rx.clone(), again, stop.clone()));
                }
                tx
            });
            // The worker side only closes after the queue is dropped below.
            let _ = queue.send(key);
        }
        drop(lanes);
        while workers.join_next().await.is_some() {}
    }

    /// One worker of a connector: takes the next key until the queue closes or `stop` turns
    /// true; a send in flight is always finished.
    async fn work(
        self: Arc<Self>,
        queue: Arc<Mutex<mpsc::UnboundedReceiver<DeliveryKey>>>,
        again: mpsc::WeakUnboundedSender<DeliveryKey>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let key = tokio::select! {
                key = async { queue.lock().await.recv().await } => key,
                _ = until_stopped(&mut stop) => None,
            };
            let Some(key) = key else { return };
            if let Err(e) = self.process(&key).await {
                // A claimed delivery stays claimed and the sweeper re-queues it when the claim
                // lapses; but a claim that could not be written (a full disk) leaves it pending,
                // which nothing else announces again: it goes back in the queue a moment later
                // (claims are conditional, so a second try of a claimed one does nothing).
                error!(delivery = %key, error = %e, "could not record a delivery outcome; trying again shortly");
                let again = again.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(CLAIM_RETRY).await;
                    if let Some(queue) = again.upgrade() {
                        let _ = queue.send(key);
                    }
                });
            }
        }
    }
}

/// The span of one delivery's attempt; the connector and attempt are recorded once known.
fn deliver_span(key: &DeliveryKey) -> tracing::Span {
    info_span!("deliver", delivery = %key, connector = tracing::field::Empty, attempt = tracing::field::Empty)
}

/// How soon a delivery whose claim or outcome could not be written is tried again in `serve`.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Returns once `stop` turns true (or its sender is gone).
pub async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Where due follow-ups go without a re-queue. On Lambda: the connector's sender function,
/// invoked with their keys, which spares the re-queue's write (and the stream's record) of
/// every followed-up send.
#[async_trait::async_trait]
pub trait FollowUps: Send + Sync {
    /// Hands `keys`, `connector`'s deliveries due to be checked, to what checks them. `false`
    /// when they could not be handed on: they are re-queued instead.
    async fn hand_off(&self, connector: &str, keys: &[DeliveryKey]) -> bool;
}

/// What one sweep did with the due deliveries it found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    pub requeued: usize,
    pub handed_off: usize,
}

/// Re-queues due deliveries, or hands due follow-ups to `follow_ups`. Several sweepers may
/// run at once: each re-queue is conditional, so a delivery is re-queued once, and a
/// follow-up's outcome is recorded once (the delivery must still be `checking`).
pub async fn sweep(
    store: &dyn DeliveryStore,
    now: Millis,
    limit: usize,
    follow_ups: Option<&dyn FollowUps>,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut to_check: HashMap<String, Vec<DeliveryKey>> = HashMap::new();
    let mut to_requeue = vec![];
    for due in store.due(now, limit).await? {
        match due.key.connector() {
            Some(connector) if follow_ups.is_some() && due.status == Status::Checking => {
                to_check
                    .entry(connector.to_owned())
                    .or_default()
                    .push(due.key);
            }
            _ => to_requeue.push(due.key),
        }
    }
    if let Some(follow_ups) = follow_ups {
        for (connector, keys) in to_check {
            if follow_ups.hand_off(&connector, &keys).await {
                swept.handed_off += keys.len();
            } else {
                to_requeue.extend(keys);
            }
        }
    }
    for key in to_requeue {
        if store.requeue(&key, now).await? {
            debug!(delivery = %key, "re-queued");
            swept.requeued += 1;
        }
    }
    if swept != Swept::default() {
        info!(
            requeued = swept.requeued,
            handed_off = swept.handed_off,
            "sweep re-queued or handed on due deliveries"
        );
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Action, Delivery, Event};
    use crate::store::memory::MemoryStore;
    use crate::store::{Due, EventStore, HistoryStore};

    /// A connector that answers from a script, one outcome per call.
    struct Scripted(std::sync::Mutex<Vec<Outcome>>);

    #[async_trait::async_trait]
    impl Connector for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn deliver(&self, _: &Delivery) -> Outcome {
            self.0.lock().unwrap().remove(0)
        }
        fn dry_run(&self) -> bool {
            false
        }
    }

    async fn setup(
        script: Vec<Outcome>,
        connector: &str,
    ) -> (Arc<MemoryStore>, Sender, DeliveryKey) {
        let store = Arc::new(MemoryStore::new());
        let event = Event {
            source: "t".into(),
            key: "k".into(),
            kind: "x".into(),
            received_at: 0,
            payload: json!({}),
            raw: String::new(),
        };
        let d = Delivery::new(
            &event.pk(),
            connector,
            0,
            Action::Send,
            vec![],
            json!({}),
            0,
        );
        let key = d.key();
        store.insert(&event, &[d]).await.unwrap();
        let sender = Sender::new(
            vec![Arc::new(Scripted(std::sync::Mutex::new(script)))],
            store.clone(),
            RetryPolicy::default(),
        );
        (store, sender, key)
    }

    #[tokio::test]
    async fn transient_then_sweep_then_sent() {
        let (store, sender, key) = setup(
            vec![
                Outcome::Failed(Failure::Transient("busy".into())),
                Outcome::Sent(json!({"task_id": 1})),
            ],
            "scripted",
        )
        .await;
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Retrying));
        assert_eq!(
            sender.process(&key).await.unwrap(),
            None,
            "retrying is not pending"
        );
        assert_eq!(
            sweep(store.as_ref(), now_ms(), 10, None).await.unwrap(),
            Swept::default(),
            "not due yet"
        );
        let later = now_ms() + 3_600_000;
        assert_eq!(
            sweep(store.as_ref(), later, 10, None)
                .await
                .unwrap()
                .requeued,
            1
        );
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Sent));
        let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
        assert_eq!(
            (d.attempts, d.result.clone()),
            (2, Some(json!({"task_id": 1})))
        );
    }

    /// Takes follow-ups for one connector (and says whether it could), noting each hand-off.
    struct Handed(&'static str, bool, std::sync::Mutex<Vec<Vec<DeliveryKey>>>);

    #[async_trait::async_trait]
    impl FollowUps for Handed {
        async fn hand_off(&self, connector: &str, keys: &[DeliveryKey]) -> bool {
            if connector != self.0 || !self.1 {
                return false;
            }
            self.2.lock().unwrap().push(keys.to_vec());
            true
        }
    }

    #[tokio::test]
    async fn a_due_follow_up_is_handed_on_unwritten_and_checked_by_its_sender() {
        let check = Outcome::Check {
            result: json!({"task_id": 7}),
            after: 0,
        };
        let (store, sender, key) = setup(
            vec![check, Outcome::Sent(json!({"task_id": 7}))],
            "scripted",
        )
        .await;
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Checking));
        let later = now_ms() + 60_000;
        let handed = Handed("scripted", true, Default::default());
        let swept = sweep(store.as_ref(), later, 10, Some(&handed))
            .await
            .unwrap();
        assert_eq!(
            swept,
            Swept {
                requeued: 0,
                handed_off: 1
            }
        );
        assert_eq!(*handed.2.lock().unwrap(), [vec![key.clone()]]);
        let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
        assert_eq!(d.status, Status::Checking, "not re-queued: nothing written");
        // What the sender function does with the keys it is handed.
        assert_eq!(sender.follow_up(&key).await.unwrap(), Some(Status::Sent));
        assert_eq!(
            sender.follow_up(&key).await.unwrap(),
            None,
            "handed on twice (a slow sender, the next sweep): checked once"
        );
        assert!(store.due(later, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_follow_up_that_cannot_be_handed_on_is_re_queued() {
        for handed in [
            Handed("scripted", false, Default::default()),
            Handed("another", true, Default::default()),
        ] {
            let check = Outcome::Check {
                result: json!({"task_id": 7}),
                after: 1_000,
            };
            let (store, sender, key) = setup(vec![check], "scripted").await;
            assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Checking));
            let swept = sweep(store.as_ref(), now_ms() + 60_000, 10, Some(&handed))
                .await
                .unwrap();
            assert_eq!(
                swept,
                Swept {
                    requeued: 1,
                    handed_off: 0
                }
            );
            let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
            assert_eq!(d.status, Status::Pending);
        }
    }

    #[tokio::test]
    async fn a_retry_is_re_queued_not_handed_on() {
        let (store, sender, key) = setup(
            vec![Outcome::Failed(Failure::Transient("busy".into()))],
            "scripted",
        )
        .await;
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Retrying));
        let handed = Handed("scripted", true, Default::default());
        let swept = sweep(store.as_ref(), now_ms() + 3_600_000, 10, Some(&handed))
            .await
            .unwrap();
        assert_eq!(swept.requeued, 1);
        assert!(handed.2.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_follow_up_handed_on_before_it_is_due_checks_nothing() {
        let check = Outcome::Check {
            result: json!({"task_id": 7}),
            after: 600_000,
        };
        let (store, sender, key) = setup(vec![check], "scripted").await;
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Checking));
        assert_eq!(sender.follow_up(&key).await.unwrap(), None);
        let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
        assert_eq!((d.status, d.attempts), (Status::Checking, 1));
    }

    /// A store whose first `n` records fail, as during a short outage.
    struct Flaky(MemoryStore, std::sync::Mutex<u32>);

    #[async_trait::async_trait]
    impl HistoryStore for Flaky {
        async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
            self.0.deliveries_of(pk).await
        }
    }

    #[async_trait::async_trait]
    impl DeliveryStore for Flaky {
        async fn claim(
            &self,
            key: &DeliveryKey,
            now: Millis,
            until: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            self.0.claim(key, now, until).await
        }
        async fn record(&self, c: &Delivery, s: &Settled, now: Millis) -> Result<bool, StoreError> {
            let failing = {
                let mut left = self.1.lock().unwrap();
                let failing = *left > 0;
                *left = left.saturating_sub(1);
                failing
            };
            if failing {
                return Err(StoreError::Unavailable("the store is restarting".into()));
            }
            self.0.record(c, s, now).await
        }
        async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
            self.0.due(now, limit).await
        }
        async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
            self.0.requeue(key, now).await
        }
        async fn list(
            &self,
            f: &crate::event::DeliveryFilter,
            limit: usize,
        ) -> Result<Vec<Delivery>, StoreError> {
            self.0.list(f, limit).await
        }
        async fn replay(
            &self,
            key: &DeliveryKey,
            now: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            self.0.replay(key, now).await
        }
        async fn recalled(
            &self,
            key: &DeliveryKey,
            note: &serde_json::Value,
            now: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            self.0.recalled(key, note, now).await
        }
    }

    #[tokio::test]
    async fn an_outcome_is_recorded_once_the_store_is_back_and_not_sent_twice() {
        let (memory, first, key) = setup(vec![], "scripted").await;
        drop(first);
        let memory = Arc::into_inner(memory).unwrap();
        let store = Arc::new(Flaky(memory, std::sync::Mutex::new(3)));
        let once = Outcome::Sent(json!({"task_id": 1}));
        let sender = Sender::new(
            vec![Arc::new(Scripted(std::sync::Mutex::new(vec![once])))],
            store.clone(),
            RetryPolicy::default(),
        );
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Sent));
        let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
        assert_eq!(d.status, Status::Sent, "recorded after three failed tries");
    }

    #[tokio::test]
    async fn unknown_connector_is_dead_with_a_reason() {
        let (store, sender, key) = setup(vec![], "nowhere").await;
        assert_eq!(sender.process(&key).await.unwrap(), Some(Status::Dead));
        let d = &store.deliveries_of(&key.pk).await.unwrap()[0];
        assert!(
            d.last_error
                .as_deref()
                .unwrap()
                .contains("no connector \"nowhere\"")
        );
    }

    /// A store whose first claim cannot be written (a full disk), otherwise the memory store.
    struct FirstClaimFails {
        inner: Arc<MemoryStore>,
        failed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl HistoryStore for FirstClaimFails {
        async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
            self.inner.deliveries_of(pk).await
        }
    }

    #[async_trait::async_trait]
    impl DeliveryStore for FirstClaimFails {
        async fn claim(
            &self,
            key: &DeliveryKey,
            now: Millis,
            lease_until: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("no space left on device".into()));
            }
            self.inner.claim(key, now, lease_until).await
        }
        async fn record(
            &self,
            claimed: &Delivery,
            settled: &crate::event::Settled,
            now: Millis,
        ) -> Result<bool, StoreError> {
            self.inner.record(claimed, settled, now).await
        }
        async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
            self.inner.due(now, limit).await
        }
        async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
            self.inner.requeue(key, now).await
        }
        async fn list(
            &self,
            filter: &crate::event::DeliveryFilter,
            limit: usize,
        ) -> Result<Vec<Delivery>, StoreError> {
            self.inner.list(filter, limit).await
        }
        async fn replay(
            &self,
            key: &DeliveryKey,
            now: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            self.inner.replay(key, now).await
        }
        async fn recalled(
            &self,
            key: &DeliveryKey,
            note: &serde_json::Value,
            now: Millis,
        ) -> Result<Option<Delivery>, StoreError> {
            self.inner.recalled(key, note, now).await
        }
    }

    /// A claim that could not be written leaves the delivery pending, which nothing announces
    /// again: `serve`'s worker tries it once more a moment later, and it is sent.
    #[tokio::test]
    async fn a_claim_that_could_not_be_written_is_tried_again() {
        let (store, _, key) = setup(vec![Outcome::Sent(json!({"task_id": 1}))], "scripted").await;
        let flaky = Arc::new(FirstClaimFails {
            inner: store.clone(),
            failed: false.into(),
        });
        let sender = Arc::new(Sender::new(
            vec![Arc::new(Scripted(std::sync::Mutex::new(vec![
                Outcome::Sent(json!({"task_id": 1})),
            ])))],
            flaky,
            RetryPolicy::default(),
        ));
        let (feed, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(sender.run_feed(rx, 1, stop));
        feed.send(key.clone()).unwrap();
        let mut status = None;
        for _ in 0..50 {
            status = Some(store.deliveries_of(&key.pk).await.unwrap()[0].status);
            if status == Some(Status::Sent) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, Some(Status::Sent), "sent after the failed claim");
        stop_tx.send(true).unwrap();
        running.await.unwrap();
    }
}
